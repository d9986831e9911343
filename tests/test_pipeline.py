"""Lines through grammar, detector and ledger together, on a real SQLite ledger."""

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import event, text
from sqlalchemy.exc import SQLAlchemyError

from journalban import paths
from journalban import pipeline as pipeline_module
from journalban.detector import Detector, JailPolicy
from journalban.events import BanDecision, Event
from journalban.grammar import load_grammar
from journalban.ledger import store as store_module
from journalban.ledger.store import Ledger
from journalban.match import JailMatcher
from journalban.pipeline import Pipeline
from journalban.sources.files import Position

NOW = datetime(2026, 4, 3, 13, 11, 30, tzinfo=UTC)
SOURCE = "file:/var/log/nginx/wp-limit-login.log"


@pytest.fixture
def ledger(tmp_path: Path):  # type: ignore[no-untyped-def]
    ledger = Ledger(f"sqlite:///{tmp_path}/ledger.db")
    ledger.upgrade()
    yield ledger
    ledger.close()


def events(*lines: str) -> list[Event]:
    return [Event(time=NOW, source=SOURCE, message=line) for line in lines]


def pipeline(ledger: Ledger, grammar: str, maxretry: int, banned: list[BanDecision]) -> Pipeline:
    matcher = JailMatcher("web", load_grammar(paths.SHIPPED_GRAMMARS / f"{grammar}.grammar"))
    detector = Detector({"web": JailPolicy("web", maxretry, 600, 600)})
    return Pipeline({SOURCE: [matcher]}, detector, ledger, banned.extend)


def test_an_invalid_address_is_skipped_and_counted_never_a_crash(ledger: Ledger) -> None:
    banned: list[BanDecision] = []
    p = pipeline(ledger, "wp-limit-login", 1, banned)
    lines = ["Apr 3 01:11:12 IP locked out by wp-limit-login: 999.1.1.1",
             "Apr 3 01:11:12 IP locked out by wp-limit-login: 203.0.113.9",
             "some unrelated line"]
    p.process(SOURCE, events(*lines), Position(7, 300), NOW)
    assert p.counters["rejected"] == 1
    assert p.counters["events"] == 3
    assert [b.address for b in banned] == ["203.0.113.9"]
    assert ledger.positions() == {SOURCE: Position(7, 300)}


def test_a_12_hour_stamp_counts_at_read_time(ledger: Ledger) -> None:
    """01:11 on the plugin's clock may mean 13:11: the line counts when read, never too old."""
    banned: list[BanDecision] = []
    p = pipeline(ledger, "wp-limit-login", 1, banned)
    p.process(SOURCE, events("Apr 3 01:11:12 IP locked out by wp-limit-login: 203.0.113.9"), None, NOW)
    assert banned[0].start == NOW
    assert ledger.open_failures(NOW - timedelta(days=1)) == []  # consumed by the ban
    assert p.counters["too-old"] == 0


def test_trusted_stamps_older_than_findtime_are_too_old(ledger: Ledger) -> None:
    banned: list[BanDecision] = []
    p = pipeline(ledger, "nginx-wp-login", 1, banned)
    line = '203.0.113.9 - - [03/Apr/2026:12:00:00 +0000] "POST /wp-login.php HTTP/1.1" 200 1234 "-" "curl/8"'
    p.process(SOURCE, events(line), None, NOW)
    assert (p.counters["too-old"], banned) == (1, [])
    fresh = line.replace("12:00:00", "13:10:00")
    p.process(SOURCE, events(fresh), None, NOW)
    assert [b.address for b in banned] == ["203.0.113.9"]
    (failure,) = banned[0].failures
    assert failure.time == datetime(2026, 4, 3, 13, 10, tzinfo=UTC)  # the stamp, not the read time


