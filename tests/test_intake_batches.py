"""A file that is behind goes to the ledger in a few large batches, each one transaction with
the position after its last line: bounded, and every failure recorded exactly once.

The daemon's intake runs in-process on a real file and a real SQLite ledger.
"""

import asyncio
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from journalban import intake
from journalban.daemon import Daemon
from journalban.loading import load
from journalban.sources.files import Position

FAILURE = "Apr 3 01:11:12 IP locked out by wp-limit-login: 10.0.0.{}\n"
NOISE = "Apr 3 01:11:12 a line no rule of the grammar looks at, {:08d}\n"
SLICE = 1 << 20  # the follower's read size


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    log = tmp_path / "wp.log"
    log.touch()
    config = tmp_path / "journalban.toml"
    config.write_text(f"""
[control]
socket = "{tmp_path}/control.sock"
[ledger]
url = "sqlite:///{tmp_path}/ledger.db"
[jails.wp]
grammar = "wp-limit-login"
files = ["{log}"]
maxretry = 1000
firewall = "dry-run"
""")
    loaded = load(config)
    running = Daemon(loaded.config, loaded.grammars)
    running.ledger.prepare()
    asyncio.run(running.intake.open())
    yield running
    asyncio.run(running.intake.close())
    running.ledger.close()


def write_behind(path: Path, failures: int, size: int) -> None:
    """``failures`` failures spread evenly over ``size`` bytes of lines, in one write."""
    noise_lines = size // len(NOISE.format(0))
    every = noise_lines // failures
    lines = []
    for n in range(noise_lines):
        lines.append(NOISE.format(n))
        if n % every == every - 1 and n // every < failures:
            lines.append(FAILURE.format(n // every))
    path.write_text("".join(lines))


def read_all(running: Daemon) -> list[Position]:
    """Poll until the file is read; the position each batch was recorded with."""
    positions: list[Position] = []
    process = running.pipeline.process

    def counted(source, events, position, now, more=False):  # type: ignore[no-untyped-def]
        positions.append(position)
        return process(source, events, position, now, more=more)

    running.pipeline.process = counted  # type: ignore[method-assign]
    running.intake.poll_files()
    while any(f.follower.behind for f in running.intake.files):
        running.intake.poll_files()
    return positions


def ledger_rows(running: Daemon, sql: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(running.config.ledger_url.removeprefix("sqlite:///")) as db:
        return db.execute(sql).fetchall()


def test_a_behind_file_goes_in_one_batch_with_the_position_after_its_last_line(
        daemon: Daemon, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(intake, "MERGE_SECONDS", 60.0)  # a loaded machine must not cut it here
    log = tmp_path / "wp.log"
    write_behind(log, 12, 3 * SLICE + SLICE // 2)
    positions = read_all(daemon)
    assert positions == [Position(log.stat().st_ino, log.stat().st_size)]  # four slices, one transaction
    assert ledger_rows(daemon, "SELECT address, count(*) FROM failures GROUP BY address ORDER BY address") == \
        sorted((f"10.0.0.{n}", 1) for n in range(12))
    assert ledger_rows(daemon, 'SELECT "offset" FROM source_positions') == [(log.stat().st_size,)]


def test_a_batch_ends_at_its_bound_and_each_line_still_counts_once(
        daemon: Daemon, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(intake, "MERGE_SECONDS", 60.0)
    monkeypatch.setattr(intake, "MERGE_EVENTS", 3)  # about 3 failures a slice: a batch ends after a slice or two
    log = tmp_path / "wp.log"
    write_behind(log, 12, 4 * SLICE - 4096)
    positions = read_all(daemon)
    offsets = [p.offset for p in positions]
    assert 2 <= len(positions) <= 4  # each batch but the last holds 3 failures or more
    assert offsets == sorted(offsets) and offsets[-1] == log.stat().st_size
    assert ledger_rows(daemon, "SELECT count(*), count(DISTINCT address) FROM failures") == [(12, 12)]
    assert ledger_rows(daemon, 'SELECT "offset" FROM source_positions') == [(log.stat().st_size,)]
