"""Heals of firewall drift; journal cursors beside file positions.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""
import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "heals",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("healed_at", sa.DateTime(), nullable=False),
        sa.Column("backend", sa.String(32), nullable=False),
        sa.Column("restored", sa.Integer(), nullable=False),
        sa.Column("removed", sa.Integer(), nullable=False),
        sa.Column("layout_repaired", sa.Boolean(), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
    )
    with op.batch_alter_table("source_positions") as table:
        table.add_column(sa.Column("cursor", sa.Text(), nullable=True))
        table.alter_column("inode", existing_type=sa.BigInteger(), nullable=True)
        table.alter_column("offset", existing_type=sa.BigInteger(), nullable=True)


def downgrade() -> None:
    with op.batch_alter_table("source_positions") as table:
        table.drop_column("cursor")
    op.drop_table("heals")
