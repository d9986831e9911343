"""The data step of ``journalban report``: a handful of grouped queries, then arithmetic.

The database does the counting in two passes over failures: one by jail, hour, rule
and host (read in the order of SQLite's ``ix_failures_report``, migration 0007, so
nothing is sorted), one by jail and address (in the order of
``ix_failures_jail_address_occurred``); bans are ten times fewer. Python only merges
the small results. The ledger is opened read-only.
"""

import heapq
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from sqlalchemy import (
    BigInteger,
    ColumnClause,
    ColumnElement,
    Engine,
    Integer,
    Select,
    String,
    Table,
    column,
    create_engine,
    func,
    literal_column,
    select,
    type_coerce,
)
from sqlalchemy.engine import make_url

from journalban.durations import format_duration
from journalban.events import FOREVER
from journalban.ledger.models import Ban, Failure
from journalban.ledger.views import network_of
from journalban.report.data import TIME_FORMAT, Cell, ReportData
from journalban.report.data import Table as ReportTable

HOURLY_UP_TO = timedelta(hours=48)  # a window this short is shown per hour, a longer one per day
TOP = 20
ACTIVE_SHOWN = 50
DURATION_BUCKETS = (600, 3600, 6 * 3600, 86400, 7 * 86400)
REPORT_V4_PREFIX, REPORT_V6_PREFIX = 24, 48
PARALLEL_QUERIES = 4

_AnySelect = Select[*tuple[Any, ...]]
_S = TypeVar("_S", bound=_AnySelect)

FAILURES: Table = Failure.__table__  # type: ignore[assignment]
BANS: Table = Ban.__table__  # type: ignore[assignment]
# bans.seconds (revision 0003), named apart from the model until the model declares it
SECONDS: ColumnClause[int] = column("seconds", BigInteger)


def _hour_sqlite(column: ColumnElement[datetime]) -> ColumnElement[str]:
    # stored as text: 'YYYY-MM-DD HH'. Literal numbers, not bound ones: only then does
    # SQLite see the expression of ix_failures_report (migration 0007) and skip the sort.
    one, thirteen = literal_column("1", Integer), literal_column("13", Integer)
    return func.substr(column, one, thirteen, type_=String)


def _hour_postgresql(column: ColumnElement[datetime]) -> ColumnElement[str]:
    return func.to_char(column, "YYYY-MM-DD HH24", type_=String)


# The one thing SQLite and PostgreSQL spell differently here: a time's hour as text.
HOUR_OF: dict[str, Callable[[ColumnElement[datetime]], ColumnElement[str]]] = {
    "sqlite": _hour_sqlite, "postgresql": _hour_postgresql}


