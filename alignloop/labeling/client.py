"""``LabelingClient``: the labeling JSON API from Python (simulated labelers, scripts, tests).

    client = LabelingClient("http://127.0.0.1:8000")
    client.accept_invite(invite_link, "a long password")
    while (task := client.next_task()) is not None:
        ids = [c["id"] for c in task["completions"]]
        client.submit_ranking(task["assignment_id"], [[i] for i in ids])

A programmatic labeler "reads" the guidelines by acknowledging them: ``next_task``
does so automatically when the server asks for it (a new version included).
Server refusals raise ``AlignloopError`` subclasses carrying the server's message.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx

from alignloop.errors import AlignloopError, InputError
from alignloop.labeling.accounts import invite_token_from


def _next(take_next: bool) -> dict[str, str] | None:
    return {"next": "true"} if take_next else None


class LabelingError(AlignloopError):
    """The server refused a request; ``status`` is its HTTP status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class NotAuthenticated(LabelingError):
    """401: no session (sign in with ``login`` or ``accept_invite``)."""


class RequestRefused(LabelingError, InputError):
    """422: the request is invalid (e.g. a ranking that is not a permutation of the task's completions)."""

    def __init__(self, status: int, message: str) -> None:
        InputError.__init__(self, message)
        self.status = status


class LabelingClient:
    """A signed-in session with the labeling app (cookies and CSRF token are kept)."""

    def __init__(self, base_url: str, timeout: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(base_url=self.base_url, timeout=timeout)
        self._csrf: str | None = None
        self.auto_acknowledge_guidelines = True

    def __enter__(self) -> LabelingClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # ---------------------------------------------------------------- plumbing

    def _request(self, method: str, path: str, json: Any = None, params: dict | None = None) -> httpx.Response:
        headers = {"X-CSRF-Token": self._csrf} if self._csrf and method != "GET" else {}
        try:
            response = self._http.request(method, path, json=json, params=params, headers=headers)
        except httpx.HTTPError as exc:
            raise LabelingError(0, f"cannot reach the labeling server at {self.base_url}: {exc}") from exc
        if response.status_code >= 400:
            try:
                detail = response.json().get("detail", response.text)
            except ValueError:
                detail = response.text
            message = f"{method} {path}: {response.status_code} {detail}"
            if response.status_code == 401:
                raise NotAuthenticated(401, message)
            if response.status_code == 422:
                raise RequestRefused(422, message)
            raise LabelingError(response.status_code, message)
        return response

    def _signed_in(self, response: httpx.Response) -> None:
        self._csrf = response.json()["csrf_token"]

    # ---------------------------------------------------------------- accounts

    def accept_invite(self, invite: str, password: str) -> None:
        """Redeem an invite (its link or bare token): set the password and sign in."""
        self._signed_in(
            self._request("POST", "/api/invite/accept", json={"token": invite_token_from(invite), "password": password})
        )

    def login(self, name: str, password: str) -> None:
        self._signed_in(self._request("POST", "/api/login", json={"name": name, "password": password}))

    def logout(self) -> None:
        self._request("POST", "/api/logout")
        self._csrf = None

    def me(self) -> dict[str, Any]:
        return self._request("GET", "/api/me").json()

    # ---------------------------------------------------------------- guidelines

    def guidelines(self) -> dict[str, Any]:
        """The current guidelines: version, the four Markdown sections, and their HTML."""
        return self._request("GET", "/api/guidelines").json()

    def acknowledge_guidelines(self, version: int | None = None) -> None:
        if version is None:
            version = self.guidelines()["version"]
        self._request("POST", "/api/guidelines/acknowledge", json={"version": version})

    # ---------------------------------------------------------------- tasks

    def next_task(self) -> dict[str, Any] | None:
        """Your current task, or a new one; None when your queue is empty.

        The task is ``{"assignment_id", "task_type", "prompt", "messages", "completions": [{"id", "text"}],
        "guideline_version", "allow_ties", "unusable_reasons", "lease_expires_at"}``, completions in display order.
        """
        try:
            response = self._request("POST", "/api/tasks/next")
        except LabelingError as exc:
            if exc.status != 409 or "guidelines" not in str(exc) or not self.auto_acknowledge_guidelines:
                raise
            self.acknowledge_guidelines()
            response = self._request("POST", "/api/tasks/next")
        return None if response.status_code == 204 else response.json()

    def _extras(
        self,
        unusable: dict[int, str] | None,
        comment: str | None,
        seconds_spent: float | None,
        idempotency_key: str | None,
    ) -> dict[str, Any]:
        return {
            "unusable": {str(k): v for k, v in (unusable or {}).items()} or None,
            "comment": comment,
            "seconds_spent": seconds_spent,
            "idempotency_key": idempotency_key or uuid.uuid4().hex,
        }

    def submit(
        self,
        assignment_id: int,
        answer_field: str,
        answer: Any,
        *,
        unusable: dict[int, str] | None = None,
        comment: str | None = None,
        seconds_spent: float | None = None,
        idempotency_key: str | None = None,
        take_next: bool = False,
    ) -> dict[str, Any]:
        """Submit the answer of any task type (``answer_field`` is its task type's, e.g. ``"ranking"``); returns
        the stored judgement (``replayed`` on a retry).

        ``take_next=True`` also takes the next task in the same request: it is the judgement's
        ``next_task`` (None when the queue is empty).
        """
        body = {answer_field: answer, **self._extras(unusable, comment, seconds_spent, idempotency_key)}
        path = f"/api/tasks/{assignment_id}/{answer_field}"
        return self._request("POST", path, json=body, params=_next(take_next)).json()

    def submit_ranking(self, assignment_id: int, ranking: list[list[int]], **extras: Any) -> dict[str, Any]:
        """Submit tiers of completion ids, best first (``extras`` as for ``submit``)."""
        return self.submit(assignment_id, "ranking", ranking, **extras)

    def submit_thumbs(self, assignment_id: int, thumbs: dict[int, int], **extras: Any) -> dict[str, Any]:
        """Submit 1 (up) or -1 (down) for every completion of the task (``extras`` as for ``submit``)."""
        return self.submit(assignment_id, "thumbs", {str(k): v for k, v in thumbs.items()}, **extras)

    def skip(
        self, assignment_id: int, reason: str, *, idempotency_key: str | None = None, take_next: bool = False
    ) -> dict[str, Any]:
        """Give the task back with a reason; it goes to another labeler, never to you again."""
        body = {"reason": reason, "idempotency_key": idempotency_key or uuid.uuid4().hex}
        return self._request("POST", f"/api/tasks/{assignment_id}/skip", json=body, params=_next(take_next)).json()

    def my_judgements(self, limit: int = 50) -> list[dict[str, Any]]:
        return self._request("GET", "/api/judgements/mine", params={"limit": limit}).json()

    # ---------------------------------------------------------------- admin (needs an admin account)

    def progress(self) -> dict[str, Any]:
        """Progress per round and per labeler: done, skipped, in progress, median seconds per task."""
        return self._request("GET", "/api/admin/progress").json()

    def list_labelers(self) -> list[dict[str, Any]]:
        return self._request("GET", "/api/admin/labelers").json()

    def invite_labeler(self, name: str, *, admin: bool = False) -> str:
        """Create an account; returns its one-time invite link."""
        return self._request("POST", "/api/admin/labelers", json={"name": name, "admin": admin}).json()["invite_url"]

    def deactivate_labeler(self, name: str) -> None:
        self._request("POST", f"/api/admin/labelers/{name}/deactivate")

    def export_judgements(self) -> list[dict[str, Any]]:
        """Every judgement of the project (the JSONL export, parsed)."""
        text = self._request("GET", "/api/admin/export/judgements").text
        return [json.loads(line) for line in text.splitlines() if line.strip()]
