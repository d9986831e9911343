"""The spool of a PostgreSQL ledger: recording while the server is away, delivering once.

These tests stop and start a PostgreSQL server of their own (the session's stays up
for the other tests) and deliver by hand (``background=False``) to choose where a
delivery is cut off.
"""

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from journalban.ledger.spool import SpoolingLedger, decode_batch, encode_batch, ledger_health, open_ledger
from journalban.ledger.store import Ledger, LedgerNotReady
from journalban.sources.files import Position
from journalban.sources.journal import JournalCursor
from tests.ledger.test_ledger import T0, ban, failure
from tests.postgres import PostgresServer, running_postgres


@pytest.fixture(scope="module")
def server() -> Iterator[PostgresServer]:
    """A server of this module's own: these tests stop it."""
    with running_postgres() as started:
        yield started


@dataclass
class Spooling:
    server: PostgresServer
    url: str
    spool: Path
    ledger: SpoolingLedger

    def count(self, sql: str) -> str:
        return self.server.psql(sql, str(make_url(self.url).database))

    def reopen(self) -> SpoolingLedger:
        self.ledger.close()
        self.ledger = SpoolingLedger(self.url, self.spool, node="web1", background=False)
        return self.ledger


@pytest.fixture
def spooling(server: PostgresServer, tmp_path: Path) -> Iterator[Spooling]:
    url = server.create_database("spool")
    owner = Ledger(url, node="admin")
    owner.upgrade()
    owner.close()
    state = Spooling(server, url, tmp_path / "spool.db",
                     SpoolingLedger(url, tmp_path / "spool.db", node="web1", background=False))
    try:
        yield state
    finally:
        if not server.running():
            server.start()
        state.ledger.close()


def test_a_batch_survives_the_spools_encoding_with_its_links() -> None:
    first, second = failure("203.0.113.9"), failure("203.0.113.9", text="again")
    earlier = failure("203.0.113.9", text="an earlier batch")
    decision = ban(behind=first)
    decision = type(decision)(decision.jail, decision.address, decision.start, decision.expiry, decision.reason,
                              (earlier, first, second), ("203.0.113.8",))
    failures, bans, positions, now = decode_batch(encode_batch(
        [first, second], [decision], {"file:/x": Position(3, 40), "journal": JournalCursor("s=1")}, T0))
    assert failures == [first, second] and bans == [decision] and now == T0
    assert bans[0].failures[1] is failures[0] and bans[0].failures[2] is failures[1]  # the same objects
    assert positions == {"file:/x": Position(3, 40), "journal": JournalCursor("s=1")}


