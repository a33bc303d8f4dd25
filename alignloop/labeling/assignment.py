"""Who judges what: claiming tasks under the overlap, validating and storing judgements.

A *slot* is one labeler's place in a prompt's overlap within one round. A slot is
*live* while its assignment is submitted or its lease has not expired; a prompt is
open while it has fewer than ``overlap`` live slots. A labeler's next task is their
own unexpired lease if they hold one, otherwise the least-judged open prompt they
have never taken (skipped and submitted prompts are never offered to them again).
Skips free the slot for someone else; expired leases do too.

Every function here runs inside one transaction from ``AppDatabase.write()``, so
the checks and the writes see the same state and concurrent claims never exceed
the overlap. Refusals raise ``TaskRefused`` with an HTTP status and a message that
says what is wrong; nothing is stored when one is raised.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import and_, exists, func, insert, literal, or_, select, update
from sqlalchemy.orm import Session

from alignloop.errors import AlignloopError
from alignloop.store import Assignment, Completion, Judgement, Prompt, Round

UNUSABLE_REASONS = ("harmful", "nonsense", "pii")
MAX_COMMENT_CHARS = 10_000
MAX_REASON_CHARS = 2_000


class TaskRefused(AlignloopError):
    """A request the rules refuse; ``status`` is the HTTP status the API answers with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class TaskRules:
    """The project settings the assignment rules need (from ``labeling:`` in alignloop.yaml)."""

    task_type: str  # "ranking" | "thumbs" for training rounds; evaluation rounds are always "pairwise"
    overlap: int
    allow_ties: bool
    lease_minutes: float


@dataclass
class Submission:
    """What a labeler sends for one task (the body of a submit call)."""

    ranking: list[list[int]] | None = None
    thumbs: dict[int, int] | None = None
    unusable: dict[int, str] | None = None
    comment: str | None = None
    seconds_spent: float | None = None
    idempotency_key: str | None = None


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def _aware(moment: datetime) -> datetime:
    """SQLite returns naive datetimes; they are UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _live(now: datetime):  # noqa: ANN202 - a SQL expression
    return or_(
        Assignment.status == "submitted",
        and_(Assignment.status == "leased", Assignment.lease_expires_at > now),
    )


# ---------------------------------------------------------------------------- claiming


def current_lease(session: Session, labeler_id: int, now: datetime) -> Assignment | None:
    """The labeler's unexpired, unsubmitted assignment, if any (a reload shows the same task)."""
    return session.scalars(
        select(Assignment)
        .where(Assignment.labeler_id == labeler_id, Assignment.status == "leased", Assignment.lease_expires_at > now)
        .order_by(Assignment.id)
        .limit(1)
    ).first()


def _open_slot(
    session: Session, project_id: int, labeler_id: int, overlap: int, now: datetime
) -> tuple[int, int] | None:
    """(round_id, prompt_id) of the least-judged open slot this labeler has not taken, or None."""
    slots = (
        select(Completion.round_id, Completion.prompt_id)
        .join(Round, Round.id == Completion.round_id)
        .where(Round.project_id == project_id)
        .group_by(Completion.round_id, Completion.prompt_id)
        .having(func.count() >= 2)  # a single completion has nothing to compare
        .subquery()
    )
    live = (
        select(func.count())
        .where(Assignment.round_id == slots.c.round_id, Assignment.prompt_id == slots.c.prompt_id, _live(now))
        .correlate(slots)
        .scalar_subquery()
    )
    taken_by_me = exists().where(
        Assignment.round_id == slots.c.round_id,
        Assignment.prompt_id == slots.c.prompt_id,
        Assignment.labeler_id == labeler_id,
        or_(Assignment.status.in_(("submitted", "skipped")), _live(now)),
    )
    n_live = live.label("n_live")
    row = session.execute(
        select(slots.c.round_id, slots.c.prompt_id, n_live)
        .where(~taken_by_me, live < overlap)
        .order_by(n_live, slots.c.round_id, slots.c.prompt_id)
        .limit(1)
    ).first()
    return None if row is None else (row[0], row[1])


