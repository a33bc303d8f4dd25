"""Sessions, CSRF and sign-in throttling for the labeling app.

- The session is a signed cookie (itsdangerous, HMAC-SHA1 over the project secret),
  HttpOnly and SameSite=Lax, holding the labeler id, a random session id and a
  fingerprint of the password hash: a new password (re-invite) ends old sessions.
  Each request checks the signature and one primary-key row (active? role?), so a
  deactivated labeler is locked out at once; no argon2 on this path.
- CSRF: every form carries ``csrf_token`` and every state-changing API call the
  ``X-CSRF-Token`` header; the token is an HMAC of the session id. Before sign-in
  (login and invite forms) a random token in a cookie must match the form field.
- Sign-in attempts are limited per client address and per account name.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastapi import Request
from itsdangerous import BadSignature, URLSafeTimedSerializer
from sqlalchemy import bindparam, select

from alignloop.store import Labeler

SESSION_COOKIE = "alignloop_session"
PRELOGIN_COOKIE = "alignloop_prelogin"
CSRF_HEADER = "X-CSRF-Token"
SESSION_DAYS = 14
SECRET_FILE = ".labeling-secret"


def load_secret(project_dir: str | Path) -> bytes:
    """The key that signs sessions: ``$ALIGNLOOP_SECRET_KEY``, else a random key kept in the project (mode 600).

    All workers of one server read the same file, so a cookie signed by one is valid in all.
    """
    import os

    env = os.environ.get("ALIGNLOOP_SECRET_KEY")
    if env:
        return env.encode()
    path = Path(project_dir) / SECRET_FILE
    if not path.exists():
        key = secrets.token_hex(32)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another worker wrote it first
            pass
        else:
            with os.fdopen(fd, "w") as f:
                f.write(key)
    return path.read_text().strip().encode()


@dataclass
class User:
    """The signed-in labeler, as each request sees it."""

    id: int
    name: str
    role: str
    read_guidelines_version: int | None
    session_id: str

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


class NotSignedIn(Exception):
    """No valid session: the API answers 401, pages redirect to the sign-in page."""


class Forbidden(Exception):
    """Signed in, but the role does not allow this (403)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class CsrfFailed(Exception):
    """A state-changing request without the right CSRF token (403)."""


_SESSION_ROW = select(
    Labeler.name, Labeler.role, Labeler.active, Labeler.password_hash, Labeler.read_guidelines_version
).where(Labeler.id == bindparam("labeler_id"))


def password_fingerprint(password_hash: str | None) -> str:
    return hashlib.sha256((password_hash or "").encode()).hexdigest()[:16]


