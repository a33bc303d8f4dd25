"""One client cannot hold the server: bounded bodies, linear validation, a time budget per request."""

from __future__ import annotations

import time

import anyio
from fastapi import FastAPI
from starlette.requests import Request
from starlette.testclient import TestClient

from alignloop.labeling.limits import BodyLimit, TimeBudget

from .helpers import count_judgements, new_client, take

# Generous on purpose: on a loaded 2-core machine the linear path took just over a second (idle: a
# tenth), so a 1-second bound failed for load, not for the code; what these guard against (reading
# an unbounded body, work quadratic in a 30 000-entry ranking) costs far more.
SLOW = 5.0


def test_an_oversize_ranking_is_refused_at_once_and_stores_nothing(app: FastAPI) -> None:
    client = new_client(app, "alice")
    task = take(client)
    c = task["completions"][0]["id"]
    started = time.perf_counter()
    response = client.post(f"/api/tasks/{task['assignment_id']}/ranking", json={"ranking": [[c]] * 80_000})
    assert response.status_code == 413, response.text
    assert time.perf_counter() - started < SLOW
    assert count_judgements(app) == 0


def test_a_long_ranking_under_the_size_limit_is_refused_in_linear_time(app: FastAPI) -> None:
    client = new_client(app, "alice")
    task = take(client)
    c = task["completions"][0]["id"]
    started = time.perf_counter()
    response = client.post(f"/api/tasks/{task['assignment_id']}/ranking", json={"ranking": [[c]] * 30_000})
    assert response.status_code == 422, response.text
    assert "more than once" in response.json()["detail"]
    assert time.perf_counter() - started < SLOW


def test_every_route_refuses_an_oversize_body(app: FastAPI) -> None:
    client = TestClient(app)
    big = "x" * (300 * 1024)
    assert client.post("/api/login", json={"name": "a", "password": big}).status_code == 413
    assert client.post("/login", data={"name": "a", "password": big}).status_code == 413
    assert client.post("/api/invite/accept", json={"token": "t", "password": big}).status_code == 413


def test_a_chunked_body_without_a_length_is_cut_off_at_the_limit() -> None:
    app = FastAPI()

    @app.post("/echo")
    async def echo(request: Request) -> int:
        return len(await request.body())

    app.add_middleware(BodyLimit, max_bytes=1000)

    def chunks():
        for _ in range(10):
            yield b"x" * 500

    client = TestClient(app)
    assert client.post("/echo", content=chunks()).status_code == 413
    assert client.post("/echo", content=b"x" * 900).json() == 900


def test_a_request_that_does_not_answer_within_the_budget_gets_503() -> None:
    async def slow(scope, receive, send) -> None:
        await anyio.sleep(5)

    client = TestClient(TimeBudget(slow, seconds=0.1))
    started = time.perf_counter()
    response = client.get("/")
    assert response.status_code == 503
    assert time.perf_counter() - started < 2


def test_a_started_streaming_response_is_not_cut_off() -> None:
    from starlette.responses import StreamingResponse

    async def rows():
        for i in range(3):
            await anyio.sleep(0.1)
            yield f"{i}\n".encode()

    async def streaming(scope, receive, send) -> None:
        await StreamingResponse(rows())(scope, receive, send)

    assert TestClient(TimeBudget(streaming, seconds=0.15)).get("/").text == "0\n1\n2\n"


def test_a_response_begun_after_the_budget_ran_out_in_a_worker_thread_is_a_whole_503() -> None:
    """A route run in a worker thread cannot be cancelled while the thread works; the spent budget is
    delivered at the first await after it, which must not be one that already sent a 200's headers."""

    async def in_worker(scope, receive, send) -> None:
        with anyio.CancelScope(shield=True):  # as `to_thread.run_sync` shields the thread's work
            await anyio.sleep(0.3)
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"ok"})

    sent: list[dict] = []

    async def server_send(message: dict) -> None:
        sent.append(message)
        await anyio.lowlevel.checkpoint()  # a server's send awaits the socket

    async def serve() -> None:
        async def receive() -> dict:
            return {"type": "http.request", "body": b"", "more_body": False}

        await TimeBudget(in_worker, seconds=0.1)({"type": "http", "method": "GET", "path": "/"}, receive, server_send)

    anyio.run(serve)
    starts = [m for m in sent if m["type"] == "http.response.start"]
    assert [m["status"] for m in starts] == [503]
    assert b"longer than" in b"".join(m.get("body", b"") for m in sent)