def test_every_failure_of_a_window_is_linked_to_its_ban_within_and_across_batches(ledger: Ledger) -> None:
    """The detector keeps only times: the ledger still links each failure behind a ban to it,
    whether it came in the banning batch or an earlier one."""
    banned: list[BanDecision] = []
    p = pipeline(ledger, "wp-limit-login", 4, banned)
    line = "Apr 3 01:11:12 IP locked out by wp-limit-login: {}"
    p.process(SOURCE, events(line.format("203.0.113.9")), Position(7, 100), NOW)
    p.process(SOURCE, events(line.format("203.0.113.9"), line.format("198.51.100.7"), line.format("203.0.113.9"),
                             line.format("203.0.113.9"), line.format("203.0.113.9")), Position(7, 200), NOW)
    assert [(b.address, b.failure_count) for b in banned] == [("203.0.113.9", 4)]
    with ledger.engine.connect() as db:
        rows = db.execute(text("SELECT address, ban_id IS NOT NULL FROM failures ORDER BY id")).all()
    # the fifth came after the ban: recorded, already banned, behind no ban
    assert [tuple(r) for r in rows] == [("203.0.113.9", 1), ("203.0.113.9", 1), ("198.51.100.7", 0),
                                        ("203.0.113.9", 1), ("203.0.113.9", 1), ("203.0.113.9", 0)]
    assert [f.address for f in ledger.open_failures(NOW - timedelta(hours=1))] == ["198.51.100.7", "203.0.113.9"]