def test_what_is_recorded_while_the_server_is_away_arrives_once_and_in_order(spooling: Spooling) -> None:
    ledger, server = spooling.ledger, spooling.server
    before = failure("198.51.100.1")
    ledger.record([before], [ban("198.51.100.1", behind=before)], {"file:/x": Position(1, 10)}, T0)
    assert [b.address for b in ledger.active_bans()] == ["198.51.100.1"]  # what the reconciler last saw
    server.stop()
    try:
        for n in range(3):
            behind = failure(f"203.0.113.{n}")
            ledger.record([behind, failure(f"203.0.113.{n}")], [ban(f"203.0.113.{n}", behind=behind)] if n == 1 else [],
                          {"file:/x": Position(1, 20 + n)}, T0 + timedelta(seconds=n))
        ledger.record_heal("iptables", 1, 0, False, "+wplogin:198.51.100.1", T0)
        assert ledger_health(ledger) == {"state": "unreachable", "spooled": 4, "spool": str(spooling.spool)}
        # enforced meanwhile: the last bans the ledger gave, and the one decided while away
        assert sorted(b.address for b in ledger.active_bans()) == ["198.51.100.1", "203.0.113.1"]
        enforced = ledger.enforced_bans()
        assert enforced.entries == {("wplogin", "198.51.100.1"), ("wplogin", "203.0.113.1")}
        assert enforced.next_expiry == T0 + timedelta(minutes=10)
        assert ledger.expire_bans(T0 + timedelta(minutes=11)) == []  # ended by the ledger once it is back...
        assert ledger.active_bans() == [] and ledger.enforced_bans().entries == set()  # ...not enforced now
        assert ledger.positions() == {"file:/x": Position(1, 22)}  # a restart resumes after the spool
        with pytest.raises(OperationalError):
            ledger.deliver()  # still away: nothing is forgotten
        assert ledger.spool.size == 4
    finally:
        server.start()
    assert ledger.deliver() == 4
    assert ledger_health(ledger)["state"] == "reachable" and ledger.spool.size == 0
    assert spooling.count("SELECT string_agg(address, ' ' ORDER BY id) FROM failures") == (
        "198.51.100.1 203.0.113.0 203.0.113.0 203.0.113.1 203.0.113.1 203.0.113.2 203.0.113.2")
    assert spooling.count("SELECT string_agg(address || ':' || node, ' ' ORDER BY id) FROM bans") == (
        "198.51.100.1:web1 203.0.113.1:web1")
    assert spooling.count("SELECT count(*) FROM failures f JOIN bans b ON f.ban_id = b.id "
                          "WHERE b.address = '203.0.113.1'") == "1"
    assert spooling.count("SELECT count(*) FROM heals") == "1"
    assert spooling.count("SELECT count(*) FROM spool_deliveries WHERE node = 'web1'") == "4"
    assert ledger.positions() == {"file:/x": Position(1, 22)}
    ledger.record([failure("192.0.2.1")], [], {}, T0)  # written through again
    assert ledger.spool.size == 0 and spooling.count("SELECT count(*) FROM failures") == "8"


def _spool_three(spooling: Spooling) -> None:
    spooling.server.stop()
    try:
        for n in range(3):
            spooling.ledger.record([failure(f"203.0.113.{n}")], [], {"file:/x": Position(1, n)}, T0)
    finally:
        spooling.server.start()
    assert spooling.ledger.spool.size == 3


def test_a_delivery_cut_off_halfway_is_rolled_back_whole_and_then_delivered_once(
        spooling: Spooling, monkeypatch: pytest.MonkeyPatch) -> None:
    _spool_three(spooling)
    original, calls = Ledger._record, [0]

    def dropped_on_the_second(self: Ledger, session: Session, *args: Any) -> None:
        calls[0] += 1
        if calls[0] == 2:  # the connection dies in the middle of the chunk
            session.execute(text("SELECT pg_terminate_backend(pg_backend_pid())"))
        original(self, session, *args)

    monkeypatch.setattr(Ledger, "_record", dropped_on_the_second)
    with pytest.raises(OperationalError, match="terminat"):
        spooling.ledger.deliver()
    assert spooling.count("SELECT count(*) FROM failures") == "0"  # the first record went back too
    assert spooling.ledger.spool.size == 3
    assert spooling.ledger.deliver() == 3
    assert spooling.count("SELECT string_agg(address, ' ' ORDER BY id) FROM failures") == (
        "203.0.113.0 203.0.113.1 203.0.113.2")


def test_a_delivery_committed_but_not_yet_forgotten_is_not_delivered_twice(
        spooling: Spooling, monkeypatch: pytest.MonkeyPatch) -> None:
    _spool_three(spooling)
    spool = spooling.ledger.spool

    def crashed(upto: int) -> None:
        raise RuntimeError("killed between the ledger's commit and the spool's delete")

    monkeypatch.setattr(spool, "forget", crashed)
    with pytest.raises(RuntimeError):
        spooling.ledger.deliver()
    monkeypatch.undo()
    assert spool.size == 3 and spooling.count("SELECT count(*) FROM failures") == "3"
    assert spooling.ledger.deliver() == 0  # all three ids are known: skipped, then forgotten
    assert spool.size == 0 and spooling.count("SELECT count(*) FROM failures") == "3"


