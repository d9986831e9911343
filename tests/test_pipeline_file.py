"""A followed file through the daemon's file path (follower, block scanner, pipeline, ledger),
against what ``journalban replay`` predicts for the same lines."""

import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import text

from journalban import paths
from journalban.detector import Detector, JailPolicy
from journalban.grammar import Grammar, load_grammar
from journalban.grammar.scan import ENGINE_ENV, ENGINES, build_scanner
from journalban.intake import FollowedFile, file_source
from journalban.ledger.store import Ledger
from journalban.match import JailMatcher
from journalban.pipeline import Pipeline
from journalban.replay import ReplayOptions, replay_file
from journalban.sources.files import FileFollower, Position

CORPUS = Path("/work/shared/bench/corpus.py")
START = 1_764_126_000  # the corpus's first stamp (UTC here, as the host's zone is)
SPAN = 60
NOW = datetime.fromtimestamp(START + SPAN + 1, UTC)  # the daemon reads it all just after the last line
MAXRETRY, FINDTIME, BANTIME = 5, 600, 600


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[Ledger]:
    ledger = Ledger(f"sqlite:///{tmp_path}/ledger.db", node="test")
    ledger.upgrade()
    yield ledger
    ledger.close()


def sshd() -> Grammar:
    return load_grammar(paths.SHIPPED_GRAMMARS / "sshd.grammar")


def read_through(path: Path, grammar: Grammar, ledger: Ledger, read_size: int = 1 << 16,
                 jails: dict[str, Grammar] | None = None) -> FollowedFile:
    """Everything in ``path`` through the daemon's file path, a slice per batch, at ``NOW``,
    by jail "sshd" reading ``grammar`` (or by ``jails``)."""
    jails = jails or {"sshd": grammar}
    source = file_source(str(path))
    pipeline = Pipeline({source: [JailMatcher(name, g) for name, g in jails.items()]},
                        Detector({name: JailPolicy(name, MAXRETRY, FINDTIME, BANTIME) for name in jails}), ledger,
                        lambda bans: None)
    follower = FileFollower(path, Position(path.stat().st_ino, 0), first_start=False, read_size=read_size)
    followed = FollowedFile(str(path), follower, list(jails.values()))
    while True:
        for chunk in follower.poll():
            pipeline.process(followed.source, followed.events(chunk.block, NOW), chunk.position, NOW)
        if not follower.behind:
            pipeline.commit_positions(NOW)  # as the daemon does once idle, and at its stop
            return followed


def count(ledger: Ledger, query: str) -> int:
    with ledger.engine.connect() as connection:
        return int(connection.execute(text(query)).scalar_one())