def read_only_engine(url: str) -> Engine:
    """An engine that cannot write: SQLite through a ``mode=ro`` URI, which also never creates
    the file; a server's ledger as given (use a read-only role there)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        return create_engine(f"sqlite:///file:{parsed.database}?mode=ro&uri=true")
    return create_engine(url, pool_pre_ping=True)


def collect(ledger: str | Engine, since: datetime, jail: str | None = None, host: str | None = None, *,
            now: datetime | None = None, top: int = TOP) -> ReportData:
    """The report of failures and bans from ``since`` to ``now`` (default: the clock),
    of one jail and one host (``node``) when given."""
    now = now or datetime.now(UTC)
    engine = read_only_engine(ledger) if isinstance(ledger, str) else ledger
    try:
        results = _run_all(engine, _queries(HOUR_OF[engine.dialect.name], since, now, jail, host))
    finally:
        if isinstance(ledger, str):
            engine.dispose()
    f_groups, b_groups, active = results["f_groups"], results["b_groups"], results["active"]
    f_hours = _summed(f_groups, (0, 1))  # (jail, hour, count)
    b_hours = _summed(b_groups, (0, 1))
    rules = _summed(f_groups, (2,))
    active_count = results["active_count"][0][0]
    bucket = "hour" if now - since <= HOURLY_UP_TO else "day"
    offenders = _offenders(results["f_addresses"], results["b_addresses"])
    hosts = _host_table(f_groups, b_groups, results["active_hosts"])
    tables = (
        _active_table(active),
        _timeline(f_hours, b_hours, bucket),
        hosts,
        _host_timeline(f_groups, b_groups, bucket),
        _top_addresses(offenders, top),
        _top_networks(offenders, top),
        _repeat_offenders(offenders, top),
        ReportTable("rules", "Failures per grammar rule", ("rule", "failures"),
                    tuple((r, n) for r, n in sorted(rules, key=lambda r: (-r[1], r[0])))),
        _hours(f_hours, b_hours),
        _durations(results["lengths"], results["lengths_unknown"]),
    )
    summary = (
        ("failures", sum(n for _, _, n in f_hours)),
        ("bans", sum(n for _, _, n in b_hours)),
        ("addresses", len(offenders)),
        ("banned_addresses", sum(1 for o in offenders.values() if o.bans)),
        ("repeat_offenders", sum(1 for o in offenders.values() if o.bans >= 2)),
        ("active_bans", active_count),
        ("hosts", len(hosts.rows)),
    )
    return ReportData(now, since, now, jail, host, bucket, summary, tables)


def _summed(rows: Iterable[Sequence[Any]], keys: tuple[int, ...]) -> list[tuple[Any, ...]]:
    """The counts (each row's last cell) summed over the cells at ``keys``."""
    sums: Counter[tuple[Any, ...]] = Counter()
    for row in rows:
        sums[tuple(row[k] for k in keys)] += row[-1]
    return [(*key, count) for key, count in sums.items()]


def _queries(hour_of: Callable[[ColumnElement[datetime]], ColumnElement[str]], since: datetime, now: datetime,
             jail: str | None, host: str | None) -> dict[str, _AnySelect]:
    """Every question the report asks, each one pass over a table."""
    scope, f, b = _Scope(since, now, jail, host), FAILURES.c, BANS.c
    in_force = _Scope(None, None, jail, host)
    f_hour, b_hour = hour_of(f.occurred_at), hour_of(b.started_at)
    return {
        # in the order of ix_failures_report (SQLite): no sort, the table itself never read
        "f_groups": scope.failures(select(f.jail, f_hour, f.rule, f.node, func.count())
                                   .group_by(f.jail, f_hour, f.rule, f.node)),
        # node first: no index leads with it, so SQLite reads the table straight through
        "b_groups": scope.bans(select(b.jail, b_hour, b.node, func.count()).group_by(b.node, b_hour, b.jail)),
        # by jail and address: the order of ix_failures_jail_address_occurred, so no sort; the
        # times as the driver gives them (SQLite: text), turned into datetimes only when shown
        "f_addresses": scope.failures(select(f.address, func.count(), type_coerce(func.min(f.occurred_at), String),
                                             type_coerce(func.max(f.occurred_at), String))
                                      .group_by(f.jail, f.address)),
        "b_addresses": scope.bans(select(b.address, func.count(), func.count(b.jail.distinct()),
                                         type_coerce(func.min(b.started_at), String),
                                         type_coerce(func.max(b.started_at), String)).group_by(b.address)),
        # the stored ban time where written; start and expiry for the rest (permanent bans, older rows)
        "lengths": scope.bans(select(SECONDS, func.count()).select_from(BANS).where(SECONDS.is_not(None))
                              .group_by(SECONDS)),
        "lengths_unknown": scope.bans(select(b.started_at, b.expires_at, func.count()).where(SECONDS.is_(None))
                                      .group_by(b.started_at, b.expires_at)),
        "active_count": in_force.bans(select(func.count()).select_from(BANS).where(b.ended_at.is_(None))),
        "active_hosts": in_force.bans(select(b.node, func.count()).where(b.ended_at.is_(None)).group_by(b.node)),
        "active": in_force.bans(select(b.jail, b.address, b.node, b.started_at, b.expires_at, b.reason)
                                .where(b.ended_at.is_(None)).order_by(b.started_at.desc(), b.id.desc())
                                .limit(ACTIVE_SHOWN)),
    }


def _run_all(engine: Engine, queries: dict[str, _AnySelect]) -> dict[str, list[Any]]:
    """The queries side by side, each on its own connection: the big ones are scans
    the database runs without the GIL. An in-memory SQLite has one connection only."""

    def run(query: _AnySelect) -> list[Any]:
        with engine.connect() as connection:
            return list(connection.execute(query).all())

    if engine.dialect.name == "sqlite" and engine.url.database in (None, "", ":memory:"):
        return {name: run(query) for name, query in queries.items()}
    with ThreadPoolExecutor(max_workers=PARALLEL_QUERIES) as pool:
        futures = {name: pool.submit(run, query) for name, query in queries.items()}
        return {name: future.result() for name, future in futures.items()}


@dataclass(frozen=True, slots=True)
class _Scope:
    """The WHERE every query shares: the window, the jail, the host."""

    since: datetime | None
    until: datetime | None
    jail: str | None
    host: str | None

    def failures(self, query: _S) -> _S:
        return self._where(query, FAILURES, FAILURES.c.occurred_at)

    def bans(self, query: _S) -> _S:
        return self._where(query, BANS, BANS.c.started_at)

    def _where(self, query: _S, table: Table, when: ColumnElement[datetime]) -> _S:
        conditions: list[ColumnElement[bool]] = []
        if self.since is not None:
            conditions.append(when >= self.since)
        if self.until is not None:
            conditions.append(when < self.until)
        if self.jail is not None:
            conditions.append(table.c.jail == self.jail)
        if self.host is not None:
            conditions.append(table.c.node == self.host)
        return query.where(*conditions) if conditions else query


STORED = "%Y-%m-%d %H:%M:%S.%f"  # how SQLite holds a time; compared as text, it sorts by time


def _stored(moment: str | datetime | None) -> str | None:
    """A time as SQLite's stored text (UTC), the form offenders' times are compared in."""
    if moment is None or isinstance(moment, str):
        return moment
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return moment.strftime(STORED)


@dataclass(slots=True)
class _Offender:
    """One address's (or network's) figures; times as ``_stored`` text."""

    failures: int = 0
    bans: int = 0
    jails: int = 0
    first_seen: str | None = None
    last_seen: str | None = None
    first_ban: str | None = None
    last_ban: str | None = None

    def see(self, first: str | None, last: str | None) -> None:
        """Widen first and last seen to take in ``first`` .. ``last`` (this loop runs per address)."""
        if first is not None and (self.first_seen is None or first < self.first_seen):
            self.first_seen = first
        if last is not None and (self.last_seen is None or last > self.last_seen):
            self.last_seen = last


_Times = tuple[str, int, str | datetime, str | datetime]


def _offenders(f_addresses: Iterable[_Times], b_addresses: Iterable[tuple[str, int, int, str | datetime,
                                                                        str | datetime]]) -> dict[str, _Offender]:
    offenders: dict[str, _Offender] = {}
    for address, count, first_seen, last_seen in f_addresses:  # one row per jail and address
        first, last = ((first_seen, last_seen) if isinstance(first_seen, str)  # SQLite gives its text as it is
                       else (_stored(first_seen), _stored(last_seen)))  # PostgreSQL's datetimes
        offender = offenders.get(address)
        if offender is None:
            offenders[address] = _Offender(count, 0, 0, first, last)  # type: ignore[arg-type]
        else:
            offender.failures += count
            offender.see(first, last)  # type: ignore[arg-type]
    for address, count, jails, first_ban, last_ban in b_addresses:
        offender = offenders.setdefault(address, _Offender())
        offender.bans, offender.jails = count, jails
        offender.first_ban, offender.last_ban = _stored(first_ban), _stored(last_ban)
        offender.see(offender.first_ban, offender.last_ban)
    return offenders


def _ranked(items: Iterable[tuple[str, _Offender]], top: int,
            key: Callable[[tuple[str, _Offender]], tuple[Any, ...]]) -> list[tuple[str, _Offender]]:
    return heapq.nsmallest(top, items, key=key)


def _time(moment: str | datetime | None) -> str | None:
    if isinstance(moment, str):
        return moment[:19]  # _stored text to the second: TIME_FORMAT
    return None if moment is None else moment.strftime(TIME_FORMAT)


def _active_table(rows: Iterable[tuple[str, str, str, datetime, datetime, str]]) -> ReportTable:
    return ReportTable("active_bans", f"Bans in force now (newest {ACTIVE_SHOWN})",
                       ("jail", "address", "host", "started_at", "expires_at", "reason"),
                       tuple((jail, address, host, _time(start), "forever" if expiry >= FOREVER else _time(expiry),
                              reason) for jail, address, host, start, expiry, reason in rows), key_columns=2)


def _host_table(f_groups: Iterable[tuple[str, str, str, str, int]], b_groups: Iterable[tuple[str, str, str, int]],
                active: Iterable[tuple[str, int]]) -> ReportTable:
    """Which host ([node] name) read how many failures and decided how many bans."""
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    for _, _, _, host, count in f_groups:
        counts[host][0] += count
    for _, _, host, count in b_groups:
        counts[host][1] += count
    for host, count in active:
        counts[host][2] += count
    rows = tuple((host, *numbers) for host, numbers in sorted(counts.items(), key=lambda i: (-i[1][0], i[0])))
    return ReportTable("hosts", "Per host: failures read, bans decided, bans in force",
                       ("host", "failures", "bans", "active_bans"), rows)


def _host_timeline(f_groups: Iterable[tuple[str, str, str, str, int]], b_groups: Iterable[tuple[str, str, str, int]],
                   bucket: str) -> ReportTable:
    """Failures and bans per host per bucket (the per-host charts)."""
    counts: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    for _, hour, _, host, count in f_groups:
        counts[_bucket_of(hour, bucket), host][0] += count
    for _, hour, host, count in b_groups:
        counts[_bucket_of(hour, bucket), host][1] += count
    return _every_bucket_table("host_timeline", f"Failures and bans per host per {bucket}", "host", counts, bucket)


def _bucket_of(hour: str, bucket: str) -> str:
    return f"{hour}:00" if bucket == "hour" else hour[:10]


def _timeline(f_hours: Iterable[tuple[str, str, int]], b_hours: Iterable[tuple[str, str, int]],
              bucket: str) -> ReportTable:
    """Failures and bans per jail per bucket, every bucket between the first and the last."""
    counts: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    for index, rows in enumerate((f_hours, b_hours)):
        for jail, hour, count in rows:
            counts[_bucket_of(hour, bucket), jail][index] += count
    return _every_bucket_table("timeline", f"Failures and bans per {bucket}", "jail", counts, bucket)


def _every_bucket_table(name: str, title: str, by: str, counts: dict[tuple[str, str], list[int]],
                        bucket: str) -> ReportTable:
    """(failures, bans) per bucket and ``by`` (a jail or a host), every bucket between the first and last."""
    if not counts:
        return ReportTable(name, title, ("bucket", by, "failures", "bans"), (), key_columns=2)
    names = sorted({n for _, n in counts})
    buckets = _every_bucket(min(b for b, _ in counts), max(b for b, _ in counts), bucket)
    rows = tuple((b, n, *counts.get((b, n), (0, 0))) for b in buckets for n in names)
    return ReportTable(name, title, ("bucket", by, "failures", "bans"), rows, key_columns=2)


def _every_bucket(first: str, last: str, bucket: str) -> list[str]:
    spelling, step = ("%Y-%m-%d %H:00", timedelta(hours=1)) if bucket == "hour" else ("%Y-%m-%d", timedelta(days=1))
    moment, end = datetime.strptime(first, spelling), datetime.strptime(last, spelling)
    out = []
    while moment <= end:
        out.append(moment.strftime(spelling))
        moment += step
    return out


def _top_addresses(offenders: dict[str, _Offender], top: int) -> ReportTable:
    ranked = _ranked(offenders.items(), top, lambda item: (-item[1].failures, -item[1].bans, item[0]))
    return ReportTable("top_addresses", f"Top {top} addresses by failures",
                       ("address", "failures", "bans", "first_seen", "last_seen"),
                       tuple((a, o.failures, o.bans, _time(o.first_seen), _time(o.last_seen)) for a, o in ranked))


def _top_networks(offenders: dict[str, _Offender], top: int) -> ReportTable:
    networks: dict[str, _Offender] = {}
    members: Counter[str] = Counter()
    for address, offender in offenders.items():
        name = _report_network(address)
        network = networks.get(name)
        if network is None:
            networks[name] = _Offender(offender.failures, offender.bans, 0, offender.first_seen, offender.last_seen)
        else:
            network.failures += offender.failures
            network.bans += offender.bans
            network.see(offender.first_seen, offender.last_seen)
        members[name] += 1
    ranked = _ranked(networks.items(), top, lambda item: (-item[1].failures, -item[1].bans, item[0]))
    return ReportTable("top_networks", f"Top {top} networks (/24, /48) by failures",
                       ("network", "addresses", "failures", "bans", "first_seen", "last_seen"),
                       tuple((n, members[n], o.failures, o.bans, _time(o.first_seen), _time(o.last_seen))
                             for n, o in ranked))


def _report_network(address: str) -> str:
    """The /24 or /48 of ``address``; a plain IPv4 address (most of them) without ``ipaddress``."""
    if ":" not in address and "/" not in address and address.count(".") == 3:
        return address.rpartition(".")[0] + ".0/24"
    return network_of(address, REPORT_V4_PREFIX, REPORT_V6_PREFIX)


def _repeat_offenders(offenders: dict[str, _Offender], top: int) -> ReportTable:
    repeat = ((a, o) for a, o in offenders.items() if o.bans >= 2)
    ranked = _ranked(repeat, top, lambda item: (-item[1].bans, -item[1].failures, item[0]))
    return ReportTable("repeat_offenders", f"Repeat offenders: banned twice or more (top {top})",
                       ("address", "bans", "jails", "failures", "first_ban", "last_ban"),
                       tuple((a, o.bans, o.jails, o.failures, _time(o.first_ban), _time(o.last_ban))
                             for a, o in ranked))


def _hours(f_hours: Iterable[tuple[str, str, int]], b_hours: Iterable[tuple[str, str, int]]) -> ReportTable:
    counts = [[0, 0] for _ in range(24)]
    for index, rows in enumerate((f_hours, b_hours)):
        for _, hour, count in rows:
            counts[int(hour[11:13])][index] += count
    return ReportTable("hours", "Hour of day (UTC)", ("hour", "failures", "bans"),
                       tuple((f"{h:02d}", f, b) for h, (f, b) in enumerate(counts)))


def _durations(lengths: Iterable[tuple[int, int]], unknown: Iterable[tuple[datetime, datetime, int]]) -> ReportTable:
    """Bans by the ban time decided, in buckets up to a week, then longer, then permanent."""
    labels = [f"<= {format_duration(limit)}" for limit in DURATION_BUCKETS] + [
        f"> {format_duration(DURATION_BUCKETS[-1])}", "permanent"]
    counts = [0] * len(labels)
    for seconds, count in lengths:
        counts[_duration_bucket(seconds)] += count
    for start, expiry, count in unknown:
        permanent = expiry >= FOREVER
        counts[-1 if permanent else _duration_bucket((expiry - start).total_seconds())] += count
    rows: tuple[tuple[Cell, ...], ...] = tuple(zip(labels, counts, strict=True))
    return ReportTable("ban_durations", "Bans by ban time", ("ban_time", "bans"), rows)


def _duration_bucket(seconds: float) -> int:
    return next((i for i, limit in enumerate(DURATION_BUCKETS) if seconds <= limit), len(DURATION_BUCKETS))
