"""Labeler accounts: one-time invites, argon2 password hashes, roles, deactivation.

An account is created with a random invite token; only its sha256 is stored. The
person opening the invite link chooses a password, which redeems (clears) the
token, so a leaked link cannot be used twice. An invite expires after
``labeling.invite_days``; the hash of the invite last redeemed is kept so that
opening a used link can say "already used, sign in" rather than "not valid".
"""

from __future__ import annotations

import hashlib
import re
import secrets
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Self
from urllib.parse import quote

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from pydantic import BaseModel, Field
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from alignloop.errors import AlignloopError, InputError
from alignloop.labeling.auth import end_sessions
from alignloop.store import Assignment, Labeler, Store

MIN_PASSWORD_LENGTH = 8


class Credentials(BaseModel):
    """The body of a sign-in (the labeling app's and the model server's)."""

    name: str = Field(description="Account name.")
    password: str = Field(description="Password.")


class InviteAcceptance(BaseModel):
    """The body that redeems an invite (the labeling app's and the model server's)."""

    token: str = Field(description="The invite token, or the whole invite link.")
    password: str = Field(description=f"New password, at least {MIN_PASSWORD_LENGTH} characters.")


INVITE_DAYS = 7.0  # the default of labeling.invite_days
ROLES = ("labeler", "admin")

# argon2id with the library's defaults (RFC 9106 "low memory" profile): ~50 ms per hash here,
# paid only at sign-in, never on the per-task path.
_hasher = PasswordHasher()
# Each hash takes 64 MiB for ~50 ms: a burst of sign-ins is queued, not run all at once.
_hashing = threading.BoundedSemaphore(4)


@dataclass
class Account:
    """What the admin sees about an account (never the hashes); the lists of accounts add their own columns."""

    id: int
    name: str
    role: str
    active: bool
    invited: bool  # True while the invite has not been redeemed
    invite_expired: bool  # ... and it can no longer be, because it expired

    @classmethod
    def from_row(cls, row: Labeler, now: datetime | None = None, **columns: Any) -> Self:
        """The account ``row`` as its invite stands at ``now`` (default: this moment), with ``columns``."""
        invited = row.invite_token_hash is not None
        return cls(row.id, row.name, row.role, row.active, invited, invite_expired(row, now), **columns)

    @property
    def status(self) -> str:
        """One word for the account lists: deactivated, invite expired, invited or active."""
        if not self.active:
            return "deactivated"
        if self.invited:
            return "invite expired" if self.invite_expired else "invited"
        return "active"


@dataclass
class LabelerInfo(Account):
    """An account with the guideline version it last acknowledged (``alignloop labelers list``)."""

    read_guidelines_version: int | None


class InviteRefused(AlignloopError):
    """An invite link that cannot be redeemed. ``reason``: "expired", "used" or "invalid"; ``status`` is the
    HTTP answer: 410 Gone for expired, 409 for used (sign in instead), 400 for unknown or revoked."""

    STATUS = {"expired": 410, "used": 409, "invalid": 400}

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.status = self.STATUS[reason]


_INVITE_MESSAGES = {
    "expired": "this invite link has expired; ask an admin for a new one",
    "used": "this invite was already used; sign in with your name and password "
    "(forgot the password? ask an admin for a new invite link)",
    "invalid": "this invite link is not valid (revoked, or mistyped); ask an admin for a new one",
}


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)  # SQLite returns naive UTC


def invite_expired(row: Labeler, now: datetime | None = None) -> bool:
    """True when the account's pending invite has passed its expiry time."""
    if row.invite_token_hash is None or row.invite_expires_at is None:
        return False
    return _aware(row.invite_expires_at) <= (now or datetime.now(timezone.utc))


def _invite_expiry(invite_days: float) -> datetime:
    return datetime.now(timezone.utc) + timedelta(days=invite_days)


def token_hash(token: str) -> str:
    """sha256 hex digest of an invite token: what the store keeps instead of the token."""
    return hashlib.sha256(token.encode()).hexdigest()


def hash_password(password: str) -> str:
    with _hashing:
        return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    """True when ``password`` matches; a missing or malformed hash never matches."""
    if not password_hash:
        return False
    try:
        with _hashing:
            return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


_NAME = re.compile(r"[\w.@+-]{1,200}")


def _check_name(name: str) -> str:
    """New names are letters, digits and ``. _ @ + -`` (not only dots): safe in a URL path and a page."""
    name = name.strip()
    if not _NAME.fullmatch(name) or set(name) == {"."}:
        raise InputError("a labeler name is 1-200 letters, digits or . _ @ + - (not only dots)", field="name")
    return name


def add_labeler(store: Store, name: str, *, admin: bool = False, invite_days: float = INVITE_DAYS) -> str:
    """Create an account and return its one-time invite token (shown once, stored hashed), valid for
    ``invite_days``."""
    name = _check_name(name)
    token = secrets.token_urlsafe(24)
    with store.session() as s:
        if s.scalars(select(Labeler.id).where(Labeler.name == name)).first() is not None:
            raise InputError(f"a labeler named {name!r} already exists", field="name")
        s.add(
            Labeler(
                name=name,
                role="admin" if admin else "labeler",
                invite_token_hash=token_hash(token),
                invite_expires_at=_invite_expiry(invite_days),
                active=True,
            )
        )
    return token


