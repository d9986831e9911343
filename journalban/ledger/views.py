"""The plain columns behind the ledger's SQL views, computed in Python.

SQLite and PostgreSQL share no function for a date's text or an address's network,
so the ledger stores them (``day``, ``network`` on failures and bans, ``seconds`` on
bans) and the views and example queries in ``docs/ledger.md`` need none. Whatever
inserts a row fills them with these functions; migration 0003 backfilled old rows.
"""

import ipaddress
from datetime import UTC, datetime

from sqlalchemy import Connection, text

from journalban.addresses import CANONICAL_IPV4
from journalban.events import FOREVER

IPV4_PREFIX = 24  # the ledger's `network`: a /24 for IPv4 ...
IPV6_PREFIX = 64  # ... and a /64 for IPv6, what one customer usually gets


def network_of(address: str, v4_prefix: int = IPV4_PREFIX, v6_prefix: int = IPV6_PREFIX) -> str:
    """The network ``address`` lies in, as ``203.0.113.0/24`` or ``2001:db8:1:2::/64``.

    A network (an aggregated ban's ``203.0.113.0/24``) wider than the prefix is kept as
    it is; text that is no address comes back unchanged rather than failing an insert.
    """
    if v4_prefix == 24 and CANONICAL_IPV4.fullmatch(address):  # the common case, per failure row
        return f"{address.rpartition('.')[0]}.0/24"
    try:
        network = ipaddress.ip_network(address.strip(), strict=False)
    except ValueError:
        return address
    prefix = v4_prefix if network.version == 4 else v6_prefix
    if network.prefixlen > prefix:
        network = network.supernet(new_prefix=prefix)
    return str(network)


def day_of(moment: datetime) -> str:
    """The UTC day of ``moment`` as ``YYYY-MM-DD``; a naive time is taken as UTC already."""
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}"


def ban_seconds(started_at: datetime, expires_at: datetime) -> int | None:
    """The ban time decided, in whole seconds; None for a permanent ban."""
    if _aware(expires_at) >= FOREVER:
        return None
    return round((_aware(expires_at) - _aware(started_at)).total_seconds())


def _aware(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def fill_derived(connection: Connection) -> int:
    """Fill ``day``, ``network`` and ``seconds`` where a writer left them NULL; returns rows fixed.

    A repair for rows written by something that does not know the columns (an older
    journalban, a hand-written INSERT); the ledger's own writes fill them as they insert.
    """
    fixed = 0
    for table, when in (("failures", "occurred_at"), ("bans", "started_at")):
        rows = connection.execute(text(f"SELECT id, {when}, address FROM {table} "
                                       "WHERE day IS NULL OR network IS NULL")).all()
        updates = [{"id": i, "day": day_of(_parsed(t)), "network": network_of(a)} for i, t, a in rows]
        if updates:
            connection.execute(text(f"UPDATE {table} SET day = :day, network = :network WHERE id = :id"), updates)
        fixed += len(updates)
    rows = connection.execute(text("SELECT id, started_at, expires_at FROM bans WHERE seconds IS NULL")).all()
    updates = [{"id": i, "seconds": ban_seconds(_parsed(s), _parsed(e))} for i, s, e in rows]
    updates = [u for u in updates if u["seconds"] is not None]
    if updates:
        connection.execute(text("UPDATE bans SET seconds = :seconds WHERE id = :id"), updates)
    return fixed


def _parsed(moment: datetime | str) -> datetime:
    """A stored time as a plain ``text()`` query returns it: text on SQLite, a datetime elsewhere."""
    return datetime.fromisoformat(moment) if isinstance(moment, str) else moment
