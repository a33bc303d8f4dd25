"""Per-request limits that keep one client from holding the server: body size and a time budget.

Both are plain ASGI middlewares (no per-request task overhead), installed by ``create_app``
from ``labeling.max_body_kib`` and ``labeling.request_timeout_s``.

- ``BodyLimit`` answers 413 as soon as a request declares (``Content-Length``) or sends
  more than the limit, before any route parses it. The API's bodies are a few hundred
  bytes; guideline edits are the largest legitimate bodies.
- ``TimeBudget`` answers 503 when a request has not started its response within the
  budget (a client trickling its body, a request queued behind the write lock).
  Work a handler does without awaiting cannot be interrupted; it is kept small instead
  (bounded bodies, linear validation). Streaming responses (exports) are not cut off
  once they have started.
"""

from __future__ import annotations

import json
import math
from typing import Any

import anyio
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send


async def _send_json(send: Send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class BodyLimit:
    """Refuses request bodies larger than ``max_bytes`` with 413."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _too_large(self) -> str:
        return f"the request body is larger than {self.max_bytes} bytes"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            await _send_json(send, 413, self._too_large())
            return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:  # a chunked body that did not declare its length
                    raise HTTPException(413, self._too_large())
            return message

        await self.app(scope, limited_receive, send)


class TimeBudget:
    """Answers 503 when a request has not started its response within ``seconds``."""

    def __init__(self, app: ASGIApp, seconds: float) -> None:
        self.app = app
        self.seconds = seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False
        with anyio.CancelScope(deadline=anyio.current_time() + self.seconds) as budget:

            async def send_tracking(message: dict[str, Any]) -> None:
                nonlocal started
                if message["type"] == "http.response.start":
                    if budget.cancel_called or anyio.current_time() >= budget.deadline:
                        # spent while the route could not be cancelled (a worker thread): be cancelled
                        # here, before a header leaves, rather than at the next await, after them
                        budget.cancel()
                        await anyio.lowlevel.checkpoint()
                    started = True
                    budget.deadline = math.inf  # a started (streaming) response may take its time
                await send(message)

            await self.app(scope, receive, send_tracking)
        if budget.cancelled_caught and not started:
            await _send_json(send, 503, f"the request took longer than {self.seconds:g} s; try again")
