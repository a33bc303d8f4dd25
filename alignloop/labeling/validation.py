"""Checking a submitted judgement against its task, before anything is stored.

Each check raises ``TaskRefused`` with the HTTP status the API answers (422 for a
malformed judgement) and a message saying exactly what is wrong.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from alignloop.errors import AlignloopError

UNUSABLE_REASONS = ("harmful", "nonsense", "pii")
MAX_COMMENT_CHARS = 10_000
MAX_REASON_CHARS = 2_000
MAX_SECONDS = 7 * 86_400  # a week: anything longer is a broken clock, not time spent


class TaskRefused(AlignloopError):
    """A request the rules refuse; ``status`` is the HTTP status the API answers with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class Submission:
    """What a labeler sends for one task (the body of a submit call)."""

    ranking: list[list[int]] | None = None
    thumbs: Mapping[int, int] | None = None
    unusable: Mapping[int, str] | None = None
    comment: str | None = None  # the skip reason, for a skip
    seconds_spent: float | None = None
    idempotency_key: str | None = None


def check_ranking(ranking: Any, ids: list[int], allow_ties: bool) -> list[list[int]]:
    if not isinstance(ranking, list) or not ranking:
        raise TaskRefused(422, "ranking must be a non-empty list of tiers, best first, e.g. [[12], [10], [13]]")
    tiers: list[list[int]] = []
    for position, tier in enumerate(ranking):
        if (
            not isinstance(tier, list)
            or not tier
            or not all(isinstance(c, int) and not isinstance(c, bool) for c in tier)
        ):
            raise TaskRefused(422, f"ranking tier {position} must be a non-empty list of completion ids")
        if len(tier) > 1 and not allow_ties:
            raise TaskRefused(422, f"ranking tier {position} places {tier} level, but this project does not allow ties")
        tiers.append(list(tier))
    flat = [c for tier in tiers for c in tier]
    expected = set(ids)
    duplicates = sorted(c for c, n in Counter(flat).items() if n > 1)
    if duplicates:
        raise TaskRefused(422, f"ranking places completion(s) {duplicates} more than once")
    unknown = sorted(set(flat) - expected)
    if unknown:
        raise TaskRefused(
            422, f"ranking names completion(s) {unknown} that are not part of this task {sorted(expected)}"
        )
    missing = sorted(expected - set(flat))
    if missing:
        raise TaskRefused(422, f"ranking leaves out completion(s) {missing}; rank all of {sorted(expected)}")
    return tiers


def check_thumbs(thumbs: Any, ids: list[int]) -> dict[str, int]:
    if not isinstance(thumbs, dict) or not thumbs:
        raise TaskRefused(422, "thumbs must map every completion id to 1 (up) or -1 (down)")
    checked: dict[str, int] = {}
    for key, value in thumbs.items():
        cid = _completion_key(key, ids, "thumbs")
        if value not in (1, -1) or isinstance(value, bool):
            raise TaskRefused(422, f"thumbs for completion {cid} must be 1 (up) or -1 (down), not {value!r}")
        checked[str(cid)] = int(value)
    missing = sorted(set(ids) - {int(k) for k in checked})
    if missing:
        raise TaskRefused(422, f"thumbs leave out completion(s) {missing}; give one for each of {sorted(ids)}")
    return checked


def _completion_key(key: Any, ids: list[int], what: str) -> int:
    try:
        cid = int(key)
    except (TypeError, ValueError):
        raise TaskRefused(422, f"{what}: {key!r} is not a completion id") from None
    if cid not in ids:
        raise TaskRefused(422, f"{what}: completion {cid} is not part of this task {sorted(ids)}")
    return cid


def check_unusable(unusable: Any, ids: list[int]) -> dict[str, str]:
    if unusable is None:
        return {}
    if not isinstance(unusable, dict):
        raise TaskRefused(422, "unusable must map completion ids to a reason")
    checked = {}
    for key, reason in unusable.items():
        cid = _completion_key(key, ids, "unusable")
        if reason not in UNUSABLE_REASONS:
            raise TaskRefused(
                422,
                f"unusable reason for completion {cid} must be one of {', '.join(UNUSABLE_REASONS)}, not {reason!r}",
            )
        checked[str(cid)] = reason
    return checked


def check_extras(sub: Submission) -> None:
    if sub.comment is not None and len(sub.comment) > MAX_COMMENT_CHARS:
        raise TaskRefused(422, f"comment is longer than {MAX_COMMENT_CHARS} characters")
    if sub.seconds_spent is not None and not 0 <= sub.seconds_spent <= MAX_SECONDS:  # NaN fails too
        raise TaskRefused(422, f"seconds_spent must be a number of seconds from 0 to {MAX_SECONDS}")
    if sub.idempotency_key is not None and not 1 <= len(sub.idempotency_key) <= 200:
        raise TaskRefused(422, "idempotency_key must be 1-200 characters")
