"""Helpers for the labeling tests: project settings, tasks, signed-in clients."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.testclient import TestClient

from alignloop.labeling.accounts import add_labeler
from alignloop.labeling.sample_data import add_sample_tasks
from alignloop.project import open_project

PASSWORD = "correct horse battery"


def set_labeling(project_dir: Path, **settings: object) -> None:
    """Change keys under ``labeling:`` in the project's alignloop.yaml."""
    import yaml

    path = project_dir / "alignloop.yaml"
    data = yaml.safe_load(path.read_text())
    data["labeling"].update(settings)
    path.write_text(yaml.safe_dump(data, sort_keys=False))


def add_tasks(
    project_dir: Path, n_prompts: int, k: int = 4, kind: str = "train", **kwargs: object
) -> tuple[int, list[int]]:
    handle = open_project(project_dir)
    try:
        return add_sample_tasks(handle.store, handle.project_id, n_prompts=n_prompts, k=k, kind=kind, **kwargs)
    finally:
        handle.close()


def new_client(app: FastAPI, name: str, *, admin: bool = False, read_guidelines: bool = True) -> TestClient:
    """An account created by invite and signed in through it; its CSRF token goes with every request."""
    token = add_labeler(app.state.service.store, name, admin=admin)
    client = TestClient(app)
    response = client.post("/api/invite/accept", json={"token": token, "password": PASSWORD})
    assert response.status_code == 200, response.text
    client.headers["X-CSRF-Token"] = response.json()["csrf_token"]
    if read_guidelines:
        version = client.get("/api/guidelines").json()["version"]
        assert client.post("/api/guidelines/acknowledge", json={"version": version}).status_code == 200
    return client


def take(client: TestClient) -> dict:
    response = client.post("/api/tasks/next")
    assert response.status_code == 200, response.text
    return response.json()


def rank(client: TestClient, task: dict, **extra: object):
    """Submit the task's completions in display order."""
    ranking = [[c["id"]] for c in task["completions"]]
    return client.post(f"/api/tasks/{task['assignment_id']}/ranking", json={"ranking": ranking, **extra})


def count_judgements(app: FastAPI) -> int:
    from sqlalchemy import func, select

    from alignloop.store import Judgement

    with app.state.service.db.read() as s:
        return s.scalar(select(func.count()).select_from(Judgement))
