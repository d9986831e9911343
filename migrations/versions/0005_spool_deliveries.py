"""Spool deliveries: the id of every record a host spooled while the ledger was away.

A host that loses PostgreSQL keeps what it records in a local SQLite spool
(``journalban.ledger.spool``), each record with a UUID. Delivering a record inserts
its id here in the same transaction as the record's rows, so a delivery cut off
after the commit but before the spool forgot the record is skipped the next time,
not doubled.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26
"""
import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "spool_deliveries",
        sa.Column("id", sa.String(36), primary_key=True),  # the spooled record's UUID
        sa.Column("node", sa.String(64), nullable=False),  # the host that spooled it
        sa.Column("delivered_at", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_spool_deliveries_node_delivered", "spool_deliveries", ["node", "delivered_at"])


def downgrade() -> None:
    op.drop_index("ix_spool_deliveries_node_delivered", "spool_deliveries")
    op.drop_table("spool_deliveries")
