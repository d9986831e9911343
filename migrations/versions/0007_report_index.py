"""An index for ``journalban report`` on SQLite: failures by jail, hour, rule and host.

SQLite has no hash aggregation: grouping a million failures by hour sorted them all
(about 1.3 s of the report's time). This index holds the hour as the report spells it
(``substr(occurred_at, 1, 13)``, the stored 'YYYY-MM-DD HH'), so the report reads the
groups in index order without a sort and without touching the table. It costs every
failure insert one more index entry. PostgreSQL aggregates by hashing and gets none.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-26
"""
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

NAME = "ix_failures_report"


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        # the expression must read exactly as journalban.report.collect writes it
        op.execute(f"CREATE INDEX {NAME} ON failures (jail, substr(occurred_at, 1, 13), rule, node, occurred_at)")


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute(f"DROP INDEX {NAME}")