def claim_next(session: Session, project_id: int, labeler_id: int, rules: TaskRules) -> Assignment | None:
    """The labeler's current lease, or a new one on the least-judged open slot; None when nothing is left.

    Must run in a write transaction (``AppDatabase.write``) so two claims cannot take the same free slot.
    """
    now = utcnow()
    held = current_lease(session, labeler_id, now)
    if held is not None:
        return held
    slot = _open_slot(session, project_id, labeler_id, rules.overlap, now)
    if slot is None:
        return None
    round_id, prompt_id = slot
    kind = session.scalar(select(Round.kind).where(Round.id == round_id))
    completion_ids = list(
        session.scalars(
            select(Completion.id)
            .where(Completion.round_id == round_id, Completion.prompt_id == prompt_id)
            .order_by(Completion.sample_index)
        )
    )
    expires = now + timedelta(minutes=rules.lease_minutes)
    # An expired lease of this labeler on the same slot is revived (the table allows one row per labeler and slot).
    mine = session.scalars(
        select(Assignment).where(
            Assignment.round_id == round_id, Assignment.prompt_id == prompt_id, Assignment.labeler_id == labeler_id
        )
    ).first()
    if mine is not None:
        mine.status, mine.leased_at, mine.lease_expires_at = "leased", now, expires
        session.flush()
        return mine
    order = completion_ids[:]
    random.SystemRandom().shuffle(order)  # per-labeler display order, stored to measure position bias
    task_type = "pairwise" if kind == "eval" else rules.task_type
    assignment = Assignment(
        prompt_id=prompt_id,
        round_id=round_id,
        labeler_id=labeler_id,
        task_type=task_type,
        display_order=order,
        status="leased",
        leased_at=now,
        lease_expires_at=expires,
    )
    session.add(assignment)
    session.flush()
    return assignment


def task_payload(
    session: Session, assignment: Assignment, *, guideline_version: int, rules: TaskRules
) -> dict[str, Any]:
    """The task as the labeler sees it: prompt and completions in their display order, nothing else.

    Model names, seeds, sample indices and rounds are left out on purpose: labelers judge blind.
    """
    prompt = session.get(Prompt, assignment.prompt_id)
    texts = dict(
        session.execute(select(Completion.id, Completion.text).where(Completion.id.in_(assignment.display_order))).all()
    )
    return {
        "assignment_id": assignment.id,
        "task_type": assignment.task_type,
        "prompt": prompt.text,
        "messages": prompt.messages,
        "completions": [{"id": cid, "text": texts[cid]} for cid in assignment.display_order],
        "guideline_version": guideline_version,
        "allow_ties": rules.allow_ties,
        "unusable_reasons": list(UNUSABLE_REASONS),
        "lease_expires_at": _aware(assignment.lease_expires_at).isoformat(),
    }


# ---------------------------------------------------------------------------- validation


def _check_ranking(ranking: Any, ids: list[int], allow_ties: bool) -> list[list[int]]:
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
    duplicates = sorted({c for c in flat if flat.count(c) > 1})
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


def _check_thumbs(thumbs: Any, ids: list[int]) -> dict[str, int]:
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


def _check_unusable(unusable: Any, ids: list[int]) -> dict[str, str]:
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


def _check_extras(sub: Submission) -> None:
    if sub.comment is not None and len(sub.comment) > MAX_COMMENT_CHARS:
        raise TaskRefused(422, f"comment is longer than {MAX_COMMENT_CHARS} characters")
    if sub.seconds_spent is not None and (not math.isfinite(sub.seconds_spent) or sub.seconds_spent < 0):
        raise TaskRefused(422, "seconds_spent must be a non-negative number")
    if sub.idempotency_key is not None and not 1 <= len(sub.idempotency_key) <= 200:
        raise TaskRefused(422, "idempotency_key must be 1-200 characters")


# ---------------------------------------------------------------------------- storing


def _owned_open_assignment(
    session: Session, assignment_id: int, labeler_id: int, overlap: int, now: datetime
) -> Assignment:
    assignment = session.get(Assignment, assignment_id)
    if assignment is None:
        raise TaskRefused(404, f"there is no task {assignment_id}")
    if assignment.labeler_id != labeler_id:
        raise TaskRefused(403, f"task {assignment_id} is not assigned to you")
    if assignment.status in ("submitted", "skipped"):
        raise TaskRefused(409, f"task {assignment_id} was already {assignment.status}; fetch the next task")
    if _aware(assignment.lease_expires_at) <= now:
        # Late work is still welcome while nobody else has taken the freed slot.
        others = session.scalar(
            select(func.count()).where(
                Assignment.round_id == assignment.round_id,
                Assignment.prompt_id == assignment.prompt_id,
                Assignment.id != assignment.id,
                _live(now),
            )
        )
        if others >= overlap:
            raise TaskRefused(
                409,
                f"your lease on task {assignment_id} expired and the task went to another labeler; fetch the next task",
            )
    return assignment


