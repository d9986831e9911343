"""The fleet's pure parts, and what the ledger does for a fleet on real PostgreSQL."""

import asyncio
import logging
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy import text

from journalban import fleet as fleet_module
from journalban.detector import Detector, JailPolicy
from journalban.events import BanDecision, Failure
from journalban.fleet import FleetCursor, FleetListener, FleetWatcher, Notice, listening_connection, parse_notice
from journalban.ledger import queries
from journalban.ledger.store import NOTIFY_CHANNEL, Ledger
from journalban.pipeline import Pipeline
from tests.ledger.test_ledger import T0, failure

F = failure("203.0.113.9")
SSH = Failure("ssh", "203.0.113.9", T0, "sshd/invalid-user", "Invalid user x from 203.0.113.9", "journal")


def test_notices_are_parsed_and_anything_else_ignored() -> None:
    assert parse_notice("ban web1 wplogin 203.0.113.9") == Notice("ban", "web1", "wplogin", "203.0.113.9")
    assert str(parse_notice("failures web2 wplogin -")) == "failures web2 wplogin -"
    assert parse_notice("hello") is None
    assert parse_notice("ban web1 wplogin") is None


def test_the_cursor_counts_each_id_once_and_waits_for_late_commits() -> None:
    cursor = FleetCursor(floor=10, settle=5.0)
    assert cursor.fresh([(9, F), (11, F), (13, F)], now=100.0) == [F, F]  # 9: at or below the floor
    assert (cursor.floor, cursor.pending) == (10, 2)
    assert cursor.fresh([(11, F), (12, F), (13, F)], now=101.0) == [F]  # 12 committed late: still counted
    assert cursor.fresh([(11, F), (12, F), (13, F), (14, F)], now=105.5) == [F]
    assert (cursor.floor, cursor.pending) == (13, 1)  # 11..13 settled; 14 is still remembered
    assert cursor.fresh([(14, F)], now=111.0) == []
    assert (cursor.floor, cursor.pending) == (14, 0)


@pytest.fixture
def fleet(postgres_url: str) -> Iterator[list[Ledger]]:
    owner = Ledger(postgres_url, node="admin")
    owner.upgrade()
    owner.close()
    ledgers = [Ledger(postgres_url, node=f"web{n}", fleet_jails={"wplogin"}, host_jails={"ssh"}) for n in (1, 2)]
    yield ledgers
    for ledger in ledgers:
        ledger.close()


def _ban(jail: str, *failures: Failure) -> BanDecision:
    return BanDecision(jail, "203.0.113.9", T0, T0 + timedelta(minutes=10), "test", failures)


def test_bans_ends_and_fleet_failures_are_notified_on_commit(fleet: list[Ledger]) -> None:
    web1, web2 = fleet
    with listening_connection(web2) as listener:
        listener.execute(f"LISTEN {NOTIFY_CHANNEL}")
        web1.record([F], [], {}, T0)  # a fleet jail's failure
        web1.record([SSH], [], {}, T0)  # a host jail's failure: no notice
        web1.record([], [_ban("wplogin", F)], {}, T0)
        queries.unban(web2, "203.0.113.9", None, T0 + timedelta(minutes=1))
        heard = [n.payload for n in listener.notifies(timeout=5.0, stop_after=3)]
    assert heard == ["failures web1 wplogin -", "ban web1 wplogin 203.0.113.9", "end web2 wplogin 203.0.113.9"]


def test_other_hosts_failures_are_pulled_and_a_fleet_ban_links_them_all(fleet: list[Ledger]) -> None:
    web1, web2 = fleet
    web1.record([F], [], {}, T0)
    web2.record([F], [], {}, T0)
    floor = web1.last_failure_id()
    assert [(n, f.address) for n, f in web2.fleet_failures(0)] == [(1, "203.0.113.9")]  # web1's only
    assert web2.fleet_failures(floor) == []
    assert len(web2.fleet_failures(0, since=T0 - timedelta(minutes=1))) == 1
    third = failure("203.0.113.9")
    web2.record([third], [_ban("wplogin", F, F, third)], {}, T0)
    assert web1.fleet_failures(0, since=T0 - timedelta(minutes=1)) == []  # consumed by the ban
    with web1.transaction() as session:
        linked = session.execute(text("SELECT node, ban_id FROM failures ORDER BY id")).all()
    assert linked == [("web1", 1), ("web2", 1), ("web2", 1)]


def test_host_scoped_bans_are_enforced_where_their_failures_were_read(fleet: list[Ledger], postgres_url: str) -> None:
    web1, web2 = fleet
    web1.record([SSH], [_ban("ssh", SSH)], {}, T0)
    web1.record([F], [_ban("wplogin", F)], {}, T0)
    assert sorted(b.jail for b in web1.active_bans()) == ["ssh", "wplogin"]
    assert [b.jail for b in web2.active_bans()] == ["wplogin"]  # web1's ssh ban is web1's alone
    web2.record([SSH], [_ban("ssh", SSH)], {}, T0)  # web2 reaches the same ban: it joins web1's row
    assert sorted(b.jail for b in web2.active_bans()) == ["ssh", "wplogin"]
    everyone = Ledger(postgres_url, node="report")  # no scopes: every ban, as before
    try:
        assert len(everyone.active_bans()) == 2
    finally:
        everyone.close()


