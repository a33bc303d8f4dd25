"""Fixtures for the labeling app: a project with tasks, the app in-process."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI

from .helpers import add_tasks, set_labeling


@pytest.fixture(autouse=True)
def cheap_password_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    """argon2 with a tiny cost in tests (behaviour is the same; production uses the library defaults)."""
    from argon2 import PasswordHasher

    from alignloop.labeling import accounts

    monkeypatch.setattr(accounts, "_hasher", PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))


@pytest.fixture
def make_app(project_dir: Path) -> Iterator[Callable[..., FastAPI]]:
    """Build the app for ``project_dir`` after optional labeling settings; closed at teardown."""
    from alignloop.labeling.app import create_app

    apps: list[FastAPI] = []

    def build(**settings: object) -> FastAPI:
        if settings:
            set_labeling(project_dir, **settings)
        app = create_app(project_dir)
        apps.append(app)
        return app

    yield build
    for app in apps:
        app.state.service.close()


@pytest.fixture
def app(make_app: Callable[..., FastAPI], project_dir: Path) -> FastAPI:
    """The app on a project with 6 prompts x 4 completions, overlap 3, ranking tasks."""
    add_tasks(project_dir, 6)
    return make_app()
