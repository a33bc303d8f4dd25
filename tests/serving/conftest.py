"""Fixtures for the model server: the tiny policy served in-process, and signed-in users."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

PASSWORD = "correct horse battery"


@pytest.fixture(autouse=True)
def cheap_password_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    """argon2 with a tiny cost in tests (behaviour is the same; production uses the library defaults)."""
    from argon2 import PasswordHasher

    from alignloop.labeling import accounts

    monkeypatch.setattr(accounts, "_hasher", PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1))


@pytest.fixture
def model_server(project_dir: Path, tiny_lm: Path) -> Iterator[str]:
    """The tiny random policy served for ``project_dir`` by the real server on a free port; yields its URL."""
    from alignloop.serving.server import load_project_sampler, start_model_server

    sampler = load_project_sampler(project_dir, model=str(tiny_lm), backend="hf", dtype="float32", device="cpu")
    server = start_model_server(project_dir, sampler, name="tiny")
    yield server.url
    server.stop()


@pytest.fixture
def sign_up(project_dir: Path, model_server: str) -> Callable[[str], str]:
    """``sign_up(name)``: an account invited like a labeler, signed in at the model server; returns its API key."""
    from alignloop.labeling.accounts import add_labeler
    from alignloop.project import open_project

    def create(name: str) -> str:
        with open_project(project_dir) as handle:
            token = add_labeler(handle.store, name)
        response = httpx.post(
            f"{model_server}/api/invite/accept", json={"token": token, "password": PASSWORD}, timeout=120
        )
        assert response.status_code == 200, response.text
        return response.json()["api_key"]

    return create
