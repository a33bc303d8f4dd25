"""The feedback store's tables (SQLAlchemy 2 declarative models).

Judgements are append-only: a correction is a new row that names the row it
supersedes; the database refuses UPDATE and DELETE on ``judgements`` (triggers
created by the first migration). Completions record everything needed to
reproduce them (model, round, sampling parameters, seed).
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    ColumnElement,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    func,
    select,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship

# What each kind of round is for. ``train``: completions the labelers judge, trained on; ``eval``: a blind
# human evaluation of two models (test data, never trained on); ``serve``: answers a served model gave its
# users (``alignloop serve-model``), with the users' feedback, trained on with the labelers' judgements.
TRAINING_ROUND_KINDS = ("train", "serve")  # rounds whose judgements become training pairs
LABELING_ROUND_KINDS = ("train", "eval")  # rounds whose prompts the labeling app hands out


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


class Project(Base):
    __tablename__ = "projects"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    settings: Mapped[dict[str, Any]] = mapped_column(
        JSON, default=dict
    )  # labeling settings mirrored from alignloop.yaml
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    rounds: Mapped[list[Round]] = relationship(back_populates="project", order_by="Round.index")


class Round(Base):
    """One turn of the loop: completions of one policy, their labels, and what was trained on them."""

    __tablename__ = "rounds"
    __table_args__ = (UniqueConstraint("project_id", "index"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"))
    index: Mapped[int] = mapped_column(Integer)  # 0, 1, 2, ... per project
    kind: Mapped[str] = mapped_column(String(20), default="train")  # "train" | "eval" | "serve" (see above)
    policy: Mapped[str] = mapped_column(String(1000))  # model reference completions are sampled from
    reward_model: Mapped[str | None] = mapped_column(String(1000))  # run directory trained in this round
    dataset: Mapped[str | None] = mapped_column(String(1000))  # pairs file exported in this round
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)

    project: Mapped[Project] = relationship(back_populates="rounds")

    @classmethod
    def append(
        cls, session: Session, project_id: int, kind: str, policy: str, metrics: dict[str, Any] | None = None
    ) -> Round:
        """Add the project's next round (index one above its newest, 0 for the first) and flush it."""
        newest = session.scalar(select(func.max(cls.index)).where(cls.project_id == project_id))
        new = cls(
            project_id=project_id,
            index=0 if newest is None else newest + 1,
            kind=kind,
            policy=policy,
            metrics=metrics or {},
        )
        session.add(new)
        session.flush()
        return new

    @classmethod
    def newest(cls, session: Session, project_id: int, kind: str, *criteria: ColumnElement[bool]) -> Round | None:
        """The project's newest round of ``kind`` that also meets ``criteria`` (None when there is none)."""
        query = select(cls).where(cls.project_id == project_id, cls.kind == kind, *criteria)
        return session.scalars(query.order_by(cls.index.desc()).limit(1)).first()