def test_a_position_alone_waits_for_the_next_record_or_its_delay(ledger: Ledger,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A batch that produced nothing is not a transaction of its own: its position goes
    with the next batch that records something, or once ``POSITION_DELAY`` has passed,
    or at the end; the latest position of each source wins."""
    clock = [1000.0]
    monkeypatch.setattr(pipeline_module.time, "monotonic", lambda: clock[0])
    p = pipeline(ledger, "wp-limit-login", 1, [])
    p.process(SOURCE, events("some unrelated line"), Position(7, 100), NOW)
    p.process(SOURCE, events("another one"), Position(7, 200), NOW)
    assert ledger.positions() == {}
    p.commit_positions(NOW, due_only=True)
    assert ledger.positions() == {}, "not due yet"
    p.process(SOURCE, events("Apr 3 01:11:12 IP locked out by wp-limit-login: 203.0.113.9"), None, NOW)
    assert ledger.positions() == {SOURCE: Position(7, 200)}, "with the next batch that records"

    p.process(SOURCE, events("quiet"), Position(7, 300), NOW)
    clock[0] += pipeline_module.POSITION_DELAY - 0.01
    p.process(SOURCE, events("quiet"), Position(7, 400), NOW)
    assert ledger.positions() == {SOURCE: Position(7, 200)}
    clock[0] += 0.02
    p.process(SOURCE, events("quiet"), Position(7, 500), NOW)
    assert ledger.positions() == {SOURCE: Position(7, 500)}, "once the first of them waited its delay"

    p.process(SOURCE, events("quiet"), Position(7, 600), NOW)
    clock[0] += pipeline_module.POSITION_DELAY
    p.commit_positions(NOW, due_only=True)
    assert ledger.positions() == {SOURCE: Position(7, 600)}, "by the idle daemon"
    p.process(SOURCE, events("quiet"), Position(7, 700), NOW)
    p.commit_positions(NOW)
    assert ledger.positions() == {SOURCE: Position(7, 700)}, "at the end"
    assert count_failures(ledger) == 1


def count_failures(ledger: Ledger) -> int:
    with ledger.engine.connect() as connection:
        return int(connection.execute(text("SELECT count(*) FROM failures")).scalar_one())


LOCKOUT = "Apr 3 01:11:12 IP locked out by wp-limit-login: {}"


def test_a_bursts_batches_are_held_and_recorded_together_their_bans_after(ledger: Ledger,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """While a source has more to hand over at once (a burst), its dense batches wait: up
    to ``HOLD_FAILURES`` failures or ``HOLD_SECONDS``, then one transaction takes them all,
    with the latest position, and only then do their bans go on to the firewall. Failures
    of a window held in several batches are all linked to the ban. A sparse batch goes at
    once, and what was held with it."""
    clock = [1000.0]
    monkeypatch.setattr(pipeline_module.time, "monotonic", lambda: clock[0])
    monkeypatch.setattr(pipeline_module, "HOLD_FAILURES", 6)
    monkeypatch.setattr(pipeline_module, "HOLD_DENSE", 2)
    banned: list[BanDecision] = []
    p = pipeline(ledger, "wp-limit-login", 3, banned)
    commits: list[int] = []
    for engine in (ledger.engine, ledger._burst_engine()):  # the burst's transactions go through the latter
        event.listen(engine, "commit", lambda _connection: commits.append(1))
    p.process(SOURCE, events(LOCKOUT.format("203.0.113.9"), LOCKOUT.format("198.51.100.7")),
              Position(7, 100), NOW, more=True)
    p.process(SOURCE, events(LOCKOUT.format("203.0.113.9"), LOCKOUT.format("203.0.113.9")),
              Position(7, 200), NOW, more=True)
    assert (commits, banned) == ([], [])
    assert (count_failures(ledger), ledger.positions()) == (0, {})
    commits.clear()  # the reads'
    p.process(SOURCE, events(LOCKOUT.format("192.0.2.1"), LOCKOUT.format("192.0.2.2")),
              Position(7, 300), NOW, more=True)
    assert p.recording and banned == [], "released at HOLD_FAILURES, recorded beside the reading"
    p.settle()
    assert len(commits) == 1, "one transaction"
    assert [b.address for b in banned] == ["203.0.113.9"], "the ban handed on after its commit"
    assert (count_failures(ledger), ledger.positions()) == (6, {SOURCE: Position(7, 300)})
    with ledger.engine.connect() as db:
        linked = db.execute(text("SELECT count(*) FROM failures WHERE ban_id IS NOT NULL")).scalar_one()
    assert linked == 3

    p.process(SOURCE, events(LOCKOUT.format("192.0.2.3"), "quiet"), Position(7, 400), NOW, more=True)
    p.commit_positions(NOW, due_only=True)
    assert count_failures(ledger) == 6, "not due yet"
    clock[0] += pipeline_module.HOLD_SECONDS
    p.commit_positions(NOW, due_only=True)
    assert (count_failures(ledger), ledger.positions()) == (7, {SOURCE: Position(7, 400)}), "once it waited"

    p.process(SOURCE, events(LOCKOUT.format("192.0.2.4"), "quiet"), Position(7, 500), NOW, more=True)
    p.process(SOURCE, events(LOCKOUT.format("192.0.2.5")), Position(7, 600), NOW, more=True)  # sparse
    assert (count_failures(ledger), ledger.positions()) == (9, {SOURCE: Position(7, 600)})
    p.process(SOURCE, events(LOCKOUT.format("192.0.2.6"), "quiet"), Position(7, 700), NOW)  # the burst's last
    assert (count_failures(ledger), ledger.positions()) == (10, {SOURCE: Position(7, 700)})


def test_what_the_ledger_refuses_stays_held_with_its_positions(ledger: Ledger,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """A failing ledger raises, as before, but loses nothing: the held failures, bans and
    positions are recorded by the next release that succeeds, no position ahead of them."""
    monkeypatch.setattr(pipeline_module, "RECORD_ATTEMPTS", 1)
    monkeypatch.setattr(pipeline_module, "HOLD_DENSE", 1)
    banned: list[BanDecision] = []
    p = pipeline(ledger, "wp-limit-login", 2, banned)
    p.process(SOURCE, events(LOCKOUT.format("203.0.113.9"), LOCKOUT.format("203.0.113.9")),
              Position(7, 100), NOW, more=True)
    with ledger.engine.begin() as db:  # the disk is full, say
        db.execute(text("CREATE TRIGGER refuse BEFORE INSERT ON failures BEGIN SELECT RAISE(ABORT, 'disk full'); END"))
    with pytest.raises(SQLAlchemyError, match="disk full"):
        p.commit_positions(NOW)
    p.process(SOURCE, events("quiet"), Position(7, 200), NOW, more=True)
    with pytest.raises(SQLAlchemyError, match="disk full"):
        p.commit_positions(NOW)
    assert (count_failures(ledger), ledger.positions(), banned) == (0, {}, [])
    with ledger.engine.begin() as db:
        db.execute(text("DROP TRIGGER refuse"))
    p.commit_positions(NOW)
    assert (count_failures(ledger), ledger.positions()) == (2, {SOURCE: Position(7, 200)})
    assert [b.address for b in banned] == ["203.0.113.9"]
    assert [b.address for b in ledger.active_bans()] == ["203.0.113.9"]


def test_a_burst_writes_through_a_connection_of_its_own_let_go_when_it_ends(ledger: Ledger,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """A burst's transactions go through the ledger's burst connection, whose page cache is
    ``BURST_CACHE_KIB`` (the ledger's other connections keep SQLite's default), and so does
    its last, recorded at once; after it the burst is over and the connection let go."""
    monkeypatch.setattr(pipeline_module, "HOLD_FAILURES", 2)
    monkeypatch.setattr(pipeline_module, "HOLD_DENSE", 2)
    p = pipeline(ledger, "wp-limit-login", 5, [])
    used: list[str] = []
    try:
        p.process(SOURCE, events(LOCKOUT.format("203.0.113.9"), LOCKOUT.format("198.51.100.7")),
                  Position(7, 100), NOW, more=True)
        p.settle()
        burst = ledger._burst
        assert burst is not None and burst is not ledger.engine
        event.listen(burst, "before_cursor_execute", lambda *args: used.append(args[2].split()[0]))
        with burst.connect() as db, ledger.engine.connect() as other:
            assert db.exec_driver_sql("PRAGMA cache_size").scalar() == -store_module.BURST_CACHE_KIB
            assert other.exec_driver_sql("PRAGMA cache_size").scalar() == -2000
        used.clear()
        p.process(SOURCE, events(LOCKOUT.format("192.0.2.1")), Position(7, 200), NOW)  # not dense: at once
        assert ledger._burst is None
        assert "INSERT" in used  # the burst's last transaction went through it
        assert (count_failures(ledger), ledger.positions()) == (3, {SOURCE: Position(7, 200)})
    finally:
        p.close()


def test_a_burst_recorded_in_the_background_hands_on_its_bans_or_its_error(ledger: Ledger,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """A burst's transaction runs in the recorder's thread while the reading goes on. The
    next release waits for it, so transactions commit in reading order; its bans are handed
    on by the thread that reads, once it committed; if the ledger refused it, the error
    comes back there and everything it held is held again, ahead of what came later."""
    monkeypatch.setattr(pipeline_module, "RECORD_ATTEMPTS", 1)
    monkeypatch.setattr(pipeline_module, "HOLD_FAILURES", 2)
    monkeypatch.setattr(pipeline_module, "HOLD_DENSE", 2)
    banned: list[BanDecision] = []
    p = pipeline(ledger, "wp-limit-login", 2, banned)
    woken = threading.Event()
    p.on_recorded = woken.set
    try:
        p.process(SOURCE, events(LOCKOUT.format("203.0.113.9"), LOCKOUT.format("203.0.113.9")),
                  Position(7, 100), NOW, more=True)
        assert woken.wait(10), "told when it ended"
        assert p.recording and p.holds and banned == []
        p.commit_positions(NOW, due_only=True)  # the idle loop's call: collects what ended
        assert (p.recording, [b.address for b in banned]) == (False, ["203.0.113.9"])
        assert (count_failures(ledger), ledger.positions()) == (2, {SOURCE: Position(7, 100)})

        with ledger.engine.begin() as db:  # the disk is full, say
            db.execute(text("CREATE TRIGGER refuse BEFORE INSERT ON failures "
                            "BEGIN SELECT RAISE(ABORT, 'disk full'); END"))
        p.process(SOURCE, events(LOCKOUT.format("192.0.2.1"), LOCKOUT.format("192.0.2.1")),
                  Position(7, 200), NOW, more=True)
        assert p.recording
        with pytest.raises(SQLAlchemyError, match="disk full"):  # the next release waits for it first
            p.process(SOURCE, events(LOCKOUT.format("192.0.2.2")), Position(7, 300), NOW)
        assert not p.recording and p.holds
        assert (count_failures(ledger), ledger.positions(), len(banned)) == (2, {SOURCE: Position(7, 100)}, 1)
        with ledger.engine.begin() as db:
            db.execute(text("DROP TRIGGER refuse"))
        p.commit_positions(NOW)
        assert (count_failures(ledger), ledger.positions()) == (5, {SOURCE: Position(7, 300)})
        assert [b.address for b in banned] == ["203.0.113.9", "192.0.2.1"]
        assert sorted(b.address for b in ledger.active_bans()) == ["192.0.2.1", "203.0.113.9"]
    finally:
        p.close()