def reinvite_labeler(store: Store, name: str, *, invite_days: float = INVITE_DAYS) -> str:
    """Issue a fresh invite token for an existing account (a forgotten password); the old password and
    sessions stop working. A deactivated account stays deactivated (``reactivate_labeler`` lets it back in)."""
    token = secrets.token_urlsafe(24)
    with store.session() as s:
        row = _by_name(s, name)
        row.invite_token_hash = token_hash(token)
        row.invite_expires_at = _invite_expiry(invite_days)
        row.used_invite_token_hash = None  # the old link is revoked now, not "used: sign in"
        row.password_hash = None
        end_sessions(s, row.id)
    return token


def invite_url(base_url: str, token: str) -> str:
    """The link a new labeler opens to choose a password."""
    return f"{base_url.rstrip('/')}/invite/{quote(token)}"


def invite_token_from(invite: str) -> str:
    """Accept either an invite URL or a bare token."""
    invite = invite.strip()
    if "/invite/" in invite:
        invite = invite.split("/invite/", 1)[1]
    return invite.split("?", 1)[0].split("#", 1)[0].strip("/")


def invite_status(store: Store, token: str) -> str:
    """What opening this invite link should show: "open" (choose a password), "expired", "used" or "invalid"."""
    hashed = token_hash(token)
    with store.session() as s:
        row = s.scalars(select(Labeler).where(Labeler.invite_token_hash == hashed)).first()
        if row is None:
            used = s.scalars(select(Labeler.id).where(Labeler.used_invite_token_hash == hashed)).first()
            return "used" if used is not None else "invalid"
        if not row.active:
            return "invalid"
        return "expired" if invite_expired(row) else "open"


def redeem_invite(store: Store, token: str, password: str) -> Labeler:
    """Set the password of the account the invite belongs to and consume the invite.

    Raises ``InviteRefused`` for an expired, used or unknown invite (before looking at the password).
    """
    status = invite_status(store, token)
    if status != "open":
        raise InviteRefused(status, _INVITE_MESSAGES[status])
    if len(password.strip()) < MIN_PASSWORD_LENGTH:
        raise InputError(f"choose a password of at least {MIN_PASSWORD_LENGTH} characters", field="password")
    hashed = hash_password(password)
    with store.session() as s:
        row = s.scalars(select(Labeler).where(Labeler.invite_token_hash == token_hash(token))).first()
        if row is None or not row.active or invite_expired(row):  # changed while the password was hashed
            raise InviteRefused("invalid", _INVITE_MESSAGES["invalid"])
        row.password_hash = hashed
        row.used_invite_token_hash = row.invite_token_hash
        row.invite_token_hash = None
        row.invite_expires_at = None
        end_sessions(s, row.id)
        s.flush()
        s.expunge(row)
        return row


def authenticate(store: Store, name: str, password: str) -> Labeler | None:
    """The active account with this name and password, or None (same answer for every failure)."""
    with store.session() as s:
        row = s.scalars(select(Labeler).where(Labeler.name == name.strip())).first()
        if row is None or not row.password_hash:
            # Spend the time of a real check, so names (and not-yet-accepted invites) cannot be probed by timing.
            hash_password(password)
            return None
        if not verify_password(row.password_hash, password) or not row.active:
            return None
        s.expunge(row)
        return row


def _by_name(session: Session, name: str) -> Labeler:
    row = session.scalars(select(Labeler).where(Labeler.name == name)).first()
    if row is None:
        raise InputError(f"no labeler named {name!r}", field="name")
    return row


def deactivate_labeler(store: Store, name: str) -> None:
    """Stop an account from signing in or working; its judgements stay. Takes effect on its next request.

    The tasks it holds are released at once (their leases end now), so others can take them.
    """
    with store.session() as s:
        row = _by_name(s, name)
        row.active = False
        end_sessions(s, row.id)
        s.execute(
            update(Assignment)
            .where(Assignment.labeler_id == row.id, Assignment.status == "leased")
            .values(lease_expires_at=datetime.now(timezone.utc))
        )


def reactivate_labeler(store: Store, name: str) -> None:
    """Let a deactivated account sign in again (with its old password, or its pending invite)."""
    with store.session() as s:
        _by_name(s, name).active = True


def check_can_deactivate(store: Store, name: str, by: str) -> None:
    """Refuse deactivating yourself or the last active admin: nobody could sign in to undo it."""
    if name == by:
        raise InputError("you cannot deactivate your own account", field="name")
    with store.session() as s:
        row = _by_name(s, name)
        admins = s.scalars(select(Labeler.id).where(Labeler.role == "admin", Labeler.active.is_(True))).all()
        if row.role == "admin" and row.active and len(admins) <= 1:
            raise InputError("this is the last active admin; make another admin first", field="name")


def list_labelers(store: Store) -> list[LabelerInfo]:
    with store.session() as s:
        return [
            LabelerInfo.from_row(row, read_guidelines_version=row.read_guidelines_version)
            for row in s.scalars(select(Labeler).order_by(Labeler.id))
        ]