def test_sqlite_ignores_scopes(tmp_path: Path) -> None:
    ledger = Ledger(f"sqlite:///{tmp_path}/ledger.db", node="web1", host_jails={"ssh"})
    ledger.upgrade()
    try:
        other = Ledger(ledger.url, node="renamed")
        other.record([SSH], [_ban("ssh", SSH)], {}, T0)
        other.close()
        assert not ledger.shared
        assert [b.jail for b in ledger.active_bans()] == ["ssh"]  # a renamed host keeps its bans
    finally:
        ledger.close()


def test_the_listener_reconnects_with_backoff_and_hears_again(fleet: list[Ledger], monkeypatch: pytest.MonkeyPatch,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    web1, web2 = fleet
    monkeypatch.setattr(fleet_module, "RECONNECT_FIRST", 0.05)
    attempts, connects = [0], threading.Semaphore(0)
    heard: list[Notice] = []

    def connect() -> psycopg.Connection[Any]:
        attempts[0] += 1
        if attempts[0] == 1:
            raise psycopg.OperationalError("the server is away")
        return listening_connection(web2)

    listener = FleetListener(connect, heard.extend, connects.release)
    caplog.set_level(logging.INFO, logger="journalban.fleet")
    listener.start()
    try:
        assert connects.acquire(timeout=10)
        web1.record([], [_ban("wplogin", F)], {}, T0)
        _wait(lambda: heard)
        assert heard == [Notice("ban", "web1", "wplogin", "203.0.113.9")]
        # the server ends the listening session (a restart, a failover): it comes back by itself
        web1.engine.dispose()
        with web1.transaction() as session:
            session.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                 "WHERE query LIKE 'LISTEN%' AND pid <> pg_backend_pid()"))
        assert connects.acquire(timeout=10)
        queries.unban(web1, "203.0.113.9", None, T0 + timedelta(minutes=1))
        _wait(lambda: len(heard) == 2)
        assert heard[1] == Notice("end", "web1", "wplogin", "203.0.113.9")
    finally:
        listener.stop()
    messages = [r.getMessage() for r in caplog.records]
    assert sum("connection lost or refused" in m for m in messages) == 2
    assert any("listening for ledger notifications again" in m for m in messages)


def _wait(probe: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not probe():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


class CountedLedger(Ledger):
    """The real ledger, counting the pulls' queries as they start."""

    pulls = 0

    def fleet_failures(self, after: int, since: datetime | None = None) -> list[tuple[int, Failure]]:
        self.pulls += 1
        return super().fleet_failures(after, since)


def test_a_pull_waits_off_the_loop_and_notices_meanwhile_make_one_more(
        fleet: list[Ledger], postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A pull held up by the server (here a lock on the failures) leaves the event loop free
    and a ban's wake on time; the ten notices heard meanwhile cause one more pull, not ten."""
    web1 = fleet[0]
    monkeypatch.setattr(fleet_module, "PULL_EVERY", 60.0)  # only notices pull
    web2 = CountedLedger(postgres_url, node="web2", fleet_jails={"wplogin"})
    pipeline = Pipeline({}, Detector({"wplogin": JailPolicy("wplogin", 3, 600, 600)}), web2, lambda bans: None)
    wakes: list[float] = []
    heard: list[Notice] = []

    async def scenario() -> None:
        watcher = FleetWatcher(web2, pipeline, lambda: wakes.append(time.monotonic()),
                               lambda: datetime.now(UTC), 600)
        listen = watcher.listener.on_notices

        def hear(notices: list[Notice]) -> None:
            heard.extend(notices)
            listen(notices)

        watcher.listener.on_notices = hear
        watcher.start()
        assert web2.pulls == 1  # at start, at once
        await _until(watcher.listener.connected.is_set)
        web1.record([F], [], {}, T0)  # a fleet failure, and its notice: pulled and counted
        await _until(lambda: pipeline.counters["fleet"] == 1 and heard)
        await asyncio.sleep(0.3)
        before, woken = web2.pulls, len(wakes)  # (the listener's connect woke it once)
        with listening_connection(web1) as other, listening_connection(web1) as blocker:
            blocker.execute("BEGIN")
            blocker.execute("LOCK TABLE failures IN ACCESS EXCLUSIVE MODE")
            released = threading.Event()  # a pull on the loop would hold it up: let go in the end

            def let_go() -> None:
                released.set()
                blocker.execute("ROLLBACK")

            unblock = threading.Timer(20.0, let_go)
            unblock.start()
            notify(other, "failures web1 wplogin -")
            await _until(lambda: web2.pulls == before + 1)  # this pull waits for the lock; the loop does not
            for _ in range(10):
                notify(other, "failures web1 wplogin -")
            notify(other, "ban web1 wplogin 203.0.113.9")
            await _until(lambda: len(heard) == 13 and len(wakes) == woken + 1)  # the ban woke the reconciler
            await asyncio.sleep(0.3)
            assert web2.pulls == before + 1  # none started while one is in flight
            unblock.cancel()
            assert not released.is_set()  # all this while the pull waited for the lock
            blocker.execute("COMMIT")
        await _until(lambda: web2.pulls == before + 2)  # one more for all eleven notices heard meanwhile
        await asyncio.sleep(0.5)
        assert web2.pulls == before + 2 and len(wakes) == woken + 1
        await watcher.stop()

    try:
        asyncio.run(scenario())
    finally:
        web2.close()
    assert pipeline.counters["fleet"] == 1


def notify(connection: psycopg.Connection[Any], payload: str) -> None:
    connection.execute("SELECT pg_notify(%s, %s)", (NOTIFY_CHANNEL, payload))


async def _until(probe: Any, timeout: float = 10.0) -> None:
    """Wait on the event loop (which must stay free meanwhile) until ``probe()`` holds."""
    deadline = time.monotonic() + timeout
    while not probe():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)
