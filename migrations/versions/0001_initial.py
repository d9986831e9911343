"""The first ledger: failures, bans and source positions.

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


def upgrade() -> None:
    op.create_table(
        "bans",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("jail", sa.String(64), nullable=False),
        sa.Column("address", sa.String(64), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("ended_at", sa.DateTime(), nullable=True),
        sa.Column("end_reason", sa.String(16), nullable=True),
    )
    op.create_index("ix_bans_jail_address", "bans", ["jail", "address"])
    op.create_index("ux_bans_active", "bans", ["jail", "address"], unique=True,
                    sqlite_where=sa.text("ended_at IS NULL"),
                    postgresql_where=sa.text("ended_at IS NULL"))
    op.create_table(
        "failures",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("occurred_at", sa.DateTime(), nullable=False),
        sa.Column("recorded_at", sa.DateTime(), nullable=False),
        sa.Column("jail", sa.String(64), nullable=False),
        sa.Column("address", sa.String(64), nullable=False),
        sa.Column("rule", sa.String(128), nullable=False),
        sa.Column("text", sa.String(1024), nullable=False),
        sa.Column("source", sa.String(512), nullable=False),
        sa.Column("ban_id", sa.Integer(), sa.ForeignKey("bans.id"), nullable=True),
    )
    op.create_index("ix_failures_jail_address_occurred", "failures",
                    ["jail", "address", "occurred_at"])
    op.create_table(
        "source_positions",
        sa.Column("source", sa.String(512), primary_key=True),
        sa.Column("inode", sa.BigInteger(), nullable=False),
        sa.Column("offset", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("source_positions")
    op.drop_table("failures")
    op.drop_table("bans")
