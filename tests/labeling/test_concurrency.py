"""Many labelers at once: no lost or duplicated judgement, the overlap is never exceeded."""

from __future__ import annotations

import threading
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import func, select

from alignloop.labeling.accounts import add_labeler
from alignloop.labeling.auth import User
from alignloop.labeling.client import LabelingClient
from alignloop.labeling.server import start_server
from alignloop.labeling.service import LabelingService
from alignloop.labeling.validation import Submission
from alignloop.project import init_project, open_project
from alignloop.store import Assignment, Judgement, Labeler

from .helpers import PASSWORD, add_tasks, set_labeling


def _stored(project_dir) -> tuple[Counter, list[tuple[int, int, int]]]:
    handle = open_project(project_dir)
    with handle.store.session() as s:
        keys = Counter(
            dict(s.execute(select(Judgement.idempotency_key, func.count()).group_by(Judgement.idempotency_key)).all())
        )
        per_slot = s.execute(
            select(Assignment.round_id, Assignment.prompt_id, func.count())
            .where(Assignment.status == "submitted")
            .group_by(Assignment.round_id, Assignment.prompt_id)
        ).all()
        twice = s.execute(
            select(Judgement.labeler_id, Judgement.prompt_id, func.count())
            .where(Judgement.kind != "skip")
            .group_by(Judgement.labeler_id, Judgement.prompt_id)
            .having(func.count() > 1)
        ).all()
    handle.close()
    assert twice == []
    return keys, per_slot


def test_many_threads_over_http_lose_and_duplicate_nothing(project_dir):
    n_prompts, overlap, n_labelers = 12, 3, 10
    add_tasks(project_dir, n_prompts)
    set_labeling(project_dir, overlap=overlap)
    handle = open_project(project_dir)
    invites = [add_labeler(handle.store, f"l{i}") for i in range(n_labelers)]
    handle.close()
    server = start_server(project_dir)
    acked: list[tuple[str, int]] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def work(invite: str, index: int) -> None:
        try:
            with LabelingClient(server.url) as client:
                client.accept_invite(invite, PASSWORD)
                n = 0
                while (task := client.next_task()) is not None:
                    ids = [c["id"] for c in task["completions"]]
                    key = f"l{index}-{n}"
                    result = client.submit_ranking(
                        task["assignment_id"], [[i] for i in reversed(ids)], idempotency_key=key
                    )
                    retry = client.submit_ranking(
                        task["assignment_id"], [[i] for i in reversed(ids)], idempotency_key=key
                    )
                    assert retry["replayed"] and retry["judgement_id"] == result["judgement_id"]
                    with lock:
                        acked.append((key, result["judgement_id"]))
                    n += 1
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(invite, i)) for i, invite in enumerate(invites)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
    finally:
        server.stop()
    assert errors == []
    keys, per_slot = _stored(project_dir)
    assert len(acked) == n_prompts * overlap
    assert all(keys[key] == 1 for key, _ in acked)
    assert sum(keys.values()) == len(acked)
    assert sorted(n for _, _, n in per_slot) == [overlap] * n_prompts


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def any_store_project(request: pytest.FixtureRequest, tmp_path) -> Path:
    """A fresh project on SQLite, or on a throw-away PostgreSQL database."""
    if request.param == "sqlite":
        return request.getfixturevalue("project_dir")
    handle = init_project(tmp_path / "pg-proj", name="pg", database=request.getfixturevalue("fresh_postgres_url"))
    handle.close()
    return tmp_path / "pg-proj"


def test_two_server_processes_claiming_at_once_never_exceed_the_overlap(any_store_project):
    """Two services on one store (as with --workers 2): each has its own board; the database serialises claims."""
    project_dir = any_store_project
    n_prompts, overlap, n_labelers = 8, 2, 8
    add_tasks(project_dir, n_prompts)
    set_labeling(project_dir, overlap=overlap)
    handle = open_project(project_dir)
    for i in range(n_labelers):
        add_labeler(handle.store, f"l{i}")
    with handle.store.session() as s:
        s.execute(Labeler.__table__.update().values(read_guidelines_version=1))
        ids = [row.id for row in s.scalars(select(Labeler).order_by(Labeler.id))]
    handle.close()
    workers = [LabelingService(project_dir), LabelingService(project_dir)]
    for worker in workers:
        worker.guidelines()
    errors: list[BaseException] = []

    def work(labeler_id: int) -> None:
        user = User(id=labeler_id, name=str(labeler_id), role="labeler", read_guidelines_version=1, session_id="s")
        try:
            n = 0
            while True:
                worker = workers[(labeler_id + n) % 2]  # alternate processes, as a load balancer would
                task = worker.next_task(user)
                if task is None:
                    return
                ranking = [[c["id"]] for c in task["completions"]]
                workers[(labeler_id + n + 1) % 2].submit(
                    user, task["assignment_id"], "ranking", Submission(answer=ranking)
                )
                n += 1
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(labeler_id,)) for labeler_id in ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    for worker in workers:
        worker.close()
    assert errors == []
    _keys, per_slot = _stored(project_dir)
    assert sorted(n for _, _, n in per_slot) == [overlap] * n_prompts


def test_the_whole_task_cycle_works_on_every_store(any_store_project):
    from alignloop.labeling.app import create_app

    from .helpers import new_client, rank, take

    add_tasks(any_store_project, 2)
    app = create_app(any_store_project)
    try:
        admin, ada = new_client(app, "boss", admin=True), new_client(app, "ada")
        task = take(ada)
        assert rank(ada, task, idempotency_key="once").status_code == 201
        assert rank(ada, task, idempotency_key="once").json()["replayed"] is True
        skipped = take(ada)
        assert ada.post(f"/api/tasks/{skipped['assignment_id']}/skip", json={"reason": "unsure"}).status_code == 201
        progress = admin.get("/api/admin/progress").json()
        assert (progress["done"], progress["skipped"]) == (1, 1)
        assert len(admin.get("/api/admin/export/judgements").text.splitlines()) == 2
    finally:
        app.state.service.close()


def test_the_client_can_submit_and_take_the_next_task_at_once(project_dir):
    add_tasks(project_dir, 3)
    set_labeling(project_dir, overlap=1)
    handle = open_project(project_dir)
    invite = add_labeler(handle.store, "ada")
    handle.close()
    server = start_server(project_dir)
    try:
        with LabelingClient(server.url) as client:
            client.accept_invite(invite, PASSWORD)
            task, done = client.next_task(), 0
            while task is not None:
                result = client.submit_ranking(
                    task["assignment_id"], [[c["id"]] for c in task["completions"]], take_next=True
                )
                task, done = result["next_task"], done + 1
    finally:
        server.stop()
    assert done == 3