class Sessions:
    """Signs and checks session cookies and CSRF tokens with one secret."""

    def __init__(self, secret: bytes, cache_s: float = 1.0) -> None:
        self._secret = secret
        self._serializer = URLSafeTimedSerializer(secret, salt="alignloop-session")
        self._cache_s = cache_s
        self._rows: dict[int, tuple[float, Any]] = {}  # labeler id -> (fetched at, account row)
        self._verified: dict[str, dict[str, Any]] = {}  # cookie -> its payload, once its signature checked out

    def forget(self, labeler_id: int) -> None:
        """Drop a cached account row (after this process changed the account)."""
        self._rows.pop(labeler_id, None)

    def forget_all(self) -> None:
        self._rows.clear()

    def _account(self, labeler_id: int, db) -> Any:  # noqa: ANN001 - an AppDatabase
        """The account row, cached for ``cache_s`` seconds: changes made by another worker
        (deactivation, a new password) take effect within that time, changes made here at once."""
        now = time.monotonic()
        cached = self._rows.get(labeler_id)
        if cached is not None and now - cached[0] < self._cache_s:
            return cached[1]
        with db.read_conn() as conn:
            row = conn.execute(_SESSION_ROW, {"labeler_id": labeler_id}).first()
        if len(self._rows) > 10_000:
            self._rows.clear()
        self._rows[labeler_id] = (now, row)
        return row

    def issue(self, labeler: Labeler) -> tuple[str, str]:
        """(cookie value, csrf token) for a fresh session of ``labeler``."""
        session_id = secrets.token_urlsafe(16)
        value = self._serializer.dumps(
            {"u": labeler.id, "s": session_id, "p": password_fingerprint(labeler.password_hash)}
        )
        return value, self.csrf_token(session_id)

    def csrf_token(self, session_id: str) -> str:
        return hmac.new(self._secret, f"csrf:{session_id}".encode(), hashlib.sha256).hexdigest()[:40]

    def check_csrf(self, user: User, token: str | None) -> None:
        if not token or not hmac.compare_digest(token, self.csrf_token(user.session_id)):
            raise CsrfFailed()

    def user(self, cookie: str | None, db) -> User:  # noqa: ANN001 - an AppDatabase
        """The labeler a session cookie belongs to; ``NotSignedIn`` when it is missing, forged, old or revoked."""
        if not cookie:
            raise NotSignedIn()
        data = self._verified.get(cookie)
        if data is None or data["expires"] < time.time():
            try:
                data = self._serializer.loads(cookie, max_age=SESSION_DAYS * 86400, return_timestamp=True)
                data = {**data[0], "expires": data[1].timestamp() + SESSION_DAYS * 86400}
                labeler_id = int(data["u"])
            except (BadSignature, KeyError, TypeError, ValueError):
                raise NotSignedIn() from None
            if len(self._verified) > 10_000:
                self._verified.clear()
            self._verified[cookie] = data
        labeler_id = int(data["u"])
        row = self._account(labeler_id, db)
        if row is None or not row.active or password_fingerprint(row.password_hash) != data.get("p"):
            raise NotSignedIn()
        return User(
            id=labeler_id,
            name=row.name,
            role=row.role,
            read_guidelines_version=row.read_guidelines_version,
            session_id=str(data["s"]),
        )


def set_session_cookie(response, request: Request, value: str) -> None:  # noqa: ANN001 - a starlette Response
    response.set_cookie(
        SESSION_COOKIE,
        value,
        max_age=SESSION_DAYS * 86400,
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
        path="/",
    )


def prelogin_token(request: Request) -> str:
    """The CSRF token of the sign-in and invite forms (the cookie's value, or a new one)."""
    return request.cookies.get(PRELOGIN_COOKIE) or secrets.token_urlsafe(24)


def set_prelogin_cookie(response, request: Request, token: str) -> None:  # noqa: ANN001 - a starlette Response
    response.set_cookie(
        PRELOGIN_COOKIE,
        token,
        max_age=3600,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/",
    )


def check_prelogin(request: Request, form_token: str | None) -> None:
    cookie = request.cookies.get(PRELOGIN_COOKIE)
    if not cookie or not form_token or not hmac.compare_digest(cookie, form_token):
        raise CsrfFailed()


class LoginThrottle:
    """At most ``limit`` failed sign-ins per ``window_s`` per client address and per account name.

    Kept in memory per server process (each worker counts on its own), which bounds
    password guessing without touching the database on the hot path.
    """

    def __init__(self, limit: int = 5, window_s: float = 300.0) -> None:
        self.limit = limit
        self.window_s = window_s
        self._failures: dict[str, deque[float]] = defaultdict(deque)
        self._lock = threading.Lock()

    def _recent(self, key: str, now: float) -> deque[float]:
        times = self._failures[key]
        while times and now - times[0] > self.window_s:
            times.popleft()
        return times

    def retry_after(self, client: str, name: str) -> float:
        """Seconds until another attempt is allowed (0 when it is allowed now)."""
        now = time.monotonic()
        with self._lock:
            waits = [
                self.window_s - (now - times[0])
                for times in (self._recent(f"ip:{client}", now), self._recent(f"name:{name.lower()}", now))
                if len(times) >= self.limit
            ]
        return max(waits, default=0.0)

    def failed(self, client: str, name: str) -> None:
        now = time.monotonic()
        with self._lock:
            self._recent(f"ip:{client}", now).append(now)
            self._recent(f"name:{name.lower()}", now).append(now)

    def succeeded(self, name: str) -> None:
        with self._lock:
            self._failures.pop(f"name:{name.lower()}", None)
