"""Server-side sessions of the labeling app, so that signing out, deactivation and new passwords end them.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "labeler_sessions",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("labeler_id", sa.Integer, sa.ForeignKey("labelers.id"), nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("expires_at", TZ, nullable=False),
    )
    op.create_index("ix_labeler_sessions_labeler_id", "labeler_sessions", ["labeler_id"])


def downgrade() -> None:
    op.drop_index("ix_labeler_sessions_labeler_id", table_name="labeler_sessions")
    op.drop_table("labeler_sessions")
