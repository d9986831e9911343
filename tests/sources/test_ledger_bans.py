"""Bans as events for the jails that read them: what the feed hands over, what the
pipeline does with it, and how the config asks for it."""

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from journalban.detector import Detector, JailPolicy
from journalban.events import BanDecision, Event, Failure
from journalban.grammar import load_grammars
from journalban.intake import file_source
from journalban.ledger.store import Ledger
from journalban.loading import LoadError, load
from journalban.match import JailMatcher
from journalban.paths import SHIPPED_GRAMMARS
from journalban.pipeline import Pipeline
from journalban.sources.ledger_bans import LEDGER, ban_event, ban_events

T0 = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
GRAMMARS, _ = load_grammars([SHIPPED_GRAMMARS])
LOG = file_source("/var/log/auth.log")


def ban(jail: str, address: str, start: datetime = T0) -> BanDecision:
    failure = Failure(jail, address, start, "g/r", "Failed password for root", "test")
    return BanDecision(jail, address, start, start + timedelta(seconds=1), "1 failure in 600s: x", (failure,))


def test_a_ban_is_its_line_stamped_with_its_start() -> None:
    event = ban_event(ban("sshd", "203.0.113.9"))
    assert event == Event(T0, LEDGER, "ban sshd 203.0.113.9 until 2030-01-02T03:04:06+00:00: 1 failure in 600s: x")
    assert GRAMMARS["recidive"].applies_to(event)
    assert not GRAMMARS["sshd"].applies_to(event)


def test_readers_never_get_their_own_bans_nor_another_readers() -> None:
    bans = [ban("sshd", "203.0.113.9"), ban("recidive", "203.0.113.9"), ban("recidive-long", "203.0.113.9")]
    assert [e.message.split()[1] for e in ban_events(bans, {"recidive", "recidive-long"})] == ["sshd"]


def sshd_event(address: str, at: datetime) -> Event:
    return Event(at, LOG, f"Failed password for root from {address} port 22 ssh2", app="sshd")


def test_the_third_ban_within_findtime_bans_in_the_reading_jail_in_the_same_batch(tmp_path: Path) -> None:
    ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}", node="web1")
    ledger.upgrade()
    detector = Detector({"sshd": JailPolicy("sshd", 1, 600, 1),
                         "recidive": JailPolicy("recidive", 3, 86400, 7 * 86400)})
    matchers = {LOG: [JailMatcher("sshd", GRAMMARS["sshd"])], LEDGER: [JailMatcher("recidive", GRAMMARS["recidive"])]}
    announced: list[list[BanDecision]] = []
    pipeline = Pipeline(matchers, detector, ledger, announced.append)
    try:
        decided = []
        for step, address in enumerate(["203.0.113.9", "198.51.100.4", "203.0.113.9", "203.0.113.9"]):
            now = T0 + timedelta(seconds=2 * step)  # each sshd ban (1 s) is over before the next failure
            decided.append([(b.jail, b.address) for b in pipeline.process(LOG, [sshd_event(address, now)], None, now)])
        assert decided == [[("sshd", "203.0.113.9")], [("sshd", "198.51.100.4")], [("sshd", "203.0.113.9")],
                           [("sshd", "203.0.113.9"), ("recidive", "203.0.113.9")]]
        recidive = announced[-1][-1]
        assert recidive.reason.startswith("3 failures in 86400s: ban sshd 203.0.113.9 until ")
        assert recidive.expiry - recidive.start == timedelta(days=7)
        assert {(b.jail, b.address) for b in ledger.active_bans()} >= {("recidive", "203.0.113.9")}
        assert pipeline.counters["banned"] == 5  # four sshd bans and one recidive ban, fed nothing back
    finally:
        ledger.close()


CONFIG = """
[control]
socket = "{tmp}/control.sock"
[ledger]
url = "sqlite:///{tmp}/ledger.db"
[jails.recidive]
grammar = "{grammar}"
firewall = "dry-run"
{extra}
"""


def loaded(tmp_path: Path, grammar: str, extra: str) -> str | list[str]:
    path = tmp_path / "journalban.toml"
    path.write_text(CONFIG.format(tmp=tmp_path, grammar=grammar, extra=extra))
    try:
        jail = load(path).config.jails["recidive"]
    except LoadError as exc:
        return exc.problems
    return f"journal={jail.journal} ledger_bans={jail.ledger_bans}"


def test_a_ledger_jail_reads_no_journal_by_default(tmp_path: Path) -> None:
    assert loaded(tmp_path, "recidive", "ledger_bans = true") == "journal=False ledger_bans=True"


@pytest.mark.parametrize(("grammar", "extra", "where", "message"), [
    ("sshd", "ledger_bans = true", ":9:1:", "grammar 'sshd' has no 'applies ledger' line"),
    ("recidive", "", ":6:1:", "reads nothing: give it files, journal = true, syslog = true or ledger_bans = true"),
])
def test_config_problems(tmp_path: Path, grammar: str, extra: str, where: str, message: str) -> None:
    problems = loaded(tmp_path, grammar, extra)
    assert isinstance(problems, list) and len(problems) == 1
    assert f"{tmp_path / 'journalban.toml'}{where} " in problems[0] and message in problems[0], problems


def test_bans_from_the_fleets_failures_are_fed_too(tmp_path: Path) -> None:
    """A fleet-scoped jail's ban decided here from other hosts' failures counts like any other."""
    ledger = Ledger(f"sqlite:///{tmp_path / 'ledger.db'}", node="web1")
    ledger.upgrade()
    detector = Detector({"sshd": JailPolicy("sshd", 1, 600, 1), "recidive": JailPolicy("recidive", 1, 86400, 60)})
    pipeline = Pipeline({LEDGER: [JailMatcher("recidive", GRAMMARS["recidive"])]}, detector, ledger, lambda bans: None)
    try:
        elsewhere = Failure("sshd", "203.0.113.9", T0, "sshd/failed", "Failed password for root", "file:web2")
        bans = pipeline.observe_fleet([elsewhere], T0)
        assert [(b.jail, b.address) for b in bans] == [("sshd", "203.0.113.9"), ("recidive", "203.0.113.9")]
        rows = sqlite3.connect(tmp_path / "ledger.db").execute(
            "SELECT jail, source, ban_id IS NOT NULL FROM failures ORDER BY id").fetchall()
        assert rows == [("recidive", "ledger", 1)]  # the other host recorded its own failure
        assert {(b.jail, b.address) for b in ledger.active_bans()} == {("sshd", "203.0.113.9"),
                                                                       ("recidive", "203.0.113.9")}
    finally:
        ledger.close()
