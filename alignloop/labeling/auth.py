"""Sessions, CSRF and sign-in throttling for the labeling app.

- The session is server-side: the cookie (HttpOnly, SameSite=Lax) holds a random
  token and the store keeps its sha256 in ``labeler_sessions``. Signing out deletes
  that row; deactivation and a new password delete all of the account's rows. Each
  request reads one primary-key row joined with its account; no argon2 on this path.
- CSRF: every form carries ``csrf_token`` and every state-changing API call the
  ``X-CSRF-Token`` header; the token is an HMAC of the session id. Before sign-in
  (login and invite forms) a random token in a cookie must match the form field.
- Failed sign-ins are limited per (account name, client address), per address and per name;
  names are counted as sign-in matches them (surrounding spaces ignored).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import Request, Response
from sqlalchemy import bindparam, delete, select
from sqlalchemy.orm import Session

from alignloop.store import Labeler, LabelerSession

if TYPE_CHECKING:
    from alignloop.labeling.db import AppDatabase

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


_SESSION_ROW = (
    select(
        LabelerSession.labeler_id,
        LabelerSession.expires_at,
        Labeler.name,
        Labeler.role,
        Labeler.active,
        Labeler.read_guidelines_version,
    )
    .join(Labeler, Labeler.id == LabelerSession.labeler_id)
    .where(LabelerSession.id == bindparam("session_id"))
)


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Sessions:
    """Server-side sessions: the cookie holds a random token, the store its sha256 (``labeler_sessions``).

    Signing out deletes the row; deactivation and a new password delete all of an account's
    rows (``end_all``). Each request reads one row (joined with its account), cached for
    ``cache_s`` seconds per process: changes made by this process take effect at once, changes
    made by another worker within ``cache_s``. CSRF tokens are an HMAC of the session id.
    """

    def __init__(self, secret: bytes, cache_s: float = 1.0) -> None:
        self._secret = secret
        self._cache_s = cache_s
        self._rows: dict[str, tuple[float, Any]] = {}  # session id -> (fetched at, session row or None)

    def forget(self, labeler_id: int) -> None:
        """Drop cached rows of one account (after this process changed it)."""
        for session_id, (_at, row) in list(self._rows.items()):
            if row is not None and row.labeler_id == labeler_id:
                self._rows.pop(session_id, None)

    def forget_all(self) -> None:
        self._rows.clear()

    def issue(self, labeler: Labeler, db: AppDatabase) -> tuple[str, str]:
        """(cookie value, csrf token) for a new session of ``labeler``, stored before this returns."""
        token = secrets.token_urlsafe(32)
        session_id = _token_hash(token)
        now = datetime.now(timezone.utc)
        with db.write() as s:
            s.execute(delete(LabelerSession).where(LabelerSession.expires_at < now))
            s.add(
                LabelerSession(
                    id=session_id,
                    labeler_id=labeler.id,
                    created_at=now,
                    expires_at=now + timedelta(days=SESSION_DAYS),
                )
            )
        return token, self.csrf_token(session_id)

    def revoke(self, session_id: str, db: AppDatabase) -> None:
        """End one session (sign-out)."""
        with db.write() as s:
            s.execute(delete(LabelerSession).where(LabelerSession.id == session_id))
        self._rows.pop(session_id, None)

    def csrf_token(self, session_id: str) -> str:
        return hmac.new(self._secret, f"csrf:{session_id}".encode(), hashlib.sha256).hexdigest()[:40]

    def check_csrf(self, user: User, token: str | None) -> None:
        if not token or not hmac.compare_digest(token, self.csrf_token(user.session_id)):
            raise CsrfFailed()

    def _row(self, session_id: str, db: AppDatabase) -> Any:
        now = time.monotonic()
        cached = self._rows.get(session_id)
        if cached is not None and now - cached[0] < self._cache_s:
            return cached[1]
        with db.read_conn() as conn:
            row = conn.execute(_SESSION_ROW, {"session_id": session_id}).first()
        if len(self._rows) > 10_000:
            self._rows.clear()
        self._rows[session_id] = (now, row)
        return row

    def user(self, cookie: str | None, db: AppDatabase) -> User:
        """The labeler a session cookie belongs to; ``NotSignedIn`` when it is missing, unknown, ended or expired."""
        if not cookie or len(cookie) > 100:
            raise NotSignedIn()
        session_id = _token_hash(cookie)
        row = self._row(session_id, db)
        if row is None or not row.active or _aware(row.expires_at) < datetime.now(timezone.utc):
            raise NotSignedIn()
        return User(
            id=row.labeler_id,
            name=row.name,
            role=row.role,
            read_guidelines_version=row.read_guidelines_version,
            session_id=session_id,
        )


def end_sessions(session: Session, labeler_id: int) -> None:
    """Delete every session of an account (deactivation, new password); part of the caller's transaction."""
    session.execute(delete(LabelerSession).where(LabelerSession.labeler_id == labeler_id))


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def set_session_cookie(response: Response, request: Request, value: str) -> None:
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


def set_prelogin_cookie(response: Response, request: Request, token: str) -> None:
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


def throttle_name(name: str) -> str:
    """The account name as the throttle counts it: sign-in ignores surrounding spaces, so the throttle
    must too (and case, so near-duplicates share one count)."""
    return name.strip().casefold()


class LoginThrottle:
    """Limits failed sign-ins per ``window_s``: ``per_pair`` per (account name, client address),
    ``per_client`` per client address over all names, and ``per_name`` per account over all clients.

    One client's wrong guesses lock only that client out of that account, so nobody can lock a
    colleague out with five bad passwords; ``per_name`` still caps guessing spread over many
    addresses. Kept in memory per server process (each worker counts on its own).
    """

    def __init__(self, per_pair: int = 5, per_client: int = 20, per_name: int = 100, window_s: float = 300.0) -> None:
        self.per_pair = per_pair
        self.per_client = per_client
        self.per_name = per_name
        self.window_s = window_s
        self._failures: dict[str, deque[float]] = defaultdict(deque)
        self._lock = threading.Lock()

    def _recent(self, key: str, now: float) -> deque[float]:
        times = self._failures[key]
        while times and now - times[0] > self.window_s:
            times.popleft()
        if not times:
            del self._failures[key]  # keeps the table from growing with every name ever tried
            return deque()
        return times

    def _keys(self, client: str, name: str) -> list[tuple[str, int]]:
        name = throttle_name(name)
        return [
            (f"pair:{name}\0{client}", self.per_pair),
            (f"ip:{client}", self.per_client),
            (f"name:{name}", self.per_name),
        ]

    def retry_after(self, client: str, name: str) -> float:
        """Seconds until another attempt is allowed (0 when it is allowed now)."""
        now = time.monotonic()
        with self._lock:
            waits = [
                self.window_s - (now - times[0])
                for key, limit in self._keys(client, name)
                if len(times := self._recent(key, now)) >= limit
            ]
        return max(waits, default=0.0)

    def failed(self, client: str, name: str) -> None:
        now = time.monotonic()
        with self._lock:
            for key, _limit in self._keys(client, name):
                self._failures[key].append(now)

    def succeeded(self, client: str, name: str) -> None:
        with self._lock:
            self._failures.pop(self._keys(client, name)[0][0], None)