class Prompt(Base):
    __tablename__ = "prompts"
    __table_args__ = (UniqueConstraint("project_id", "text_hash"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"), index=True)
    text: Mapped[str] = mapped_column(Text)  # the prompt as plain text (last user turn for chats)
    messages: Mapped[list[Any] | None] = mapped_column(JSON)  # chat form [{"role", "content"}], when given
    text_hash: Mapped[str] = mapped_column(String(64))  # sha256 of the normalised prompt, for de-duplication
    split: Mapped[str] = mapped_column(String(10))  # "train" | "test"
    source: Mapped[str | None] = mapped_column(String(1000))  # file it was imported from
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Completion(Base):
    __tablename__ = "completions"
    __table_args__ = (
        UniqueConstraint("prompt_id", "round_id", "sample_index"),
        Index("ix_completions_round_prompt", "round_id", "prompt_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    prompt_id: Mapped[int] = mapped_column(ForeignKey("prompts.id"))
    round_id: Mapped[int] = mapped_column(ForeignKey("rounds.id"))
    sample_index: Mapped[int] = mapped_column(Integer)  # 0..K-1 within (prompt, round)
    text: Mapped[str] = mapped_column(Text)
    model: Mapped[str] = mapped_column(String(1000))
    seed: Mapped[int] = mapped_column(Integer)
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # temperature, top_p, max_new_tokens
    prompt_tokens: Mapped[int] = mapped_column(Integer)
    completion_tokens: Mapped[int] = mapped_column(Integer)
    finish_reason: Mapped[str] = mapped_column(String(20))  # "stop" (end token) | "length"
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Labeler(Base):
    __tablename__ = "labelers"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    role: Mapped[str] = mapped_column(String(20), default="labeler")  # "labeler" | "admin"
    password_hash: Mapped[str | None] = mapped_column(String(500))  # argon2; null until the invite is used
    invite_token_hash: Mapped[str | None] = mapped_column(String(128))  # sha256 of the one-time invite token
    invite_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))  # null: never expires
    used_invite_token_hash: Mapped[str | None] = mapped_column(String(128))  # sha256 of the invite last redeemed
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    read_guidelines_version: Mapped[int | None] = mapped_column(Integer)  # last guideline version acknowledged
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class LabelerSession(Base):
    """A signed-in browser or script. Only the sha256 of the cookie's token is kept; signing out,
    deactivation and a new password delete the rows, which ends those sessions."""

    __tablename__ = "labeler_sessions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # sha256 hex of the session token
    labeler_id: Mapped[int] = mapped_column(ForeignKey("labelers.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class GuidelineVersion(Base):
    """Labeling instructions; editing creates a new version, never changes an old one."""

    __tablename__ = "guideline_versions"
    __table_args__ = (UniqueConstraint("project_id", "version"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id"))
    version: Mapped[int] = mapped_column(Integer)  # 1, 2, ... per project
    task: Mapped[str] = mapped_column(Text)  # overall task and criterion (Markdown)
    instructions: Mapped[str] = mapped_column(Text)  # detailed instructions (Markdown)
    edge_cases: Mapped[str] = mapped_column(Text)  # edge cases (Markdown)
    unusable: Mapped[str] = mapped_column(Text)  # what to do with an unusable answer (Markdown)
    author_id: Mapped[int | None] = mapped_column(ForeignKey("labelers.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Assignment(Base):
    """One slot of a prompt's overlap, taken by one labeler. At most ``overlap`` live slots per (prompt, round)."""

    __tablename__ = "assignments"
    __table_args__ = (
        UniqueConstraint("prompt_id", "round_id", "labeler_id"),
        Index("ix_assignments_round_status", "round_id", "status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    prompt_id: Mapped[int] = mapped_column(ForeignKey("prompts.id"))
    round_id: Mapped[int] = mapped_column(ForeignKey("rounds.id"))
    labeler_id: Mapped[int] = mapped_column(ForeignKey("labelers.id"), index=True)
    task_type: Mapped[str] = mapped_column(String(20))  # "ranking" | "thumbs" | "pairwise"
    display_order: Mapped[list[Any]] = mapped_column(JSON)  # completion ids in the order shown to this labeler
    # "leased" | "submitted" | "skipped" | "expired"; "served": the answers a served model gave this user
    # (serve rounds), which the user gives feedback on and the labeling app never hands out
    status: Mapped[str] = mapped_column(String(20), default="leased")
    leased_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    lease_expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Judgement(Base):
    """A labeler's verdict on one assignment. Append-only (see module docstring)."""

    __tablename__ = "judgements"
    __table_args__ = (UniqueConstraint("labeler_id", "idempotency_key", name="uq_judgements_labeler_key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    assignment_id: Mapped[int] = mapped_column(ForeignKey("assignments.id"), index=True)
    labeler_id: Mapped[int] = mapped_column(ForeignKey("labelers.id"), index=True)
    prompt_id: Mapped[int] = mapped_column(ForeignKey("prompts.id"), index=True)
    round_id: Mapped[int] = mapped_column(ForeignKey("rounds.id"), index=True)
    kind: Mapped[str] = mapped_column(String(20))  # "ranking" | "thumbs" | "pairwise" | "skip"
    ranking: Mapped[list[Any] | None] = mapped_column(JSON)  # best→worst tiers of completion ids: [[3], [1, 4], [2]]
    thumbs: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # {"<completion id>": 1 | -1}
    unusable: Mapped[dict[str, Any]] = mapped_column(
        JSON, default=dict
    )  # {"<completion id>": "harmful"|"nonsense"|"pii"|...}
    comment: Mapped[str | None] = mapped_column(Text)
    skip_reason: Mapped[str | None] = mapped_column(Text)
    guideline_version_id: Mapped[int | None] = mapped_column(ForeignKey("guideline_versions.id"))
    seconds_spent: Mapped[float | None] = mapped_column(Float)
    idempotency_key: Mapped[str | None] = mapped_column(String(200))  # the labeler's retry key; unique per labeler
    supersedes_id: Mapped[int | None] = mapped_column(ForeignKey("judgements.id"))  # the judgement this one corrects
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class PromptPriority(Base):
    """How much labeling a prompt of a round is worth now, for ``labeling.assignment: uncertainty``.

    Written by ``alignloop prioritize`` (a reward model's uncertainty about the prompt's
    completions, higher first); each run replaces the round's rows. Derived data, not a
    record of anyone's judgement, so unlike judgements it may be overwritten.
    """

    __tablename__ = "prompt_priorities"

    round_id: Mapped[int] = mapped_column(ForeignKey("rounds.id"), primary_key=True)
    prompt_id: Mapped[int] = mapped_column(ForeignKey("prompts.id"), primary_key=True)
    priority: Mapped[float] = mapped_column(Float)  # higher is offered first
    reward_model: Mapped[str] = mapped_column(String(4000))  # the run directory(ies) that scored it, ", "-joined
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