@pytest.mark.parametrize("engine", ENGINES)
def test_the_daemon_bans_what_the_replay_predicts_on_a_small_corpus(tmp_path: Path, ledger: Ledger, engine: str,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """The bench's correctness check, small: every ban the replay predicts, none more, and
    every failure in the ledger, whichever scanner picks the lines."""
    monkeypatch.setenv(ENGINE_ENV, engine)
    log = tmp_path / "auth.log"
    made = subprocess.run([sys.executable, str(CORPUS), "sshd", "30000", "--sources", "400", "--start", str(START),
                           "--span", str(SPAN)], capture_output=True, check=True)
    log.write_bytes(made.stdout)
    grammar = sshd()
    with log.open("rb") as stream:
        predicted = replay_file(stream, grammar, "syslog", file_source(str(log)),
                                ReplayOptions(maxretry=MAXRETRY, findtime=FINDTIME, bantime=BANTIME, read_time=NOW),
                                build_scanner(grammar, engine))
    followed = read_through(log, grammar, ledger)
    assert followed.lines == predicted.lines == 30_000
    with ledger.engine.connect() as connection:
        banned = {row[0] for row in connection.execute(text("SELECT address FROM bans"))}
    assert banned == {ban.address for ban in predicted.bans}
    assert len(banned) > 10
    assert count(ledger, "SELECT count(*) FROM failures") == sum(predicted.matched.values())
    assert count(ledger, "SELECT count(*) FROM failures WHERE ban_id IS NULL") < \
        count(ledger, "SELECT count(*) FROM failures") / 2  # the windows behind the bans are linked to them
    assert ledger.positions() == {file_source(str(log)): Position(log.stat().st_ino, log.stat().st_size)}


def test_a_block_with_no_line_worth_reading_still_moves_the_position(tmp_path: Path, ledger: Ledger) -> None:
    """Lines no rule can match are never decoded, but the position recorded is the end of
    the last line read all the same, so a restart does not read them again."""
    log = tmp_path / "auth.log"
    noise = "Nov 26 03:00:00 web1 sshd[7]: Connection closed by 10.0.0.5 port 22 [preauth]\n"
    other = "Nov 26 03:00:00 web1 cron[1]: (root) CMD (true)\n"
    log.write_text(noise * 1000 + other + "half a line")
    followed = read_through(log, sshd(), ledger)
    assert followed.lines == 1001
    assert count(ledger, "SELECT count(*) FROM failures") == 0
    assert ledger.positions() == {file_source(str(log)): Position(log.stat().st_ino, len(noise) * 1000 + len(other))}


def test_failures_among_noise_are_found_at_any_slice_size(tmp_path: Path, ledger: Ledger) -> None:
    """Lines cut across reads, and a line longer than the follower keeps, do not hide or
    invent failures: each failure is counted once, whatever the slices."""
    log = tmp_path / "auth.log"
    stamp = (NOW - timedelta(seconds=30)).strftime("%b %e %H:%M:%S")
    lines = []
    for n in range(200):
        lines.append(f"{stamp} web1 sshd[{n}]: Failed password for root from 198.51.100.{n % 40 + 1} port {n} ssh2\n")
        lines.append(f"{stamp} web1 sshd[{n}]: Connection closed by 10.0.0.{n % 200} port {n} [preauth]\n")
        if n == 100:
            lines.append(f"{stamp} web1 sshd[{n}]: " + "x" * 20_000 + "\n")  # cut at max_line, no failure
    log.write_text("".join(lines))
    for read_size in (97, 4096, 1 << 20):
        fresh = Ledger(f"sqlite:///{tmp_path}/ledger-{read_size}.db", node="test")
        fresh.upgrade()
        try:
            read_through(log, sshd(), fresh, read_size)
            assert count(fresh, "SELECT count(*) FROM failures") == 200, read_size
            assert count(fresh, "SELECT count(DISTINCT text) FROM failures") == 200
            assert count(fresh, "SELECT count(*) FROM bans") == 40  # five failures each
        finally:
            fresh.close()



def test_a_file_two_jails_read_gives_each_what_it_gets_alone(tmp_path: Path) -> None:
    """The lines either grammar's scanner flags reach both jails: each counts what it counts
    when it reads the file alone (the aggressive grammar matches probes the other does not)."""
    log = tmp_path / "auth.log"
    made = subprocess.run([sys.executable, str(CORPUS), "sshd", "20000", "--start", str(START), "--span", str(SPAN)],
                          capture_output=True, check=True)
    log.write_bytes(made.stdout)
    grammars = {"sshd": sshd(), "aggressive": load_grammar(paths.SHIPPED_GRAMMARS / "sshd-aggressive.grammar")}
    counts: dict[str, int] = {}
    for name, grammar in grammars.items():
        alone = Ledger(f"sqlite:///{tmp_path}/{name}.db", node="test")
        alone.upgrade()
        try:
            read_through(log, grammar, alone, jails={name: grammar})
            counts[name] = count(alone, "SELECT count(*) FROM failures")
        finally:
            alone.close()
    both = Ledger(f"sqlite:///{tmp_path}/both.db", node="test")
    both.upgrade()
    try:
        read_through(log, grammars["sshd"], both, jails=grammars)
        for name in grammars:
            assert count(both, f"SELECT count(*) FROM failures WHERE jail = '{name}'") == counts[name] > 0
    finally:
        both.close()


def test_a_raw_file_with_crlf_lines_gives_the_failures_the_replay_finds(tmp_path: Path, ledger: Ledger) -> None:
    """Lines reach the rules without their \\r in the daemon as in the replay, so rules
    anchored at the end match CRLF files alike."""
    made = subprocess.run([sys.executable, str(CORPUS), "nginx", "3000", "--start", str(START), "--span", str(SPAN)],
                          capture_output=True, check=True)
    log = tmp_path / "access.log"
    log.write_bytes(made.stdout.replace(b"\n", b"\r\n"))
    grammar = load_grammar(paths.SHIPPED_GRAMMARS / "nginx-wp-login.grammar")
    with log.open("rb") as stream:
        predicted = replay_file(stream, grammar, "raw", file_source(str(log)),
                                ReplayOptions(maxretry=MAXRETRY, findtime=FINDTIME, bantime=BANTIME, read_time=NOW),
                                build_scanner(grammar, "lines"))
    read_through(log, grammar, ledger)
    assert sum(predicted.matched.values()) > 100
    assert count(ledger, "SELECT count(*) FROM failures") == sum(predicted.matched.values())
