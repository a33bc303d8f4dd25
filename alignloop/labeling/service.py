"""What the labeling app does, independent of HTTP: the API routes and the pages both call this.

One ``LabelingService`` per app process holds the project's settings, the database
engines and the session signer. Each method is one short transaction.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import ColumnElement, Connection, Row, bindparam, case, func, select, update

from alignloop.labeling import accounts
from alignloop.labeling.assignment import Assigner, TaskRules, judgement_json, utcnow
from alignloop.labeling.auth import LoginThrottle, Sessions, User, load_secret
from alignloop.labeling.board import task_slots
from alignloop.labeling.db import AppDatabase
from alignloop.labeling.guidelines import Guidelines, add_guideline_version, current_guidelines, guideline_history
from alignloop.labeling.validation import Submission, TaskRefused
from alignloop.project import ProjectHandle, open_project
from alignloop.store import (
    Assignment,
    GuidelineVersion,
    Judgement,
    Labeler,
    Round,
    Store,
)

_NEWEST_VERSION = (
    select(func.max(GuidelineVersion.version))
    .where(GuidelineVersion.project_id == bindparam("project_id"))
    .scalar_subquery()
)
# One round trip: the labeler's acknowledged version next to the project's newest (id, version).
_GUIDELINE_STATUS = (
    select(Labeler.read_guidelines_version, GuidelineVersion.id, GuidelineVersion.version)
    .select_from(Labeler)
    .outerjoin(
        GuidelineVersion,
        (GuidelineVersion.project_id == bindparam("project_id")) & (GuidelineVersion.version == _NEWEST_VERSION),
    )
    .where(Labeler.id == bindparam("labeler_id"))
)


def _slot_counts(now: datetime) -> tuple[ColumnElement[Any], ColumnElement[Any], ColumnElement[Any]]:
    """Columns that count a group of assignments: submitted, skipped, and in progress (leased, the lease not
    yet expired at ``now``: an expired lease is back in the pool)."""
    return (
        func.sum(case((Assignment.status == "submitted", 1), else_=0)),
        func.sum(case((Assignment.status == "skipped", 1), else_=0)),
        func.sum(case(((Assignment.status == "leased") & (Assignment.lease_expires_at > now), 1), else_=0)),
    )


@dataclass
class LabelerProgress(accounts.Account):
    """An account with its work in the project (the admin dashboard and ``/api/admin/progress``)."""

    done: int
    skipped: int
    in_progress: int
    median_seconds: float | None


class LabelingService:
    """The labeling app's operations on one project."""

    def __init__(self, project_dir: str | Path) -> None:
        with open_project(project_dir) as handle:  # validates alignloop.yaml and migrates the store
            self.config = handle.config
            self.project_id = handle.project_id
        self.project_dir = Path(project_dir)
        labeling = self.config.labeling
        self.rules = TaskRules(
            task_type=labeling.task_type,
            overlap=labeling.overlap,
            allow_ties=labeling.allow_ties,
            display_seed=labeling.display_seed,
            lease_minutes=labeling.lease_minutes,
            assignment=labeling.assignment,
        )
        self.db = AppDatabase(self.config.database, self.project_dir, self.project_id)
        self.assigner = Assigner(self.project_id, self.rules)
        self.store = Store(self.db.write_engine)  # account changes
        self.read_store = Store(self.db.read_engine)  # sign-in checks: argon2 never runs under the write lock
        self.sessions = Sessions(load_secret(self.project_dir))
        self.throttle = LoginThrottle()
        with self.db.write() as s:
            current_guidelines(
                s, self.project_id, labeling.criterion, labeling.task_type
            )  # version 1 exists from the start

    def open_handle(self) -> ProjectHandle:
        """A full project handle (for the consensus and pairs stages); use it as ``with svc.open_handle() as h:``."""
        return open_project(self.project_dir)

    def close(self) -> None:
        self.db.close()

    # ------------------------------------------------------------------ guidelines

    def guidelines(self) -> Guidelines:
        with self.db.read() as s:
            newest = s.scalar(
                select(func.max(GuidelineVersion.version)).where(GuidelineVersion.project_id == self.project_id)
            )
        if newest is None:
            with self.db.write() as s:
                return current_guidelines(s, self.project_id, self.config.labeling.criterion, self.rules.task_type)
        with self.db.read() as s:
            return current_guidelines(s, self.project_id, self.config.labeling.criterion, self.rules.task_type)

    def guideline_history(self) -> list[Guidelines]:
        with self.db.read() as s:
            return guideline_history(s, self.project_id)

    def acknowledge_guidelines(self, user: User, version: int) -> None:
        """Record that ``user`` read guideline ``version`` (must be the current one)."""
        current = self.guidelines().version
        if version != current:
            raise TaskRefused(
                409, f"guidelines version {version} is not the current one ({current}); read version {current}"
            )
        with self.db.write() as s:
            s.execute(update(Labeler).where(Labeler.id == user.id).values(read_guidelines_version=version))
        user.read_guidelines_version = version
        self.sessions.forget(user.id)

    def edit_guidelines(self, user: User, sections: dict[str, str]) -> Guidelines:
        with self.db.write() as s:
            return add_guideline_version(s, self.project_id, sections, user.id)

    def _require_guidelines_read(self, conn: Connection, user: User) -> Row | None:
        """The current guideline version (id, version); refuses a labeler who has not read it.

        The labeler's acknowledged version is read in the same transaction (not from the
        session cache), so an acknowledgement made through another worker counts at once.
        """
        row = conn.execute(_GUIDELINE_STATUS, {"project_id": self.project_id, "labeler_id": user.id}).first()
        if row is None or row.version is None:
            return None
        if row.read_guidelines_version != row.version:
            read = row.read_guidelines_version
            action = "read the guidelines" if read is None else f"the guidelines changed; read version {row.version}"
            raise TaskRefused(409, f"{action} before labeling: open /guidelines, or POST /api/guidelines/acknowledge")
        return row

    # ------------------------------------------------------------------ tasks

    def next_task(self, user: User) -> dict[str, Any] | None:
        """The labeler's task (their current lease, or a new claim), or None when their queue is empty."""
        with self.db.write_conn() as conn:
            guideline = self._require_guidelines_read(conn, user)
            lease = self.assigner.claim(conn, user.id)
            if lease is None:
                return None
            return self.assigner.payload(conn, lease, guideline.version if guideline else 0)

    def submit(
        self, user: User, assignment_id: int, kind: str, submission: Submission, *, take_next: bool = False
    ) -> tuple[dict[str, Any], bool]:
        """Store an answer (``kind`` is its task type's answer field) or a skip; committed before this returns.
        Returns (judgement, replayed).

        ``take_next`` also claims the labeler's next task in the same transaction and returns it
        under ``"next_task"`` (None when the queue is empty): one round trip per task instead of two.
        """
        with self.db.write_conn() as conn:
            guideline = self._require_guidelines_read(conn, user)
            judgement, replayed = self.assigner.submit(
                conn,
                assignment_id=assignment_id,
                labeler_id=user.id,
                kind=kind,
                submission=submission,
                guideline_version_id=guideline.id if guideline else None,
            )
            if take_next:
                lease = self.assigner.claim(conn, user.id)
                version = guideline.version if guideline else 0
                judgement["next_task"] = None if lease is None else self.assigner.payload(conn, lease, version)
            return judgement, replayed

    def my_history(self, user: User, limit: int = 50) -> list[dict[str, Any]]:
        """The labeler's own most recent judgements (never anyone else's)."""
        with self.db.read() as s:
            rows = s.scalars(
                select(Judgement).where(Judgement.labeler_id == user.id).order_by(Judgement.id.desc()).limit(limit)
            )
            return [judgement_json(row) for row in rows]

    # ------------------------------------------------------------------ admin

    def progress(self) -> dict[str, Any]:
        """Overall and per-round progress (prompts, slots done, skipped, in progress) and per-labeler work."""
        now = utcnow()
        with self.db.read() as s:
            slots = task_slots(self.project_id).subquery()
            prompts_per_round: dict[int, int] = dict(
                s.execute(select(slots.c.round_id, func.count()).group_by(slots.c.round_id)).all()
            )
            counts = s.execute(
                select(Assignment.round_id, *_slot_counts(now))
                .join(Round, Round.id == Assignment.round_id)
                .where(Round.project_id == self.project_id)
                .group_by(Assignment.round_id)
            ).all()
            per_round_counts = {row[0]: (int(row[1] or 0), int(row[2] or 0), int(row[3] or 0)) for row in counts}
            complete = self._complete_prompts(s)
            rounds = s.execute(
                select(Round.id, Round.index, Round.kind)
                .where(Round.project_id == self.project_id)
                .order_by(Round.index)
            ).all()
            labelers = self._labeler_progress(s, now)
        per_round: list[dict[str, Any]] = []
        for round_id, index, kind in rounds:
            if round_id not in prompts_per_round:
                continue
            done, skipped, leased = per_round_counts.get(round_id, (0, 0, 0))
            n_prompts = prompts_per_round[round_id]
            per_round.append(
                {
                    "round": index,
                    "kind": kind,
                    "prompts": n_prompts,
                    "prompts_complete": complete.get(round_id, 0),
                    "judgements_needed": n_prompts * self.rules.overlap,
                    "done": done,
                    "skipped": skipped,
                    "in_progress": leased,
                }
            )
        total_needed = sum(r["judgements_needed"] for r in per_round)
        total_done = sum(r["done"] for r in per_round)
        return {
            "project": self.config.name,
            "overlap": self.rules.overlap,
            "task_type": self.rules.task_type,
            "judgements_needed": total_needed,
            "done": total_done,
            "skipped": sum(r["skipped"] for r in per_round),
            "in_progress": sum(r["in_progress"] for r in per_round),
            "percent_done": round(100.0 * total_done / total_needed, 1) if total_needed else 0.0,
            "rounds": per_round,
            "labelers": [vars(p) for p in labelers],
        }

    def _complete_prompts(self, s: Connection) -> dict[int, int]:
        """Prompts per round with ``overlap`` submitted judgements."""
        done = (
            select(Assignment.round_id.label("round_id"))
            .where(Assignment.status == "submitted")
            .group_by(Assignment.round_id, Assignment.prompt_id)
            .having(func.count() >= self.rules.overlap)
            .subquery()
        )
        return dict(s.execute(select(done.c.round_id, func.count()).group_by(done.c.round_id)).all())

    def _labeler_progress(self, s: Connection, now: datetime) -> list[LabelerProgress]:
        in_project = Round.project_id == self.project_id
        status_counts: dict[int, dict[str, int]] = {}
        for labeler_id, submitted, skipped, leased in s.execute(
            select(Assignment.labeler_id, *_slot_counts(now))
            .join(Round, Round.id == Assignment.round_id)
            .where(in_project)
            .group_by(Assignment.labeler_id)
        ):
            status_counts[labeler_id] = {"submitted": int(submitted), "skipped": int(skipped), "leased": int(leased)}
        seconds: dict[int, list[float]] = {}
        for labeler_id, spent in s.execute(
            select(Judgement.labeler_id, Judgement.seconds_spent)
            .join(Round, Round.id == Judgement.round_id)
            .where(in_project, Judgement.kind != "skip", Judgement.seconds_spent.is_not(None))
        ):
            seconds.setdefault(labeler_id, []).append(spent)
        result = []
        for row in s.scalars(select(Labeler).order_by(Labeler.id)):
            bucket = status_counts.get(row.id, {"submitted": 0, "skipped": 0, "leased": 0})
            spent = seconds.get(row.id)
            result.append(
                LabelerProgress.from_row(
                    row,
                    now,
                    done=bucket["submitted"],
                    skipped=bucket["skipped"],
                    in_progress=bucket["leased"],
                    median_seconds=round(statistics.median(spent), 1) if spent else None,
                )
            )
        return result

    def export_judgements(self) -> Iterator[dict[str, Any]]:
        """Every judgement, with texts, in the one shape of ``alignloop export-judgements``."""
        from alignloop.labeling.exports import judgement_rows

        with self.open_handle() as handle:
            yield from judgement_rows(handle)

    def invite(self, name: str, *, admin: bool = False) -> str:
        return accounts.add_labeler(self.store, name, admin=admin, invite_days=self.config.labeling.invite_days)

    def reinvite(self, name: str) -> str:
        """A fresh invite token for ``name``; its password and sessions end at once."""
        token = accounts.reinvite_labeler(self.store, name, invite_days=self.config.labeling.invite_days)
        self.sessions.forget_all()
        return token

    def deactivate(self, name: str, by: User | None = None) -> None:
        """Lock ``name`` out. An admin acting through the app (``by``) cannot lock out itself or the last admin."""
        if by is not None:
            accounts.check_can_deactivate(self.store, name, by.name)
        accounts.deactivate_labeler(self.store, name)
        self.sessions.forget_all()

    def reactivate(self, name: str) -> None:
        accounts.reactivate_labeler(self.store, name)
        self.sessions.forget_all()
