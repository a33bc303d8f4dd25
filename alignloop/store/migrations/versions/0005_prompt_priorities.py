"""Active labeling: ``prompt_priorities`` holds a priority per (round, prompt), written by
``alignloop prioritize`` and read by the labeling app under ``labeling.assignment: uncertainty``.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "prompt_priorities",
        sa.Column("round_id", sa.Integer, sa.ForeignKey("rounds.id"), primary_key=True),
        sa.Column("prompt_id", sa.Integer, sa.ForeignKey("prompts.id"), primary_key=True),
        sa.Column("priority", sa.Float, nullable=False),
        sa.Column("reward_model", sa.String(4000), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("prompt_priorities")
