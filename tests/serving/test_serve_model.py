"""`serve-model`: the tiny policy behind the live server, called with the `openai` client; feedback
becomes the user's judgements, which consensus and pairs use beside the labelers'."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import openai
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from alignloop.project import open_project
from alignloop.store import Assignment, Completion, Judgement, Labeler, Round

from .conftest import PASSWORD

POEM = [{"role": "user", "content": "Write a short poem about the sea."}]
TIPS = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Give me three tips for sleeping."}]


def _client(url: str, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0, timeout=120)


def _feedback(url: str, key: str, body: dict) -> httpx.Response:
    return httpx.post(f"{url}/v1/feedback", json=body, headers={"Authorization": f"Bearer {key}"}, timeout=60)


def _count(project_dir: Path, table: type) -> int:
    with open_project(project_dir) as handle, handle.store.session() as s:
        return s.scalar(select(func.count()).select_from(table))


def test_users_chat_through_the_openai_client_and_their_feedback_trains_with_the_labelers(
    project_dir: Path, model_server: str, sign_up: Callable[[str], str]
) -> None:
    from alignloop.consensus.report import project_consensus
    from alignloop.labeling.app import create_app
    from alignloop.labeling.sample_data import add_sample_tasks
    from alignloop.pairs.dataset import build_pairs

    client = _client(model_server, sign_up("ana"))
    assert [m.id for m in client.models.list().data] == ["tiny"]

    # a choice between two answers shown side by side
    both = client.chat.completions.create(model="tiny", messages=POEM, n=2, max_tokens=6, seed=7, temperature=1.0)
    assert [c.index for c in both.choices] == [0, 1]
    assert all(c.message.role == "assistant" and c.finish_reason in ("stop", "length") for c in both.choices)
    assert both.usage.total_tokens == both.usage.prompt_tokens + both.usage.completion_tokens
    chosen, rejected = (c.completion_id for c in both.choices)
    again = client.chat.completions.create(model="tiny", messages=POEM, n=2, max_tokens=6, seed=7, temperature=1.0)
    assert [c.message.content for c in again.choices] == [c.message.content for c in both.choices]  # same seed

    key = client.api_key
    stored = _feedback(model_server, key, {"chosen": chosen, "rejected": rejected, "comment": "rhymes"})
    assert stored.status_code == 201, stored.text
    assert stored.json()["kind"] == "pairwise" and stored.json()["ranking"] == [[chosen], [rejected]]

    # thumbs on one answer, then (after "regenerate") on another: one judgement over both, up above down
    first = client.chat.completions.create(model="tiny", messages=TIPS, max_tokens=6, top_p=0.9)
    second = client.chat.completions.create(model="tiny", messages=TIPS, max_tokens=6, top_p=0.9)
    up, down = first.choices[0].completion_id, second.choices[0].completion_id
    assert _feedback(model_server, key, {"thumbs": {str(up): "up"}}).status_code == 201
    both_thumbs = _feedback(model_server, key, {"thumbs": {str(down): "down"}})
    assert both_thumbs.status_code == 201
    assert both_thumbs.json()["thumbs"] == {str(up): "up", str(down): "down"}
    assert both_thumbs.json()["supersedes"] is not None
    repeat = _feedback(model_server, key, {"thumbs": {str(down): "down"}})
    assert repeat.status_code == 200 and repeat.json()["replayed"] is True  # nothing new to store

    with open_project(project_dir) as handle, handle.store.session() as s:
        ana = s.scalar(select(Labeler.id).where(Labeler.name == "ana"))
        serve = s.scalars(select(Round).where(Round.kind == "serve")).one()
        judgements = list(s.scalars(select(Judgement).order_by(Judgement.id)))
        models = set(s.scalars(select(Completion.model).where(Completion.round_id == serve.id)))
        statuses = set(s.scalars(select(Assignment.status).where(Assignment.round_id == serve.id)))
    assert serve.policy == both.model_version and models == {both.model_version}
    assert statuses == {"served"}
    assert [(j.labeler_id, j.round_id, j.kind) for j in judgements] == [
        (ana, serve.id, "pairwise"),
        (ana, serve.id, "thumbs"),
        (ana, serve.id, "thumbs"),
    ]
    assert judgements[0].comment == "rhymes"

    # a labeler ranks a training round's task in the labeling app
    with open_project(project_dir) as handle:
        add_sample_tasks(handle.store, handle.project_id, n_prompts=1, k=2)
    labeling = create_app(project_dir)
    try:
        with TestClient(labeling) as web:
            from alignloop.labeling.accounts import add_labeler

            token = add_labeler(labeling.state.service.store, "lee")
            signed = web.post("/api/invite/accept", json={"token": token, "password": PASSWORD})
            web.headers["X-CSRF-Token"] = signed.json()["csrf_token"]
            web.post("/api/guidelines/acknowledge", json={"version": web.get("/api/guidelines").json()["version"]})
            task = web.post("/api/tasks/next").json()
            assert web.post("/api/tasks/next").json()["assignment_id"] == task["assignment_id"]  # served ones never
            ranked = web.post(
                f"/api/tasks/{task['assignment_id']}/ranking",
                json={"ranking": [[c["id"]] for c in task["completions"]]},
            )
            assert ranked.status_code == 201, ranked.text
            assert web.post("/api/tasks/next").status_code == 204
    finally:
        labeling.state.service.close()

    with open_project(project_dir) as handle:
        report = project_consensus(handle)
        pairs = build_pairs(handle, report=report)
    sources = {(p.provenance["chosen_id"], p.provenance["rejected_id"]): p for p in pairs}
    assert (chosen, rejected) in sources and (up, down) in sources
    assert sources[(chosen, rejected)].provenance["labeler_ids"] == [ana]
    assert sources[(chosen, rejected)].provenance["round"] == serve.index
    assert sources[(up, down)].provenance["task"] == "thumbs"
    assert any(p.provenance["round"] != serve.index for p in pairs)  # the labeler's pair, trained on together


def test_a_labeling_session_is_an_api_key_and_bad_requests_are_refused_naming_the_field(
    project_dir: Path, model_server: str, sign_up: Callable[[str], str]
) -> None:
    from alignloop.labeling.app import create_app
    from alignloop.labeling.auth import SESSION_COOKIE

    # a session of the labeling app is accepted as the bearer key: one account, one sign-in
    sign_up("ana")
    labeling = create_app(project_dir)
    try:
        with TestClient(labeling) as web:
            assert web.post("/api/login", json={"name": "ana", "password": PASSWORD}).status_code == 200
            key = web.cookies[SESSION_COOKIE]
    finally:
        labeling.state.service.close()
    client = _client(model_server, key)
    served = client.chat.completions.create(model="tiny", messages=POEM, n=2, max_tokens=4)
    ids = [c.completion_id for c in served.choices]
    other = _client(model_server, sign_up("bo")).chat.completions.create(model="tiny", messages=POEM, max_tokens=4)
    before = (_count(project_dir, Judgement), _count(project_dir, Completion))

    def refused(call: Callable[[], object], error: type[openai.APIStatusError], param: str | None) -> None:
        with pytest.raises(error) as caught:
            call()
        assert caught.value.body["param"] == param, caught.value.body
        assert caught.value.body["message"]

    chat = client.chat.completions.create
    refused(lambda: chat(model="gpt-4o", messages=POEM), openai.NotFoundError, "model")
    refused(lambda: chat(model="tiny", messages=POEM, stream=True), openai.BadRequestError, "stream")
    refused(lambda: chat(model="tiny", messages=POEM, stop=["\n"]), openai.BadRequestError, "stop")
    refused(lambda: chat(model="tiny", messages=POEM, n=0), openai.BadRequestError, "n")
    refused(lambda: chat(model="tiny", messages=POEM, temperature=3), openai.BadRequestError, "temperature")
    refused(lambda: chat(model="tiny", messages=[]), openai.BadRequestError, "messages")
    answer_last = [*POEM, {"role": "assistant", "content": "Waves."}]
    refused(lambda: chat(model="tiny", messages=answer_last), openai.BadRequestError, "messages.1.role")
    refused(lambda: chat(model="tiny", messages=POEM, max_tokens=10_000), openai.BadRequestError, "messages")
    refused(lambda: client.models.retrieve("gpt-4o"), openai.NotFoundError, "model")
    anonymous = _client(model_server, "not-a-session")
    refused(lambda: anonymous.chat.completions.create(model="tiny", messages=POEM), openai.AuthenticationError, None)

    cases = [
        ({"thumbs": {"999999": "up"}}, 404, "thumbs.999999"),
        ({"thumbs": {str(other.choices[0].completion_id): "up"}}, 403, f"thumbs.{other.choices[0].completion_id}"),
        ({"chosen": ids[0], "rejected": other.choices[0].completion_id}, 403, "rejected"),
        ({"chosen": ids[0], "rejected": ids[0]}, 400, "rejected"),
        ({"chosen": ids[0]}, 400, "rejected"),
        ({}, 400, "thumbs"),
        ({"thumbs": {str(ids[0]): "up"}, "chosen": ids[0], "rejected": ids[1]}, 400, "thumbs"),
        ({"thumbs": {str(ids[0]): "sideways"}}, 400, f"thumbs.{ids[0]}"),
        ({"thumbs": {"first": "up"}}, 400, "thumbs.first.[key]"),
        ({"chosen": ids[0], "rejected": ids[1], "rating": 5}, 400, "rating"),
    ]
    for body, status, param in cases:
        response = _feedback(model_server, key, body)
        assert (response.status_code, response.json()["error"]["param"]) == (status, param), (body, response.text)
    assert (_count(project_dir, Judgement), _count(project_dir, Completion)) == before  # nothing half-written

    # an idempotency key stores the feedback once, and is refused for different feedback
    body = {"chosen": ids[1], "rejected": ids[0], "idempotency_key": "k1"}
    assert _feedback(model_server, key, body).status_code == 201
    assert _feedback(model_server, key, body).json()["replayed"] is True
    reused = _feedback(model_server, key, {**body, "chosen": ids[0], "rejected": ids[1]})
    assert (reused.status_code, reused.json()["error"]["param"]) == (409, "idempotency_key")

    # signing out ends the key
    logout = httpx.post(f"{model_server}/api/logout", headers={"Authorization": f"Bearer {key}"}, timeout=60)
    assert logout.status_code == 200
    refused(lambda: chat(model="tiny", messages=POEM), openai.AuthenticationError, None)


def test_the_report_shows_feedback_per_model_version(
    project_dir: Path, model_server: str, sign_up: Callable[[str], str]
) -> None:
    from alignloop.report import build_report

    key = sign_up("ana")
    served = _client(model_server, key).chat.completions.create(model="tiny", messages=POEM, n=2, max_tokens=4)
    a, b = (c.completion_id for c in served.choices)
    assert _feedback(model_server, key, {"thumbs": {str(a): "up", str(b): "down"}}).status_code == 201
    assert _feedback(model_server, key, {"chosen": b, "rejected": a}).status_code == 201
    with open_project(project_dir) as handle:
        page = build_report(handle).read_text()
    section = page.split('id="feedback-from-use"')[1].split("<h2")[0]
    cells = [cell.split("</td>")[0] for cell in section.split("<td")[1:]]
    assert served.model_version in cells[0]
    assert [c.split(">")[-1] for c in cells[2:]] == ["2", "1", "1", "1", "1"]  # answers, users, up, down, choices


def test_the_serve_model_command_serves_the_projects_current_policy(
    project_dir: Path, tiny_lm: Path, free_port: int
) -> None:
    """`alignloop serve-model` as a real process: the policy the newest round recorded, under its reference."""
    import subprocess
    import sys
    import time

    from alignloop.labeling.accounts import add_labeler
    from alignloop.rounds import record

    with open_project(project_dir) as handle:
        record(handle, trained_policy=str(tiny_lm))  # as train-ppo --project notes its policy
        token = add_labeler(handle.store, "ana")
    port = free_port
    command = [sys.executable, "-m", "alignloop", "serve-model", "-p", str(project_dir), "--port", str(port)]
    command += ["--backend", "hf", "--dtype", "float32", "--device", "cpu"]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 480  # ~10 s on an idle machine; generous for a loaded one
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert server.poll() is None, server.stderr.read()
            assert time.monotonic() < deadline, "serve-model did not start"
            time.sleep(0.2)
        accepted = httpx.post(f"{url}/api/invite/accept", json={"token": token, "password": PASSWORD}, timeout=120)
        key = accepted.json()["api_key"]
        client = _client(url, key)
        assert client.models.list().data[0].id == str(tiny_lm)
        reply = client.chat.completions.create(model=str(tiny_lm), messages=POEM, max_tokens=4, seed=0)
        assert reply.model_version == str(tiny_lm) and reply.choices[0].completion_id > 0
    finally:
        server.terminate()
        server.wait(timeout=60)
