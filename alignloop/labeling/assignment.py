"""Who judges what: claiming tasks under the overlap, and storing judgements exactly once.

A *slot* is one labeler's place in a prompt's overlap within one round. A slot is
*live* while its assignment is submitted or its lease has not expired; a prompt is
open while it has fewer than ``overlap`` live slots. A labeler's next task is their
own unexpired lease if they hold one, otherwise the least-judged open prompt they
have never submitted or skipped (under ``assignment: uncertainty``, the open prompt
with the highest stored priority, unscored prompts last). Skips and expired leases free the slot for
someone else; a labeler's own expired lease can come back to them.

Every method runs inside one transaction from ``AppDatabase.write()`` (the write
lock is held from the first read), so checks and writes see the same state and
concurrent claims never exceed the overlap. The hot path uses prepared Core
statements (compiled once) and an in-process ``SlotBoard`` to propose candidates;
each candidate is re-checked against the database before it is leased.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import Connection, and_, bindparam, exists, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from alignloop.labeling.board import Slot, SlotBoard, holds_slot, task_slots
from alignloop.labeling.validation import (
    MAX_REASON_CHARS,
    UNUSABLE_REASONS,
    Submission,
    TaskRefused,
    check_extras,
    check_unusable,
)
from alignloop.store import Assignment as A
from alignloop.store import Completion, Judgement, Prompt, PromptPriority, Round
from alignloop.task_types import TASK_TYPES

MAX_CANDIDATES = 64  # board proposals tried before falling back to the exact query
ANSWER_COLUMNS = tuple(dict.fromkeys(t.column for t in TASK_TYPES.entries()))  # judgement columns of answers
_KEY_REUSED = "this idempotency_key was already used for a different judgement; send a new key"


@dataclass
class TaskRules:
    """The project settings the assignment rules need (from ``labeling:`` in alignloop.yaml)."""

    task_type: str  # a training task type of TASK_TYPES; evaluation rounds are always "pairwise"
    overlap: int
    allow_ties: bool
    lease_minutes: float
    assignment: str = "least_judged"  # "least_judged" | "uncertainty" (stored priorities first)
    display_seed: int | None = None  # seeds each (labeler, task)'s display order; None: drawn afresh


@dataclass
class Lease:
    """An assignment held by a labeler: what the task page needs to show it."""

    id: int
    round_id: int
    prompt_id: int
    task_type: str
    display_order: list[int]  # completion ids in the order this labeler sees them
    lease_expires_at: datetime


@dataclass
class SlotContent:
    """A prompt and its completions in one round (immutable once generated, so cached per process)."""

    round_kind: str  # "train" | "eval"
    prompt: str
    messages: list[dict[str, str]] | None
    texts: dict[int, str]  # completion id -> text
    sample_order: list[int]  # completion ids by sample index


def display_order(completion_ids: list[int], seed: int | None, labeler_id: int, slot: Slot) -> list[int]:
    """The order one labeler sees a task's completions in: shuffled per labeler and task (and stored) to measure
    position bias; drawn from ``seed``, the labeler and the slot when a seed is given, so a seeded run repeats."""
    order = completion_ids[:]
    shuffle = random.shuffle if seed is None else random.Random(f"{seed}:{labeler_id}:{slot[0]}:{slot[1]}").shuffle
    shuffle(order)
    return order


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def aware(moment: datetime) -> datetime:
    """SQLite returns naive datetimes; they are UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


_LEASE_COLUMNS = (A.id, A.round_id, A.prompt_id, A.task_type, A.display_order, A.lease_expires_at)
_HELD = (
    select(*_LEASE_COLUMNS)
    .where(A.labeler_id == bindparam("labeler_id"), A.status == "leased", A.lease_expires_at > bindparam("now"))
    .order_by(A.id)
    .limit(1)
)
_TAKEN = select(A.round_id, A.prompt_id).where(
    A.labeler_id == bindparam("labeler_id"),
    or_(A.status.in_(("submitted", "skipped")), and_(A.status == "leased", A.lease_expires_at > bindparam("now"))),
)
_SLOT_ROWS = select(A.id, A.labeler_id, A.status, A.lease_expires_at, A.task_type, A.display_order).where(
    A.prompt_id == bindparam("prompt_id"), A.round_id == bindparam("round_id")
)
_ASSIGNMENT = select(
    A.id, A.labeler_id, A.round_id, A.prompt_id, A.task_type, A.display_order, A.status, A.leased_at, A.lease_expires_at
).where(A.id == bindparam("assignment_id"))
_REPLAY = select(Judgement).where(
    Judgement.labeler_id == bindparam("labeler_id"), Judgement.idempotency_key == bindparam("key")
)
_LATEST = select(Judgement).where(Judgement.assignment_id == bindparam("assignment_id")).order_by(Judgement.id.desc())
_CONTENT = (
    select(Round.kind, Prompt.text.label("prompt"), Prompt.messages, Completion.id, Completion.text)
    .join(Round, Round.id == Completion.round_id)
    .join(Prompt, Prompt.id == Completion.prompt_id)
    .where(Completion.round_id == bindparam("round_id"), Completion.prompt_id == bindparam("prompt_id"))
    .order_by(Completion.sample_index)
)
_INSERT_ASSIGNMENT = insert(A).returning(A.id)
_REVIVE = (
    update(A)
    .where(A.id == bindparam("assignment_id"))
    .values(status="leased", leased_at=bindparam("new_leased_at"), lease_expires_at=bindparam("new_expires_at"))
)
_INSERT_JUDGEMENT = insert(Judgement).returning(Judgement.id)
_FINISH = (
    update(A)
    .where(A.id == bindparam("assignment_id"))
    .values(status=bindparam("new_status"), completed_at=bindparam("done_at"))
)