def test_a_write_whose_commit_answer_was_lost_is_not_doubled(spooling: Spooling,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    original = Ledger.record

    def committed_then_lost(self: Ledger, *args: Any) -> None:
        original(self, *args)
        raise OperationalError("COMMIT", {}, psycopg.OperationalError("server closed the connection unexpectedly"))

    monkeypatch.setattr(Ledger, "record", committed_then_lost)
    spooling.ledger.record([failure()], [], {"file:/x": Position(1, 5)}, T0)
    monkeypatch.undo()
    assert spooling.ledger.spool.size == 1  # spooled: the ledger may or may not have it
    spooling.ledger.record([failure("192.0.2.7")], [], {}, T0 + timedelta(seconds=1))  # after it, in order
    assert spooling.ledger.deliver() == 1  # the first was found committed; the second is new
    assert spooling.count("SELECT string_agg(address, ' ' ORDER BY id) FROM failures") == "203.0.113.9 192.0.2.7"


def test_a_restart_while_the_server_is_away_enforces_and_resumes_from_the_spool(spooling: Spooling) -> None:
    ledger = spooling.ledger
    behind = failure()
    ledger.record([behind], [ban(behind=behind)], {"file:/x": Position(1, 10), "journal": JournalCursor("c1")}, T0)
    assert ledger.cursor("journal") == JournalCursor("c1")
    ledger.enforced_bans()  # a reconcile
    spooling.server.stop()
    try:
        ledger.record([failure("192.0.2.7")], [], {"file:/x": Position(1, 30)}, T0)
        again = spooling.reopen()  # a restart
        again.prepare()  # the server is away, the spool knows this host: it starts
        assert again.health()["state"] == "unreachable" and again.spool.size == 1
        assert again.positions() == {"file:/x": Position(1, 30)}
        assert again.cursor("journal") == JournalCursor("c1")
        assert [b.address for b in again.active_bans()] == ["203.0.113.9"]
        assert again.enforced_bans().entries == {("wplogin", "203.0.113.9")}
    finally:
        spooling.server.start()
    assert again.deliver() == 1
    assert spooling.count("SELECT count(*) FROM failures") == "2"
    assert again.positions() == {"file:/x": Position(1, 30)}


def test_a_first_start_without_the_server_is_refused(server: PostgresServer, tmp_path: Path) -> None:
    url = server.create_database("spool")
    server.stop()
    try:
        ledger = SpoolingLedger(url, tmp_path / "spool.db", node="web1", background=False)
        with pytest.raises(LedgerNotReady, match="cannot open the ledger"):
            ledger.prepare()  # nothing known of this host's bans and positions: no guessing
        ledger.close()
    finally:
        server.start()


def test_a_spool_is_never_delivered_as_another_host(spooling: Spooling) -> None:
    _spool_three(spooling)
    spooling.ledger.close()
    with pytest.raises(LedgerNotReady, match="holds 3 record"):
        SpoolingLedger(spooling.url, spooling.spool, node="web2", background=False)


def test_sqlite_ledgers_have_no_spool(tmp_path: Path) -> None:
    ledger = open_ledger(f"sqlite:///{tmp_path}/ledger.db", tmp_path / "spool.db", node="web1")
    try:
        assert type(ledger) is Ledger and not (tmp_path / "spool.db").exists()
        assert ledger_health(ledger) == {"state": "reachable", "spooled": 0, "spool": None}
    finally:
        ledger.close()


def test_status_names_an_unreachable_ledger_and_its_spool() -> None:
    from journalban.control import render

    reply = {"jails": [{"name": "wplogin", "failures_in_window": None, "active_bans": 2}], "counters": {},
             "sources": {}, "last_reconcile": None,
             "ledger": {"state": "unreachable", "spooled": 3, "spool": "/var/lib/journalban/spool.db"}}
    shown = render.status(reply)
    assert "ledger: unreachable, 3 record(s) in the spool /var/lib/journalban/spool.db" in shown
    assert "?" in shown.splitlines()[1]  # failures in window: unknown while away
    reply["ledger"] = {"state": "reachable", "spooled": 0, "spool": None}  # SQLite: no line
    assert "ledger:" not in render.status(reply)
