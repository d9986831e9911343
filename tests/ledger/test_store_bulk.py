"""A batch's bans opened in bulk (``ledger/batch_bans.py``) leave the ledger as opening them
one by one does: new bans, bans in force joined, stale ones ended, history, and links."""

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text

from journalban.events import BanDecision, Failure
from journalban.ledger import batch_bans, sqlite_write, store
from journalban.ledger.store import Ledger

T0 = datetime(2026, 4, 23, 10, 0, tzinfo=UTC)
LATER = T0 + timedelta(minutes=5)


def failure(address: str, at: datetime, n: int) -> Failure:
    return Failure(jail="sshd", address=address, time=at, rule="sshd/failed", text=f"failure {n} from {address}",
                   source="file:/var/log/auth.log")


def decision(address: str, behind: tuple[Failure, ...], start: datetime, seconds: int, count: int = 0,
             since: datetime | None = None) -> BanDecision:
    return BanDecision("sshd", address, start, start + timedelta(seconds=seconds), f"ban {address}", behind,
                       count=count, window_start=since)


def written(ledger: Ledger, failures: list[Failure], bans: list[BanDecision], now: datetime) -> None:
    """What the pipeline does with a burst's transaction: ``Ledger.writer``, run at once."""
    write = ledger.writer(failures, bans, {}, now)
    assert write is not None, "SQLite takes the usual batch as JSON"
    write()


def scenario(ledger: Ledger, record: Callable[[Ledger, list[Failure], list[BanDecision], datetime], None]) -> None:
    """Two batches: the second opens a ban over failures of the first (A), joins a ban in
    force (D), replaces one past its time (E), records one already over (F), opens one on
    its own failures only (G); B and C stay unbanned."""
    first = [failure(a, T0, n) for n, a in enumerate(["A", "A", "B", "C", "D", "E"])]
    record(ledger, first, [decision("D", (first[4],), T0, 3600), decision("E", (first[5],), T0, 60)], T0)
    second = [failure(a, LATER, 10 + n) for n, a in enumerate(["A", "B", "D", "E", "F", "G", "G"])]
    record(ledger, second, [
        decision("A", (second[0],), LATER, 600, count=3, since=T0),
        decision("D", (second[2],), LATER, 600),
        decision("E", (second[3],), LATER, 600),
        decision("F", (second[4],), T0 - timedelta(hours=2), 60),
        decision("G", (second[6],), LATER, 600, count=2, since=LATER),
    ], LATER)


def recorded(ledger: Ledger, failures: list[Failure], bans: list[BanDecision], now: datetime) -> None:
    ledger.record(failures, bans, {}, now)


def dump(ledger: Ledger) -> dict[str, Any]:
    with ledger.engine.connect() as connection:
        bans = [tuple(row) for row in connection.execute(text(
            "SELECT id, address, started_at, expires_at, ended_at, end_reason, node, day, network, seconds, reason "
            "FROM bans ORDER BY id"))]
        failures = [tuple(row) for row in connection.execute(text(
            "SELECT f.text, b.address, b.id FROM failures f LEFT JOIN bans b ON b.id = f.ban_id ORDER BY f.text"))]
        failures += [tuple(row) for row in connection.execute(text(  # every column, in id order
            "SELECT * FROM failures ORDER BY id"))]
    return {"bans": bans, "failures": failures}


def test_a_batch_of_bans_in_bulk(ledger: Ledger) -> None:
    scenario(ledger, recorded)
    with ledger.engine.connect() as connection:
        rows = {(address, end_reason) for address, end_reason in connection.execute(
            text("SELECT address, end_reason FROM bans"))}
        linked: dict[str, str | None] = {row[0]: row[1] for row in connection.execute(text(
            "SELECT f.text, b.address FROM failures f LEFT JOIN bans b ON b.id = f.ban_id"))}
    assert rows == {("A", None), ("D", None), ("E", "expired"), ("E", None), ("F", "expired"), ("G", None)}
    assert sorted(b.address for b in ledger.active_bans()) == ["A", "D", "E", "G"]
    assert [text for text, address in sorted(linked.items()) if address == "A"] == [
        "failure 0 from A", "failure 1 from A", "failure 10 from A"]  # the first batch's, linked by UPDATE
    assert linked["failure 12 from D"] == "D" and linked["failure 4 from D"] == "D"  # joined the ban in force
    assert linked["failure 15 from G"] == linked["failure 16 from G"] == "G"  # the window, within the batch
    assert linked["failure 2 from B"] is None and linked["failure 11 from B"] is None
    assert linked["failure 13 from E"] == "E"


def test_bulk_and_one_by_one_write_the_same_rows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    """SQLite's statements over JSON (``sqlite_write``, a burst's transaction), the bulk
    statements with their ban ids in Python (``batch_bans``) and the one-by-one path leave
    the same rows, and say the same of a ban that joins one in force."""
    dumps, said = [], []
    for way in ("json", "bulk", "one by one"):
        ledger = Ledger(f"sqlite:///{tmp_path}/{way}.db", node="node-a")
        ledger.upgrade()
        caplog.clear()
        try:
            with monkeypatch.context() as patch, caplog.at_level(logging.INFO, logger=batch_bans.__name__):
                patch.setattr(sqlite_write, "ROWS", 2)  # several INSERTs, linked rows in each
                if way == "one by one":
                    patch.setattr(store, "in_bulk", lambda decisions: False)
                scenario(ledger, written if way == "json" else recorded)
            dumps.append(dump(ledger))
            said.append([r.getMessage() for r in caplog.records if "already in force" in r.getMessage()])
        finally:
            ledger.close()
    assert dumps[0] == dumps[1] == dumps[2]
    assert len(dumps[0]["bans"]) == 6
    d_ban = next(ban_id for ban_id, address, *_ in dumps[0]["bans"] if address == "D")
    assert said == [[f"ban of D in sshd already in force (#{d_ban}, opened by node-a): its failures join it"]] * 3


