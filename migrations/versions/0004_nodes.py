"""Hosts: the node behind every failure, ban and source position; positions per node.

Rows already there belong to the host that runs the upgrade: journalban hands its
``[node] name`` over (``config.attributes["node"]``), plain ``alembic`` uses the
host name. That keeps a single host's source positions across the upgrade.
``source_positions`` is rebuilt rather than altered, the same way on every dialect
(SQLite cannot change a primary key in place).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26
"""
import socket

import sqlalchemy as sa
from alembic import context, op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_COLUMNS = ("source", "inode", "offset", "cursor", "updated_at")


def _node() -> str:
    return str(context.config.attributes.get("node") or socket.gethostname())[:64]


def _positions(name: str, *key: str, with_node: bool) -> sa.Table:
    columns = [sa.Column("node", sa.String(64), nullable=False)] if with_node else []
    return op.create_table(
        name, *columns,
        sa.Column("source", sa.String(512), nullable=False),
        sa.Column("inode", sa.BigInteger(), nullable=True),
        sa.Column("offset", sa.BigInteger(), nullable=True),
        sa.Column("cursor", sa.Text(), nullable=True),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint(*key, name="pk_source_positions" if with_node else None),
    )


def upgrade() -> None:
    node = _node()
    for table in ("failures", "bans"):
        op.add_column(table, sa.Column("node", sa.String(64), nullable=False, server_default=node))
    old = sa.table("source_positions", *map(sa.column, _COLUMNS))
    new = _positions("source_positions_0004", "node", "source", with_node=True)
    op.execute(new.insert().from_select(["node", *_COLUMNS], sa.select(sa.literal(node), *old.c)))
    op.drop_table("source_positions")
    op.rename_table("source_positions_0004", "source_positions")


def downgrade() -> None:
    """Back to one position per source: only the upgrading host's positions are kept."""
    node = _node()
    old = sa.table("source_positions", sa.column("node"), *map(sa.column, _COLUMNS))
    new = _positions("source_positions_0003", "source", with_node=False)
    op.execute(new.insert().from_select(list(_COLUMNS), sa.select(*[old.c[c] for c in _COLUMNS])
                                        .where(old.c.node == node)))
    op.drop_table("source_positions")
    op.rename_table("source_positions_0003", "source_positions")
    for table in ("bans", "failures"):
        # SQLite (3.35+) drops a column in place: no rebuild, so 0003's views and the
        # failures -> bans foreign key stay as they are (a rebuild would break on both).
        op.drop_column(table, "node")
