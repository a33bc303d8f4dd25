"""Idempotency keys belong to a labeler: unique per (labeler_id, idempotency_key), and optional.

One labeler's key can no longer collide with another's, and a submission without a key stores
none (its retry is recognised by the task itself). SQLite cannot drop the old inline UNIQUE,
so there the table is rebuilt (with its indexes and append-only triggers).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)
UNIQUE = "uq_judgements_labeler_key"
INDEXED = ("assignment_id", "labeler_id", "prompt_id", "round_id")


def _columns(key_nullable: bool) -> list[sa.Column]:
    return [
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("assignment_id", sa.Integer, sa.ForeignKey("assignments.id"), nullable=False),
        sa.Column("labeler_id", sa.Integer, sa.ForeignKey("labelers.id"), nullable=False),
        sa.Column("prompt_id", sa.Integer, sa.ForeignKey("prompts.id"), nullable=False),
        sa.Column("round_id", sa.Integer, sa.ForeignKey("rounds.id"), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("ranking", sa.JSON),
        sa.Column("thumbs", sa.JSON),
        sa.Column("unusable", sa.JSON, nullable=False),
        sa.Column("comment", sa.Text),
        sa.Column("skip_reason", sa.Text),
        sa.Column("guideline_version_id", sa.Integer, sa.ForeignKey("guideline_versions.id")),
        sa.Column("seconds_spent", sa.Float),
        sa.Column("idempotency_key", sa.String(200), nullable=key_nullable, unique=not key_nullable),
        sa.Column("supersedes_id", sa.Integer, sa.ForeignKey("judgements.id")),
        sa.Column("created_at", TZ, nullable=False),
    ]


def _rebuild_sqlite(per_labeler: bool) -> None:
    """Move ``judgements`` aside, create it in the new shape, copy the rows in id order (a correction
    names an earlier row, so its foreign key holds at once) and drop the old table with its indexes
    and triggers; then recreate those."""
    op.rename_table("judgements", "judgements_old")
    extra = [sa.UniqueConstraint("labeler_id", "idempotency_key", name=UNIQUE)] if per_labeler else []
    op.create_table("judgements", *_columns(key_nullable=per_labeler), *extra)
    names = [c.name for c in _columns(True)]
    # Going back, a keyless judgement gets the key the old code gave it.
    key = "idempotency_key" if per_labeler else "COALESCE(idempotency_key, 'assignment-' || assignment_id)"
    selected = ", ".join(key if name == "idempotency_key" else name for name in names)
    op.execute(f"INSERT INTO judgements ({', '.join(names)}) SELECT {selected} FROM judgements_old ORDER BY id")
    op.drop_table("judgements_old")
    for column in INDEXED:
        op.create_index(f"ix_judgements_{column}", "judgements", [column])
    for action in ("UPDATE", "DELETE"):
        op.execute(
            f"CREATE TRIGGER judgements_no_{action.lower()} BEFORE {action} ON judgements "
            "BEGIN SELECT RAISE(ABORT, 'judgements are append-only'); END"
        )


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        _rebuild_sqlite(per_labeler=True)
        return
    op.drop_constraint("judgements_idempotency_key_key", "judgements", type_="unique")
    op.alter_column("judgements", "idempotency_key", existing_type=sa.String(200), nullable=True)
    op.create_unique_constraint(UNIQUE, "judgements", ["labeler_id", "idempotency_key"])


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        _rebuild_sqlite(per_labeler=False)
        return
    op.drop_constraint(UNIQUE, "judgements", type_="unique")
    op.alter_column("judgements", "idempotency_key", existing_type=sa.String(200), nullable=False)
    op.create_unique_constraint("judgements_idempotency_key_key", "judgements", ["idempotency_key"])