def _replay(session: Session, key: str, assignment_id: int, labeler_id: int) -> Judgement | None:
    """The judgement already stored under ``key`` by this labeler for this task (a retried request)."""
    found = session.scalars(select(Judgement).where(Judgement.idempotency_key == key)).first()
    if found is None:
        return None
    if found.labeler_id != labeler_id or found.assignment_id != assignment_id:
        raise TaskRefused(409, "this idempotency_key was already used for a different judgement; send a new key")
    return found


def submit(
    session: Session,
    *,
    assignment_id: int,
    labeler_id: int,
    kind: str,
    submission: Submission,
    guideline_version_id: int | None,
    rules: TaskRules,
) -> tuple[Judgement, bool]:
    """Validate and store a ranking, thumbs or skip; returns (judgement, replayed).

    ``kind`` is "ranking" (also answers pairwise tasks), "thumbs" or "skip". ``replayed``
    is True when the idempotency key had already stored this judgement: nothing new is written.
    """
    key = submission.idempotency_key or f"assignment-{assignment_id}"
    _check_extras(submission)
    previous = _replay(session, key, assignment_id, labeler_id)
    if previous is not None:
        return previous, True
    now = utcnow()
    assignment = _owned_open_assignment(session, assignment_id, labeler_id, rules.overlap, now)
    ids = [int(c) for c in assignment.display_order]
    ranking = thumbs = None
    skip_reason = None
    if kind == "skip":
        skip_reason = (submission.comment or "").strip()
        if not skip_reason:
            raise TaskRefused(422, "say why you skip this task (reason)")
        if len(skip_reason) > MAX_REASON_CHARS:
            raise TaskRefused(422, f"the skip reason is longer than {MAX_REASON_CHARS} characters")
        unusable: dict[str, str] = {}
        comment = None
    else:
        expected = "thumbs" if assignment.task_type == "thumbs" else "ranking"
        if kind != expected:
            raise TaskRefused(
                422, f"task {assignment_id} is a {assignment.task_type} task; submit {expected}, not {kind}"
            )
        if kind == "ranking":
            ranking = _check_ranking(submission.ranking, ids, rules.allow_ties)
        else:
            thumbs = _check_thumbs(submission.thumbs, ids)
        unusable = _check_unusable(submission.unusable, ids)
        comment = (submission.comment or "").strip() or None
    seconds = submission.seconds_spent
    if seconds is None:
        seconds = (now - _aware(assignment.leased_at)).total_seconds()
    stored_kind = "skip" if kind == "skip" else assignment.task_type
    judgement_id = session.execute(
        insert(Judgement)
        .values(
            assignment_id=assignment.id,
            labeler_id=labeler_id,
            prompt_id=assignment.prompt_id,
            round_id=assignment.round_id,
            kind=stored_kind,
            ranking=ranking,
            thumbs=thumbs,
            unusable=unusable,
            comment=comment,
            skip_reason=skip_reason,
            guideline_version_id=guideline_version_id,
            seconds_spent=float(seconds),
            idempotency_key=key,
            created_at=now,
        )
        .returning(Judgement.id)
    ).scalar_one()
    session.execute(
        update(Assignment)
        .where(Assignment.id == assignment.id)
        .values(status="skipped" if kind == "skip" else "submitted", completed_at=now)
        .execution_options(synchronize_session=False)
    )
    return session.get(Judgement, judgement_id), False


def judgement_json(judgement: Judgement) -> dict[str, Any]:
    """A judgement as the API returns it to its own labeler."""
    return {
        "judgement_id": judgement.id,
        "assignment_id": judgement.assignment_id,
        "kind": judgement.kind,
        "ranking": judgement.ranking,
        "thumbs": judgement.thumbs,
        "unusable": judgement.unusable,
        "comment": judgement.comment,
        "skip_reason": judgement.skip_reason,
        "seconds_spent": judgement.seconds_spent,
        "idempotency_key": judgement.idempotency_key,
        "guideline_version_id": judgement.guideline_version_id,
        "created_at": _aware(judgement.created_at).isoformat(),
    }


def has_open_work(session: Session, project_id: int) -> bool:
    """Whether the project has any round with completions at all (for a friendlier empty-queue message)."""
    return bool(
        session.scalar(
            select(literal(1)).where(exists().where(Completion.round_id == Round.id, Round.project_id == project_id))
        )
    )
