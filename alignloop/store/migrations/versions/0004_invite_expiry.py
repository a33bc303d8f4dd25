"""Invites expire, and a used invite link is recognised: labelers gain ``invite_expires_at`` and
``used_invite_token_hash`` (the sha256 of the invite last redeemed, so its link can say "already used,
sign in" instead of asking for a password again). Invites pending before this migration never expire.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-05
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("labelers", sa.Column("invite_expires_at", sa.DateTime(timezone=True)))
    op.add_column("labelers", sa.Column("used_invite_token_hash", sa.String(128)))


def downgrade() -> None:
    op.drop_column("labelers", "used_invite_token_hash")
    op.drop_column("labelers", "invite_expires_at")
