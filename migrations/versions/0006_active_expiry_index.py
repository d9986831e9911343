"""An index on the expiry of bans in force: every reconcile asks which bans are due
(``expire_bans``) and when the next one is (``enforced_bans``); without it both walk
every active ban, a few hundred milliseconds each at 100,000 bans.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26
"""
import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_bans_active_expiry", "bans", ["expires_at"],
                    sqlite_where=sa.text("ended_at IS NULL"), postgresql_where=sa.text("ended_at IS NULL"))


def downgrade() -> None:
    op.drop_index("ix_bans_active_expiry", table_name="bans")
