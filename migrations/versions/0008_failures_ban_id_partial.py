"""On SQLite, ``ix_failures_ban_id`` holds only the failures a ban rests on.

Most failures never open a ban, yet each went into this index with a NULL, and linking
one to its ban later moved its entry out of the NULL run at a random place: a flood of
failures paid for both (about a tenth of SQLite's time in the daemon's 1M-line sshd
benchmark). Every query on ``ban_id = ?`` or ``IN`` still uses the index (either implies
NOT NULL); those on ``ban_id IS NULL`` (the detector's windows at start) read the
failures in order instead, as they visit most of them anyway. PostgreSQL keeps the full
index: a fleet's hosts ask its shared ledger for ``ban_id IS NULL`` as they catch up
(``fleet_failures``), and this was measured on SQLite only.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-26
"""
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

NAME = "ix_failures_ban_id"


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute(f"DROP INDEX {NAME}")
        op.execute(f"CREATE INDEX {NAME} ON failures (ban_id) WHERE ban_id IS NOT NULL")


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute(f"DROP INDEX {NAME}")
        op.execute(f"CREATE INDEX {NAME} ON failures (ban_id)")
