"""Views for plain SQL: active_bans, ban_history, offenders; day, network and seconds columns.

SQLite and PostgreSQL share no function for a date's text or an address's network,
so those are stored (and backfilled here) and the views are one text on every
dialect. ``docs/ledger.md`` documents them as an interface.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""
import ipaddress

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

VIEWS = {
    "active_bans": """
        SELECT b.id, b.jail, b.address, b.network, b.day, b.started_at, b.expires_at, b.seconds,
               CASE WHEN b.seconds IS NULL THEN 1 ELSE 0 END AS permanent, b.reason
        FROM bans b
        WHERE b.ended_at IS NULL""",
    "ban_history": """
        SELECT b.id, b.jail, b.address, b.network, b.day, b.started_at, b.expires_at, b.ended_at,
               CASE WHEN b.ended_at IS NULL THEN 'active' ELSE b.end_reason END AS outcome,
               b.seconds AS duration_seconds,
               CASE WHEN b.ended_at < b.expires_at THEN 1 ELSE 0 END AS ended_early,
               (SELECT COUNT(*) FROM failures f WHERE f.ban_id = b.id) AS failures,
               b.reason
        FROM bans b""",
    "offenders": """
        SELECT e.address, MAX(e.network) AS network, SUM(e.failure) AS failures, SUM(e.ban) AS bans,
               MIN(e.seen) AS first_seen, MAX(e.seen) AS last_seen, COUNT(DISTINCT e.jail) AS jails
        FROM (SELECT address, network, jail, 1 AS failure, 0 AS ban, occurred_at AS seen FROM failures
              UNION ALL
              SELECT address, network, jail, 0 AS failure, 1 AS ban, started_at AS seen FROM bans) e
        GROUP BY e.address""",
}

# The day of a stored time, and a ban's length, for the rows already there.
_DAY = {"sqlite": "substr({column}, 1, 10)", "postgresql": "to_char({column}, 'YYYY-MM-DD')"}
_SECONDS = {"sqlite": "CAST(round((julianday(expires_at) - julianday(started_at)) * 86400) AS INTEGER)",
            "postgresql": "CAST(round(EXTRACT(EPOCH FROM expires_at - started_at)) AS BIGINT)"}


def _network(address: str) -> str:
    """The /24 or /64 of an address (a wider network stays as it is): the rule as of 0003."""
    try:
        network = ipaddress.ip_network(address.strip(), strict=False)
    except ValueError:
        return address
    prefix = 24 if network.version == 4 else 64
    return str(network.supernet(new_prefix=prefix) if network.prefixlen > prefix else network)


def upgrade() -> None:
    for table in ("failures", "bans"):
        op.add_column(table, sa.Column("day", sa.String(10), nullable=True))
        op.add_column(table, sa.Column("network", sa.String(64), nullable=True))
    op.add_column("bans", sa.Column("seconds", sa.BigInteger(), nullable=True))
    op.create_index("ix_failures_ban_id", "failures", ["ban_id"])
    _backfill()
    for name, select in VIEWS.items():
        op.execute(f"CREATE VIEW {name} AS {select}")


def _backfill() -> None:
    connection = op.get_bind()
    dialect = connection.dialect.name
    op.execute(f"UPDATE failures SET day = {_DAY[dialect].format(column='occurred_at')}")
    op.execute(f"UPDATE bans SET day = {_DAY[dialect].format(column='started_at')}, "
               f"seconds = CASE WHEN expires_at >= '9999-01-01' THEN NULL ELSE {_SECONDS[dialect]} END")
    # One row per distinct address in a scratch table, then one UPDATE per table joined on it:
    # an UPDATE per address would scan the failures once for each.
    addresses = sa.union(sa.select(sa.column("address")).select_from(sa.table("failures")),
                         sa.select(sa.column("address")).select_from(sa.table("bans")))
    rows = [{"address": a, "network": _network(a)} for (a,) in connection.execute(addresses)]
    if not rows:
        return
    scratch = op.create_table("networks_0003", sa.Column("address", sa.String(64), primary_key=True),
                              sa.Column("network", sa.String(64), nullable=False))
    op.bulk_insert(scratch, rows)
    for table in ("failures", "bans"):
        op.execute(f"UPDATE {table} SET network = (SELECT n.network FROM networks_0003 n "
                   f"WHERE n.address = {table}.address)")
    op.drop_table("networks_0003")


def downgrade() -> None:
    for name in reversed(VIEWS):
        op.execute(f"DROP VIEW {name}")
    op.drop_index("ix_failures_ban_id", "failures")
    # Dropped in place (SQLite 3.35+), not by rebuilding the tables: rebuilding bans would
    # delete its rows first, which the failures -> bans foreign key refuses.
    for column in ("seconds", "network", "day"):
        op.drop_column("bans", column)
    for column in ("network", "day"):
        op.drop_column("failures", column)
