"""File sources written as globs: every matching file followed on its own, files that
appear later picked up at the next rescan, each with its own position in the ledger.

The daemon runs in-process with the dry-run firewall, on real files and a real SQLite ledger.
"""

import asyncio
import sqlite3
from pathlib import Path

from journalban.daemon import Daemon
from journalban.loading import load
from journalban.sources.globs import expand, glob_matches, is_glob

LOCKOUT = "Apr 3 01:11:12 IP locked out by wp-limit-login: {}\n"


def write_config(tmp_path: Path, glob: str = "sites/*/wp.log", named: str = "sites/a/wp.log") -> Path:
    """Jail ``sites`` follows the glob, jail ``first`` the file named in full."""
    config = tmp_path / "journalban.toml"
    config.write_text(f"""
[control]
socket = "{tmp_path}/control.sock"
[ledger]
url = "sqlite:///{tmp_path}/ledger.db"
[sources.files]
poll_interval = 0.02
rescan_interval = 0.05
[jails.sites]
grammar = "wp-limit-login"
files = ["{tmp_path}/{glob}"]
maxretry = 100
firewall = "dry-run"
[jails.first]
grammar = "wp-limit-login"
files = ["{tmp_path}/{named}"]
maxretry = 100
firewall = "dry-run"
""")
    return config


def append(path: Path, *addresses: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        f.write("".join(LOCKOUT.format(address) for address in addresses))


def ledger_rows(tmp_path: Path, sql: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(tmp_path / "ledger.db") as db:
        return db.execute(sql).fetchall()


async def until(condition, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.02)


def test_a_glob_follows_two_files_and_a_third_created_later_each_with_its_position(tmp_path: Path) -> None:
    sites = tmp_path / "sites"
    a, b, c = (sites / name / "wp.log" for name in ("a", "b", "c"))
    append(a, "198.51.100.1")  # history before the first start: read past
    append(b, "198.51.100.2")
    append(sites / "b" / "other.log", "198.51.100.3")  # not matched by the glob
    config = write_config(tmp_path)

    def failures() -> list[tuple[object, ...]]:
        return ledger_rows(tmp_path, "SELECT jail, address, source FROM failures ORDER BY id")

    async def first_run() -> None:
        daemon = Daemon(load(config).config, load(config).grammars)
        task = asyncio.create_task(daemon.run())
        await until(lambda: len(daemon.intake.files) == 2)
        assert sorted(f.follower.path for f in daemon.intake.files) == [str(a), str(b)]
        append(a, "203.0.113.1")
        append(b, "203.0.113.2")
        append(c, "203.0.113.3", "203.0.113.4")  # created while running: read from its start
        await until(lambda: len(failures()) == 5)
        daemon.stop()
        await task

    async def second_run() -> None:
        daemon = Daemon(load(config).config, load(config).grammars)
        task = asyncio.create_task(daemon.run())
        await until(lambda: len(daemon.intake.files) == 3)
        append(a, "203.0.113.5")  # each file resumes at its own position: nothing read twice
        append(c, "203.0.113.6")
        await until(lambda: len(failures()) == 8)
        daemon.stop()
        await task

    asyncio.run(first_run())
    sources = [(f"file:{a}", a), (f"file:{b}", b), (f"file:{c}", c)]
    assert ledger_rows(tmp_path, 'SELECT source, inode, "offset" FROM source_positions ORDER BY source') == [
        (source, path.stat().st_ino, path.stat().st_size) for source, path in sources]
    asyncio.run(second_run())
    assert failures() == [
        ("first", "203.0.113.1", f"file:{a}"), ("sites", "203.0.113.1", f"file:{a}"),  # named and globbed: both jails
        ("sites", "203.0.113.2", f"file:{b}"),
        ("sites", "203.0.113.3", f"file:{c}"), ("sites", "203.0.113.4", f"file:{c}"),
        ("first", "203.0.113.5", f"file:{a}"), ("sites", "203.0.113.5", f"file:{a}"),
        ("sites", "203.0.113.6", f"file:{c}"),
    ]


def test_a_file_renamed_into_the_glob_is_not_read_again(tmp_path: Path) -> None:
    """``wp.log`` rotated to ``wp.log.1`` under a ``wp.log*`` glob: its follower keeps reading
    the old file, so the new name is followed from its end, not from its start."""
    log = tmp_path / "wp.log"
    config = write_config(tmp_path, glob="wp.log*", named="wp.log")
    append(log)

    async def run() -> None:
        daemon = Daemon(load(config).config, load(config).grammars)
        task = asyncio.create_task(daemon.run())
        await until(lambda: len(daemon.intake.files) == 1)
        append(log, "203.0.113.1")
        await until(lambda: daemon.pipeline.counters["counted"] == 2)  # jails first and sites
        log.rename(tmp_path / "wp.log.1")
        await until(lambda: len(daemon.intake.files) == 2)
        append(log, "203.0.113.2")  # the writer's new file
        await until(lambda: daemon.pipeline.counters["counted"] == 4)
        await asyncio.sleep(0.3)  # several rescans and polls: nothing more comes
        daemon.stop()
        await task

    asyncio.run(run())
    assert ledger_rows(tmp_path, "SELECT jail, address FROM failures ORDER BY id") == [
        ("first", "203.0.113.1"), ("sites", "203.0.113.1"), ("first", "203.0.113.2"), ("sites", "203.0.113.2")]


def test_glob_matching_is_the_shells(tmp_path: Path) -> None:
    for name in ("a-access.log", "b-access.log", ".hidden-access.log", "access.log.1"):
        (tmp_path / name).write_text("")
    (tmp_path / "dir-access.log").mkdir()
    pattern = f"{tmp_path}/*access.log"
    assert is_glob(pattern) and not is_glob(str(tmp_path / "access.log"))
    assert expand(pattern) == [str(tmp_path / "a-access.log"), str(tmp_path / "b-access.log")]
    assert glob_matches(pattern, str(tmp_path / "c-access.log"))  # found later, no disk needed
    assert not glob_matches(pattern, str(tmp_path / ".hidden-access.log"))
    assert not glob_matches(pattern, str(tmp_path / "sub" / "x-access.log"))  # * stays in its directory
    assert glob_matches(f"{tmp_path}/[ab]-*.log", str(tmp_path / "b-access.log"))