class Assigner:
    """Claims and submissions for one project, in one server process."""

    def __init__(self, project_id: int, rules: TaskRules, refresh_s: float = 2.0) -> None:
        self.project_id = project_id
        self.rules = rules
        self.board = SlotBoard(
            project_id, rules.overlap, refresh_s=refresh_s, by_priority=rules.assignment == "uncertainty"
        )
        self._content: dict[Slot, SlotContent] = {}

    # ---------------------------------------------------------------- claiming

    def claim(self, conn: Connection, labeler_id: int) -> Lease | None:
        """The labeler's current lease, or a new one on the next open slot (see the module docstring); None when
        nothing is left."""
        now = utcnow()
        held = conn.execute(_HELD, {"labeler_id": labeler_id, "now": now}).first()
        if held is not None:
            return Lease(*held)
        board = self.board
        if board.stale():
            board.refresh(conn, now)
        if board.taken_by(labeler_id) is None:
            taken = conn.execute(_TAKEN, {"labeler_id": labeler_id, "now": now}).all()
            board.set_taken(labeler_id, {(r, p) for r, p in taken})
        for tried, slot in enumerate(board.candidates(labeler_id)):
            if tried >= MAX_CANDIDATES:
                break
            lease = self._try_slot(conn, slot, labeler_id, now)
            if lease is not None:
                return lease
        exact = self._exact_open_slot(conn, labeler_id, now)  # the board may be stale: ask the database itself
        if exact is None:
            return None
        board.refresh(conn, now)
        return self._try_slot(conn, exact, labeler_id, now)

    def _try_slot(self, conn: Connection, slot: Slot, labeler_id: int, now: datetime) -> Lease | None:
        """Lease ``slot`` to the labeler if the database agrees it is open to them; else correct the board."""
        round_id, prompt_id = slot
        rows = conn.execute(_SLOT_ROWS, {"prompt_id": prompt_id, "round_id": round_id}).all()
        live = [
            r for r in rows if r.status == "submitted" or (r.status == "leased" and aware(r.lease_expires_at) > now)
        ]
        mine = next((r for r in rows if r.labeler_id == labeler_id), None)
        if mine is not None and (mine.status in ("submitted", "skipped") or mine in live):
            self.board.mark_taken(labeler_id, slot)
            return None
        if len(live) >= self.rules.overlap:
            self.board.set_count(slot, len(live))
            return None
        expires = now + timedelta(minutes=self.rules.lease_minutes)
        self.board.set_count(slot, len(live) + 1)
        self.board.mark_taken(labeler_id, slot)
        if mine is not None:  # the labeler's own expired lease on this slot comes back to them
            conn.execute(_REVIVE, {"assignment_id": mine.id, "new_leased_at": now, "new_expires_at": expires})
            return Lease(mine.id, round_id, prompt_id, mine.task_type, list(mine.display_order), expires)
        content = self.content(conn, slot)
        order = display_order(content.sample_order, self.rules.display_seed, labeler_id, slot)
        task_type = "pairwise" if content.round_kind == "eval" else self.rules.task_type
        assignment_id = conn.execute(
            _INSERT_ASSIGNMENT,
            {
                "prompt_id": prompt_id,
                "round_id": round_id,
                "labeler_id": labeler_id,
                "task_type": task_type,
                "display_order": order,
                "status": "leased",
                "leased_at": now,
                "lease_expires_at": expires,
            },
        ).scalar_one()
        return Lease(assignment_id, round_id, prompt_id, task_type, order, expires)

    def _exact_open_slot(self, conn: Connection, labeler_id: int, now: datetime) -> Slot | None:
        """The least-judged open slot the labeler has not taken, computed over the whole project in SQL
        (under ``assignment: uncertainty``, the highest-priority one, then the least-judged unscored one)."""
        slots = task_slots(self.project_id).subquery()
        live = (
            select(func.count())
            .where(A.round_id == slots.c.round_id, A.prompt_id == slots.c.prompt_id, holds_slot(now))
            .correlate(slots)
            .scalar_subquery()
        )
        taken_by_me = exists().where(
            A.round_id == slots.c.round_id,
            A.prompt_id == slots.c.prompt_id,
            A.labeler_id == labeler_id,
            or_(A.status.in_(("submitted", "skipped")), holds_slot(now)),
        )
        n_live = live.label("n_live")
        query = select(slots.c.round_id, slots.c.prompt_id, n_live).where(~taken_by_me, live < self.rules.overlap)
        if self.board.by_priority:
            query = query.outerjoin(
                PromptPriority,
                and_(PromptPriority.round_id == slots.c.round_id, PromptPriority.prompt_id == slots.c.prompt_id),
            ).order_by(PromptPriority.priority.is_(None), PromptPriority.priority.desc())
        row = conn.execute(query.order_by(n_live, slots.c.round_id, slots.c.prompt_id).limit(1)).first()
        return None if row is None else (row[0], row[1])

    # ---------------------------------------------------------------- showing

    def content(self, conn: Connection, slot: Slot) -> SlotContent:
        found = self._content.get(slot)
        if found is not None:
            return found
        round_id, prompt_id = slot
        rows = conn.execute(_CONTENT, {"round_id": round_id, "prompt_id": prompt_id}).all()
        first = rows[0]
        found = SlotContent(
            first.kind, first.prompt, first.messages, {r.id: r.text for r in rows}, [r.id for r in rows]
        )
        if len(self._content) > 20_000:
            self._content.clear()
        self._content[slot] = found
        return found

    def payload(self, conn: Connection, lease: Lease, guideline_version: int) -> dict[str, Any]:
        """The task as the labeler sees it: prompt and completions in their display order, nothing else.

        Model names, seeds, sample indices and rounds are left out on purpose: labelers judge blind.
        """
        content = self.content(conn, (lease.round_id, lease.prompt_id))
        return {
            "assignment_id": lease.id,
            "task_type": lease.task_type,
            "prompt": content.prompt,
            "messages": content.messages,
            "completions": [{"id": cid, "text": content.texts[cid]} for cid in lease.display_order],
            "guideline_version": guideline_version,
            "allow_ties": self.rules.allow_ties,
            "unusable_reasons": list(UNUSABLE_REASONS),
            "lease_expires_at": aware(lease.lease_expires_at).isoformat(),
        }

    # ---------------------------------------------------------------- storing

    def submit(
        self,
        conn: Connection,
        *,
        assignment_id: int,
        labeler_id: int,
        kind: str,
        submission: Submission,
        guideline_version_id: int | None,
    ) -> tuple[dict[str, Any], bool]:
        """Validate and store an answer or a skip; returns (judgement as JSON, replayed).

        ``kind`` is the task type's ``answer_field`` ("ranking" also answers pairwise tasks) or "skip". ``replayed`` is
        True when the idempotency key had already stored this judgement: nothing new is written.
        Raises ``TaskRefused`` (nothing stored) when the task is not this labeler's, is already
        done, or the judgement does not fit the task.
        """
        key = submission.idempotency_key
        check_extras(submission)
        now = utcnow()
        task = conn.execute(_ASSIGNMENT, {"assignment_id": assignment_id}).first()
        if task is None:
            raise TaskRefused(404, f"there is no task {assignment_id}")
        if task.labeler_id != labeler_id:
            raise TaskRefused(403, f"task {assignment_id} is not assigned to you")
        if task.status == "served":
            raise TaskRefused(
                409, f"task {assignment_id} holds answers a served model gave you; give feedback with POST /v1/feedback"
            )
        verdict = self._verdict(task, kind, submission)
        previous = self._previous(conn, task, labeler_id, key)
        if previous is not None:
            # A retried request: answer with the stored judgement, but only for the same verdict.
            if any(getattr(previous, name) != value for name, value in verdict.items()):
                raise TaskRefused(
                    409,
                    f"task {assignment_id} was already {task.status} with a different judgement; "
                    "a retry must resend the same body (fetch the next task)",
                )
            return judgement_json(previous), True
        self._check_open(conn, task, now)
        seconds = submission.seconds_spent
        if seconds is None:
            seconds = (now - aware(task.leased_at)).total_seconds()
        row = {
            "assignment_id": task.id,
            "labeler_id": labeler_id,
            "prompt_id": task.prompt_id,
            "round_id": task.round_id,
            **verdict,
            "guideline_version_id": guideline_version_id,
            "seconds_spent": float(seconds),
            "idempotency_key": key,
            "created_at": now,
        }
        try:
            judgement_id = conn.execute(_INSERT_JUDGEMENT, row).scalar_one()
        except IntegrityError:  # the key is unique: it names another judgement
            raise TaskRefused(409, _KEY_REUSED) from None
        status = "skipped" if kind == "skip" else "submitted"
        conn.execute(_FINISH, {"assignment_id": task.id, "new_status": status, "done_at": now})
        if kind == "skip":
            self.board.add((task.round_id, task.prompt_id), -1)
        return _as_json(judgement_id, row), False

    def _verdict(self, task: Any, kind: str, submission: Submission) -> dict[str, Any]:
        """The judgement's stored fields (kind, the answer columns, unusable, comment, skip_reason), validated."""
        ids = [int(c) for c in task.display_order]
        verdict: dict[str, Any] = {"kind": "skip" if kind == "skip" else task.task_type}
        verdict.update({column: None for column in ANSWER_COLUMNS})
        verdict.update(unusable={}, comment=None, skip_reason=None)
        if kind == "skip":
            reason = (submission.comment or "").strip()
            if not reason:
                raise TaskRefused(422, "say why you skip this task (reason)")
            if len(reason) > MAX_REASON_CHARS:
                raise TaskRefused(422, f"the skip reason is longer than {MAX_REASON_CHARS} characters")
            verdict["skip_reason"] = reason
            return verdict
        task_type = TASK_TYPES[task.task_type]
        if kind != task_type.answer_field:
            raise TaskRefused(
                422, f"task {task.id} is a {task.task_type} task; submit {task_type.answer_field}, not {kind}"
            )
        verdict[task_type.column] = task_type.check(submission.answer, ids, self.rules.allow_ties)
        verdict["unusable"] = check_unusable(submission.unusable, ids)
        verdict["comment"] = (submission.comment or "").strip() or None
        return verdict

    def _previous(self, conn: Connection, task: Any, labeler_id: int, key: str | None) -> Any:
        """The stored judgement a resubmission repeats: the labeler's judgement under ``key``, or without a
        key the judgement of an already finished task; None for a first submission."""
        if key is not None:
            previous = conn.execute(_REPLAY, {"key": key, "labeler_id": labeler_id}).first()
            if previous is not None and previous.assignment_id != task.id:
                raise TaskRefused(409, _KEY_REUSED)
            return previous
        if task.status not in ("submitted", "skipped"):
            return None
        return conn.execute(_LATEST, {"assignment_id": task.id}).first()

    def _check_open(self, conn: Connection, task: Any, now: datetime) -> None:
        """Refuse a task that is already done, or whose lease expired and whose slot went to someone else."""
        assignment_id = task.id
        if task.status in ("submitted", "skipped"):
            raise TaskRefused(409, f"task {assignment_id} was already {task.status}; fetch the next task")
        if aware(task.lease_expires_at) <= now:
            # Late work is still welcome while nobody else has taken the freed slot.
            rows = conn.execute(_SLOT_ROWS, {"prompt_id": task.prompt_id, "round_id": task.round_id}).all()
            others = [
                r
                for r in rows
                if r.id != task.id
                and (r.status == "submitted" or (r.status == "leased" and aware(r.lease_expires_at) > now))
            ]
            if len(others) >= self.rules.overlap:
                message = f"your lease on task {assignment_id} expired and the task went to another labeler"
                raise TaskRefused(409, f"{message}; fetch the next task")


def _as_json(judgement_id: int, row: dict[str, Any]) -> dict[str, Any]:
    fields = ("assignment_id", "kind", *ANSWER_COLUMNS, "unusable", "comment", "skip_reason", "seconds_spent")
    return {
        "judgement_id": judgement_id,
        **{name: row[name] for name in fields},
        "idempotency_key": row["idempotency_key"],
        "guideline_version_id": row["guideline_version_id"],
        "created_at": aware(row["created_at"]).isoformat(),
    }


def judgement_json(judgement: Any) -> dict[str, Any]:
    """A stored judgement (ORM object or a row of the judgements table) as the API returns it to its labeler."""
    return _as_json(judgement.id, {name: getattr(judgement, name) for name in Judgement.__table__.columns.keys()})