@pytest.mark.parametrize("json_rows", [True, False], ids=["json", "bulk"])
def test_a_fleet_scoped_ban_links_every_hosts_failures_a_host_scoped_one_its_own(
        tmp_path: Path, json_rows: bool) -> None:
    record = written if json_rows else recorded
    url = f"sqlite:///{tmp_path}/shared.db"
    other, fleet, host = (Ledger(url, node="node-b"), Ledger(url, node="node-a", fleet_jails={"sshd"}),
                          Ledger(url, node="node-a"))
    try:
        other.upgrade()
        other.record([failure("X", T0, 1), failure("Y", T0, 2)], [], {}, T0)
        behind = [failure("X", LATER, 3)]
        record(fleet, behind, [decision("X", (behind[0],), LATER, 600, count=2, since=T0)], LATER)
        behind = [failure("Y", LATER, 4)]
        record(host, behind, [decision("Y", (behind[0],), LATER, 600, count=2, since=T0)], LATER)
        with other.engine.connect() as connection:
            linked = dict(connection.execute(text(
                "SELECT f.text, b.address FROM failures f LEFT JOIN bans b ON b.id = f.ban_id")).all())
    finally:
        for ledger in (other, fleet, host):
            ledger.close()
    assert linked == {"failure 1 from X": "X", "failure 3 from X": "X",
                      "failure 2 from Y": None, "failure 4 from Y": "Y"}


def test_a_subnet_ban_or_an_address_twice_takes_the_one_by_one_path() -> None:
    one = failure("A", T0, 1)
    assert batch_bans.in_bulk([decision("A", (one,), T0, 60), decision("B", (one,), T0, 60)])
    assert not batch_bans.in_bulk([decision("A", (one,), T0, 60), decision("A", (one,), T0, 60)])
    subnet = BanDecision("sshd", "198.51.100.0/24", T0, T0 + timedelta(minutes=1), "subnet", (one,),
                         replaces=("198.51.100.7",))
    assert not batch_bans.in_bulk([subnet])


def test_failures_in_bulk_store_utc_times_and_their_utc_day(ledger: Ledger) -> None:
    """Times in any zone go in as UTC, with microseconds, and ``day`` is the UTC day: just
    after midnight at +02:00 is the day before, and just before it at -05:00 the day after."""
    east = timezone(timedelta(hours=2))
    west = timezone(timedelta(hours=-5))
    times = [datetime(2026, 4, 24, 1, 30, 0, 250000, tzinfo=east), datetime(2026, 4, 23, 21, 0, tzinfo=west),
             datetime(2026, 4, 23, 10, 0, 0, 7, tzinfo=UTC)]
    ledger.record([failure("203.0.113.9", at, n) for n, at in enumerate(times)], [], {}, T0)
    with ledger.engine.connect() as connection:
        rows = connection.execute(text(
            "SELECT occurred_at, day FROM failures ORDER BY text")).all()
    stored = [(at if isinstance(at, datetime) else datetime.fromisoformat(at), day) for at, day in rows]
    assert stored == [(datetime(2026, 4, 23, 23, 30, 0, 250000), "2026-04-23"),
                      (datetime(2026, 4, 24, 2, 0), "2026-04-24"),
                      (datetime(2026, 4, 23, 10, 0, 0, 7), "2026-04-23")]
    if ledger.engine.dialect.name == "sqlite":  # text that sorts with what SQLAlchemy writes
        assert [at for at, _ in rows] == ["2026-04-23 23:30:00.250000", "2026-04-24 02:00:00.000000",
                                          "2026-04-23 10:00:00.000007"]


def test_a_time_goes_into_sqlite_as_sqlalchemy_writes_it() -> None:
    """The bare-DBAPI statements store a time as the ORM's DATETIME does (text compares in
    time order only so): naive UTC, always with microseconds, whatever the zone."""
    from sqlalchemy.dialects import sqlite as sqlite_dialect

    orm = sqlite_dialect.DATETIME().bind_processor(sqlite_dialect.dialect())
    assert orm is not None
    stored = store._stored_time("sqlite")
    for moment in (datetime(2026, 11, 27, 7, 0, 5, tzinfo=UTC), datetime(2026, 11, 27, 7, 0, 5, 37, tzinfo=UTC),
                   datetime(1, 1, 1, tzinfo=UTC), datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
                   datetime(2026, 1, 1, 0, 30, tzinfo=timezone(timedelta(hours=2)))):
        assert stored(moment) == orm(moment.astimezone(UTC).replace(tzinfo=None))
    with pytest.raises(ValueError, match="aware"):
        stored(datetime(2026, 1, 1))
