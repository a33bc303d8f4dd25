"""Checking a submitted judgement against its task, before anything is stored.

Each check raises ``TaskRefused`` with the HTTP status the API answers (422 for a
malformed judgement) and a message saying exactly what is wrong. The answer itself
(a ranking, thumbs, ...) is checked by its task type (``alignloop.task_types``); the
flags, comment and timing that every task type shares are checked here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from alignloop.errors import TaskRefused
from alignloop.task_types import completion_key

UNUSABLE_REASONS = ("harmful", "nonsense", "pii")
MAX_COMMENT_CHARS = 10_000
MAX_REASON_CHARS = 2_000
MAX_SECONDS = 7 * 86_400  # a week: anything longer is a broken clock, not time spent


@dataclass
class Submission:
    """What a labeler sends for one task (the body of a submit call)."""

    answer: Any = None  # the task type's answer (a ranking, thumbs, ...), checked by the task type
    unusable: Mapping[int, str] | None = None
    comment: str | None = None  # the skip reason, for a skip
    seconds_spent: float | None = None
    idempotency_key: str | None = None


def check_unusable(unusable: Any, ids: list[int]) -> dict[str, str]:
    if unusable is None:
        return {}
    if not isinstance(unusable, dict):
        raise TaskRefused(422, "unusable must map completion ids to a reason")
    checked = {}
    for key, reason in unusable.items():
        cid = completion_key(key, ids, "unusable")
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
