"""FileFollower against real files: appends, rotations, truncation, restarts."""

from __future__ import annotations

import logging
import os
import tracemalloc
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from journalban.sources.files import Chunk, FileFollower, FileWatch, Position


def append(path: Path, data: str | bytes) -> None:
    raw = data.encode() if isinstance(data, str) else data
    with open(path, "ab") as f:
        f.write(raw)


def lines_of(chunks: list[Chunk]) -> list[str]:
    return [line for chunk in chunks for line in chunk.lines]


def drain(follower: FileFollower, polls: int = 50) -> list[str]:
    """Poll a bounded number of times (a slice may hold no complete line)."""
    out: list[str] = []
    for _ in range(polls):
        out += lines_of(follower.poll())
    return out


@contextmanager
def follow(path: Path, start: Position | None = None, **kw: object) -> Iterator[FileFollower]:
    kw.setdefault("first_start", True)
    follower = FileFollower(path, start, **kw)  # type: ignore[arg-type]
    try:
        yield follower
    finally:
        follower.close()


def test_first_start_reads_from_end(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    append(log, "old 1\nold 2\n")
    with follow(log) as f:
        assert f.poll() == []
        assert f.position == Position(log.stat().st_ino, 12)
        append(log, "new 1\n")
        chunks = f.poll()
    assert lines_of(chunks) == ["new 1"]
    assert chunks[0].path == str(log)
    assert chunks[0].position == Position(log.stat().st_ino, 18)


def test_not_first_start_without_position_also_reads_from_end(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    append(log, "history\n")
    with follow(log, first_start=False) as f:
        append(log, "new\n")
        assert lines_of(f.poll()) == ["new"]


def test_first_start_inside_a_line_skips_its_rest(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    append(log, "old\nhalf of a li")
    with follow(log) as f:
        append(log, "ne\nnext\n")
        assert lines_of(f.poll()) == ["next"]
        assert f.position == Position(log.stat().st_ino, log.stat().st_size)


def test_file_created_later_is_read_from_beginning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    log = tmp_path / "x.log"
    caplog.set_level(logging.INFO, logger="journalban.sources.files")
    with follow(log) as f:
        assert f.position is None
        for _ in range(3):
            assert f.poll() == []
        waiting = [r for r in caplog.records if "does not exist" in r.getMessage()]
        assert len(waiting) == 1
        append(log, "first\nsecond\n")
        assert lines_of(f.poll()) == ["first", "second"]


def test_appended_lines_in_order(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    log.touch()
    with follow(log) as f:
        got: list[str] = []
        for i in range(5):
            append(log, f"line {i}a\nline {i}b\n")
            got += lines_of(f.poll())
        assert f.poll() == []
    assert got == [f"line {i}{s}" for i in range(5) for s in "ab"]


def test_partial_line_held_back_until_newline(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    log.touch()
    with follow(log) as f:
        append(log, "done\nhalf")
        chunks = f.poll()
        assert lines_of(chunks) == ["done"]
        assert chunks[-1].position.offset == 5
        append(log, " more")
        assert f.poll() == []
        assert f.position is not None and f.position.offset == 5
        append(log, "\n")
        assert lines_of(f.poll()) == ["half more"]
        assert f.position is not None and f.position.offset == log.stat().st_size


def test_rename_rotation_loses_nothing(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    log.touch()
    with follow(log) as f:
        append(log, "a\n")
        assert lines_of(f.poll()) == ["a"]
        append(log, "b\nc\n")  # after the last poll, before rotation
        log.rename(tmp_path / "x.log.1")
        append(log, "new 1\nnew 2\n")
        chunks = f.poll()
        assert lines_of(chunks) == ["b", "c", "new 1", "new 2"]
        assert chunks[-1].position == Position(log.stat().st_ino, 12)
        append(log, "new 3\n")
        assert lines_of(f.poll()) == ["new 3"]


def test_rename_rotation_waits_while_new_file_is_empty(tmp_path: Path) -> None:
    """Between logrotate's create and the writer's reopen, the old file still grows."""
    log, old = tmp_path / "x.log", tmp_path / "x.log.1"
    log.touch()
    with follow(log) as f:
        log.rename(old)
        log.touch()
        append(old, "late\n")
        assert lines_of(f.poll()) == ["late"]
        append(old, "later\n")
        append(log, "fresh\n")
        assert lines_of(f.poll()) == ["later", "fresh"]


def test_rotation_delivers_unterminated_tail_of_old_file(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    log.touch()
    with follow(log) as f:
        append(log, "whole\ncut off")
        log.rename(tmp_path / "x.log.1")
        append(log, "fresh\n")
        assert lines_of(f.poll()) == ["whole", "cut off", "fresh"]


def test_copytruncate_restarts_at_zero(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    log.touch()
    with follow(log) as f:
        append(log, "a long line before rotation\n")
        assert lines_of(f.poll()) == ["a long line before rotation"]
        inode = log.stat().st_ino
        with open(log, "r+b") as fh:
            fh.truncate(0)
        append(log, "after\n")
        chunks = f.poll()
        assert lines_of(chunks) == ["after"]
        assert chunks[0].position == Position(inode, 6)


def test_delete_and_recreate(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    log.touch()
    with follow(log) as f:
        append(log, "one\n")
        assert lines_of(f.poll()) == ["one"]
        append(log, "two\n")
        log.unlink()
        assert lines_of(f.poll()) == ["two"]
        assert f.poll() == []
        append(log, "three\n")
        assert lines_of(f.poll()) == ["three"]
        assert f.position == Position(log.stat().st_ino, 6)


def test_resume_same_inode_continues_exactly(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    log.touch()
    with follow(log) as f:
        append(log, "1\n2\npart")
        assert lines_of(f.poll()) == ["1", "2"]
        saved = f.position
    assert saved == Position(log.stat().st_ino, 4)
    append(log, "ial\n3\n")  # written while the daemon was down
    with follow(log, saved, first_start=False) as f:
        assert drain(f) == ["partial", "3"]
        append(log, "4\n")
        assert lines_of(f.poll()) == ["4"]


def test_resume_different_inode_reads_from_beginning(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    append(log, "x\n")
    other = tmp_path / "other"
    append(other, "y\n")
    stale = Position(other.stat().st_ino, 2)  # an inode that is not log's
    with follow(log, stale, first_start=False) as f:
        assert lines_of(f.poll()) == ["x"]


def test_resume_shorter_file_reads_from_beginning(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    append(log, "after truncation\n")
    with follow(log, Position(log.stat().st_ino, 1000), first_start=False) as f:
        assert lines_of(f.poll()) == ["after truncation"]


def test_resume_when_file_is_missing_keeps_start(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    start = Position(123456789, 40)
    with follow(log, start, first_start=False) as f:
        assert f.poll() == []
        assert f.position == start
        append(log, "new\n")
        assert lines_of(f.poll()) == ["new"]


def test_overlong_line_is_cut_and_counted(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    log.touch()
    with follow(log, max_line=10, read_size=7) as f:
        append(log, "short\n" + "A" * 25 + "\n" + "B" * 10 + "\nok\n")
        assert drain(f) == ["short", "A" * 10, "B" * 10, "ok"]
        assert f.dropped_lines == 1
        assert f.position == Position(log.stat().st_ino, log.stat().st_size)


def test_huge_line_without_newline_keeps_memory_bounded(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    log.touch()
    with follow(log, max_line=1024, read_size=1 << 16) as f:
        with open(log, "ab") as fh:
            fh.writelines(b"Z" * (1 << 16) for _ in range(128))  # 8 MiB, no newline
        tracemalloc.start()
        try:
            for _ in range(140):
                assert f.poll() == []
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert peak < 1 << 20
        assert f.position == Position(log.stat().st_ino, 0)
        append(log, "\nafter\n")
        assert lines_of(f.poll()) == ["Z" * 1024, "after"]
        assert f.dropped_lines == 1


def test_one_poll_reads_a_bounded_slice(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    log.touch()
    with follow(log, read_size=64) as f:
        append(log, "".join(f"line {i:04d}\n" for i in range(100)))  # 10 bytes each
        first = f.poll()
        assert len(lines_of(first)) == 6
        rest = drain(f)
    assert lines_of(first) + rest == [f"line {i:04d}" for i in range(100)]


def test_invalid_utf8_is_replaced(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    log.touch()
    with follow(log) as f:
        append(log, b"bad \xff\xfe byte\nok\n")
        assert lines_of(f.poll()) == ["bad \ufffd\ufffd byte", "ok"]


def test_missing_directory_does_not_crash(tmp_path: Path) -> None:
    log = tmp_path / "no" / "such" / "dir" / "x.log"
    with follow(log, first_start=False) as f:
        assert f.poll() == []
        log.parent.mkdir(parents=True)
        append(log, "appeared\n")
        assert lines_of(f.poll()) == ["appeared"]


def test_unreadable_path_does_not_crash(tmp_path: Path) -> None:
    (tmp_path / "dir.log").mkdir()
    with follow(tmp_path / "dir.log") as f:
        assert f.poll() == []
        assert f.position is None


def test_follows_through_a_symlink(tmp_path: Path) -> None:
    real = tmp_path / "real.log"
    real.touch()
    link = tmp_path / "link.log"
    link.symlink_to(real)
    with follow(link) as f:
        append(real, "via link\n")
        assert lines_of(f.poll()) == ["via link"]


def test_closed_follower_returns_nothing(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    log.touch()
    f = FileFollower(log, None, first_start=True)
    f.close()
    f.close()
    append(log, "x\n")
    assert f.poll() == []


def test_descriptor_is_not_inherited(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    log.touch()
    with follow(log):
        fds = [int(n) for n in os.listdir("/proc/self/fd")]
        mine = [fd for fd in fds if os.path.realpath(f"/proc/self/fd/{fd}") == str(log)]
        assert mine and not any(os.get_inheritable(fd) for fd in mine)


def test_rotation_drains_a_long_old_file_before_switching(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    log.touch()
    with follow(log, read_size=16) as f:
        append(log, "".join(f"old {i:03d}\n" for i in range(20)))  # 8 bytes each
        log.rename(tmp_path / "x.log.1")
        append(log, "new\n")
        got = drain(f, polls=20)
    assert got == [f"old {i:03d}" for i in range(20)] + ["new"]


def test_behind_says_a_poll_stopped_before_the_end(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    log.touch()
    with follow(log, read_size=64) as f:
        append(log, "".join(f"line {i:04d}\n" for i in range(20)))  # 200 bytes: four slices
        f.poll()
        assert f.behind
        polls = 1
        while f.behind and polls < 10:
            f.poll()
            polls += 1
        assert (f.behind, polls) == (False, 4)


@contextmanager
def watching(*paths: Path) -> Iterator[FileWatch]:
    watch = FileWatch([str(p) for p in paths])
    try:
        assert watch.available
        yield watch
    finally:
        watch.close()


def test_watch_wakes_for_a_write_a_creation_and_a_rotation_of_a_followed_file(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    with watching(log) as watch:
        assert not watch.changed()
        append(log, "created\n")
        assert watch.changed()
        assert not watch.changed()  # drained
        append(log, "written\n")
        assert watch.changed()
        log.rename(tmp_path / "x.log.1")
        assert watch.changed()
        append(tmp_path / "other.log", "not ours\n")
        (tmp_path / "x.log.1").unlink()
        assert not watch.changed()


def test_watch_sees_the_target_of_a_symlink(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    target = tmp_path / "real" / "x.log"
    target.touch()
    link = tmp_path / "x.log"
    link.symlink_to(target)
    with watching(link) as watch:
        append(target, "through the link\n")
        assert watch.changed()


def test_watch_wakes_for_files_a_glob_finds_later_and_not_for_others(tmp_path: Path) -> None:
    watch = FileWatch([], [str(tmp_path / "*access.log"), str(tmp_path / "*" / "deep.log")])
    try:
        assert watch.available
        append(tmp_path / "error.log", "not matched\n")
        append(tmp_path / ".hidden-access.log", "a hidden name: not what the glob expands to\n")
        assert not watch.changed()
        append(tmp_path / "site-access.log", "new file\n")
        assert watch.changed()
    finally:
        watch.close()


def test_watch_of_a_missing_directory_leaves_the_poll(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    watch = FileWatch([str(tmp_path / "nowhere" / "x.log")])
    try:
        assert not watch.available
        assert "polled only" in caplog.text
    finally:
        watch.close()


def test_the_default_limit_is_64_kib_and_a_longer_line_is_cut_and_counted(tmp_path: Path) -> None:
    """The shipped default configuration says 64 KiB; the follower built with it cuts a
    100,000-byte line there, counts it, and reads on with the next line."""
    from journalban.config import parse_config

    shipped = Path(__file__).resolve().parents[2] / "packaging" / "journalban.toml"
    limit = parse_config(shipped.read_text(), shipped).file_max_line
    assert limit == 65536
    log = tmp_path / "x.log"
    log.touch()
    with follow(log, max_line=limit) as f:
        append(log, "A" * 100_000 + "\nafter\n")
        assert drain(f) == ["A" * limit, "after"]
        assert f.dropped_lines == 1


def test_a_file_growing_without_newline_over_many_polls_stays_bounded(tmp_path: Path) -> None:
    """Writes and polls interleaved (as a logging process would): the held back part
    never exceeds the limit, however long the unterminated line grows."""
    log = tmp_path / "x.log"
    log.touch()
    with follow(log, max_line=4096, read_size=1 << 14) as f:
        tracemalloc.start()
        try:
            for _ in range(200):  # 200 x 10,000 bytes, no newline
                append(log, b"Q" * 10_000)
                assert f.poll() == []
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert peak < 256 << 10  # 2 MB written; held: the line's head and one read
        append(log, "\nnext\n")
        assert drain(f) == ["Q" * 4096, "next"]
        assert f.dropped_lines == 1


def test_a_slice_comes_as_one_block_of_whole_lines_ending_at_the_position(tmp_path: Path) -> None:
    """The block is the bytes as written, up to the last newline read; the rest waits."""
    log = tmp_path / "x.log"
    log.touch()
    with follow(log) as f:
        append(log, b"one\r\ntwo \xff\nthree\nhal")
        (chunk,) = f.poll()
        assert chunk.block == b"one\r\ntwo \xff\nthree\n"
        assert chunk.line_count == 3 and chunk.lines == ("one\r", "two \ufffd", "three")
        assert chunk.position == Position(log.stat().st_ino, len(chunk.block))
        append(log, "f\n")
        (chunk,) = f.poll()
        assert chunk.block == b"half\n"


@pytest.mark.parametrize("where", [0, 1, 500])
def test_a_line_of_exactly_the_limit_is_whole_and_one_byte_more_is_cut(tmp_path: Path, where: int) -> None:
    """Among many short lines, in one slice (the block is sliced, not split, when no line is
    too long): the limit's own length passes whole, one byte over is cut and counted."""
    log = tmp_path / "x.log"
    log.touch()
    short = [f"line {i}" for i in range(1000)]
    for long in ("L" * 100, "M" * 101):
        with follow(log, max_line=100) as f:
            lines = [*short[:where], long, *short[where:]]
            append(log, "".join(f"{line}\n" for line in lines))
            got = drain(f)
            assert got == [*short[:where], long[:100], *short[where:]]
            assert f.dropped_lines == (len(long) > 100)
            assert f.position == Position(log.stat().st_ino, log.stat().st_size)


def test_the_unterminated_tail_of_a_rotated_file_comes_with_a_newline(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    log.touch()
    with follow(log) as f:
        append(log, "done\nno end")
        assert lines_of(f.poll()) == ["done"]
        log.rename(tmp_path / "x.log.1")
        append(log, "new\n")
        chunks = f.poll()
    assert [c.block for c in chunks] == [b"no end\n", b"new\n"]
