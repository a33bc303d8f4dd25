"""The first schema: projects, rounds, prompts, completions, labelers, guidelines, assignments, judgements.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "projects",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(200), nullable=False, unique=True),
        sa.Column("settings", sa.JSON, nullable=False),
        sa.Column("created_at", TZ, nullable=False),
    )
    op.create_table(
        "rounds",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("project_id", sa.Integer, sa.ForeignKey("projects.id"), nullable=False),
        sa.Column("index", sa.Integer, nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("policy", sa.String(1000), nullable=False),
        sa.Column("reward_model", sa.String(1000)),
        sa.Column("dataset", sa.String(1000)),
        sa.Column("metrics", sa.JSON, nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.UniqueConstraint("project_id", "index"),
    )
    op.create_table(
        "prompts",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("project_id", sa.Integer, sa.ForeignKey("projects.id"), nullable=False, index=True),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("messages", sa.JSON),
        sa.Column("text_hash", sa.String(64), nullable=False),
        sa.Column("split", sa.String(10), nullable=False),
        sa.Column("source", sa.String(1000)),
        sa.Column("created_at", TZ, nullable=False),
        sa.UniqueConstraint("project_id", "text_hash"),
    )
    op.create_table(
        "completions",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("prompt_id", sa.Integer, sa.ForeignKey("prompts.id"), nullable=False),
        sa.Column("round_id", sa.Integer, sa.ForeignKey("rounds.id"), nullable=False),
        sa.Column("sample_index", sa.Integer, nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("model", sa.String(1000), nullable=False),
        sa.Column("seed", sa.Integer, nullable=False),
        sa.Column("params", sa.JSON, nullable=False),
        sa.Column("prompt_tokens", sa.Integer, nullable=False),
        sa.Column("completion_tokens", sa.Integer, nullable=False),
        sa.Column("finish_reason", sa.String(20), nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.UniqueConstraint("prompt_id", "round_id", "sample_index"),
    )
    op.create_index("ix_completions_round_prompt", "completions", ["round_id", "prompt_id"])
    op.create_table(
        "labelers",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(200), nullable=False, unique=True),
        sa.Column("role", sa.String(20), nullable=False),
        sa.Column("password_hash", sa.String(500)),
        sa.Column("invite_token_hash", sa.String(128)),
        sa.Column("active", sa.Boolean, nullable=False),
        sa.Column("read_guidelines_version", sa.Integer),
        sa.Column("created_at", TZ, nullable=False),
    )
    op.create_table(
        "guideline_versions",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("project_id", sa.Integer, sa.ForeignKey("projects.id"), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("task", sa.Text, nullable=False),
        sa.Column("instructions", sa.Text, nullable=False),
        sa.Column("edge_cases", sa.Text, nullable=False),
        sa.Column("unusable", sa.Text, nullable=False),
        sa.Column("author_id", sa.Integer, sa.ForeignKey("labelers.id")),
        sa.Column("created_at", TZ, nullable=False),
        sa.UniqueConstraint("project_id", "version"),
    )
    op.create_table(
        "assignments",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("prompt_id", sa.Integer, sa.ForeignKey("prompts.id"), nullable=False),
        sa.Column("round_id", sa.Integer, sa.ForeignKey("rounds.id"), nullable=False),
        sa.Column("labeler_id", sa.Integer, sa.ForeignKey("labelers.id"), nullable=False, index=True),
        sa.Column("task_type", sa.String(20), nullable=False),
        sa.Column("display_order", sa.JSON, nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("leased_at", TZ, nullable=False),
        sa.Column("lease_expires_at", TZ, nullable=False),
        sa.Column("completed_at", TZ),
        sa.UniqueConstraint("prompt_id", "round_id", "labeler_id"),
    )
    op.create_index("ix_assignments_round_status", "assignments", ["round_id", "status"])
    op.create_table(
        "judgements",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("assignment_id", sa.Integer, sa.ForeignKey("assignments.id"), nullable=False, index=True),
        sa.Column("labeler_id", sa.Integer, sa.ForeignKey("labelers.id"), nullable=False, index=True),
        sa.Column("prompt_id", sa.Integer, sa.ForeignKey("prompts.id"), nullable=False, index=True),
        sa.Column("round_id", sa.Integer, sa.ForeignKey("rounds.id"), nullable=False, index=True),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("ranking", sa.JSON),
        sa.Column("thumbs", sa.JSON),
        sa.Column("unusable", sa.JSON, nullable=False),
        sa.Column("comment", sa.Text),
        sa.Column("skip_reason", sa.Text),
        sa.Column("guideline_version_id", sa.Integer, sa.ForeignKey("guideline_versions.id")),
        sa.Column("seconds_spent", sa.Float),
        sa.Column("idempotency_key", sa.String(200), nullable=False, unique=True),
        sa.Column("supersedes_id", sa.Integer, sa.ForeignKey("judgements.id")),
        sa.Column("created_at", TZ, nullable=False),
    )
    _forbid_judgement_changes()


def _forbid_judgement_changes() -> None:
    """Judgements are append-only: the database itself refuses UPDATE and DELETE."""
    dialect = op.get_bind().dialect.name
    if dialect == "sqlite":
        for action in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER judgements_no_{action.lower()} BEFORE {action} ON judgements "
                "BEGIN SELECT RAISE(ABORT, 'judgements are append-only'); END"
            )
    elif dialect == "postgresql":
        op.execute(
            "CREATE FUNCTION judgements_append_only() RETURNS trigger AS $$ "
            "BEGIN RAISE EXCEPTION 'judgements are append-only'; END; $$ LANGUAGE plpgsql"
        )
        op.execute(
            "CREATE TRIGGER judgements_append_only BEFORE UPDATE OR DELETE ON judgements "
            "FOR EACH ROW EXECUTE FUNCTION judgements_append_only()"
        )


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS judgements_append_only ON judgements")
        op.execute("DROP FUNCTION IF EXISTS judgements_append_only()")
    for table in (
        "judgements",
        "assignments",
        "guideline_versions",
        "labelers",
        "completions",
        "prompts",
        "rounds",
        "projects",
    ):
        op.drop_table(table)
