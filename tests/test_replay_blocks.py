"""The fast path of ``journalban replay`` (``journalban.replay_blocks``) gives exactly the
exact path's summary: the same counts per rule, the same lines missed, the same bans
with the same failures, whether the file is read in one process or in many shares.

The inputs: every shipped grammar's examples with lines the fast path must hand to the
exact path (non-ASCII, \\x1c-\\x1f, CRLF, IPv6, IPv4-mapped, over-long, no final
newline), the benchmark corpora, and fail2ban's own sample logs where installed.
"""

import os
from datetime import UTC, datetime, timedelta
from functools import cache
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from journalban import replay_blocks
from journalban.grammar import Grammar, load_grammar
from journalban.grammar.grammar import normalise_address
from journalban.grammar.scan import build_scanner
from journalban.replay import ReplayOptions, ReplaySummary, replay_file
from journalban.replay_blocks import BlockDecider, shares
from journalban.sources.syslog.rfc3164 import parse_traditional_stamp
from journalban.windows import window_key
from tests.corpora import corpus, mixed

ROOT = Path(__file__).resolve().parents[1]
GRAMMARS = ROOT / "grammars"
SHIPPED = sorted(GRAMMARS.glob("*.grammar"))
FAIL2BAN_LOGS = Path("/usr/lib/python3/dist-packages/fail2ban/tests/files/logs")
READ_TIME = datetime(2026, 11, 26, tzinfo=UTC)


def file_format(grammar: Grammar) -> str:
    return grammar.file_format if grammar.file_format in ("raw", "syslog") else "raw"


def header(grammar: Grammar, n: int = 0) -> str:
    if file_format(grammar) != "syslog":
        return ""
    return f"Nov 14 22:{n // 60 % 60:02d}:{n % 60:02d} web1 {sorted(grammar.syslog_apps)[0]}[{100 + n}]: "


def replayed(grammar: Grammar, path: Path, fast: bool, workers: int = 1) -> ReplaySummary:
    options = ReplayOptions(maxretry=2, findtime=3600, read_time=READ_TIME, workers=workers)
    with path.open("rb") as stream:
        return replay_file(stream, grammar, file_format(grammar), "file:test", options,
                           None if fast else build_scanner(grammar, "lines"))


def comparable(summary: ReplaySummary) -> dict[str, Any]:
    out = summary.as_json()
    del out["seconds"], out["lines_per_second"]
    out["decisions"] = summary.bans  # whole BanDecisions: reasons, failures and captures
    return out


def assert_fast_equals_exact(grammar: Grammar, path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    assert BlockDecider.build(grammar, file_format(grammar), "file:test", READ_TIME) is not None
    exact = comparable(replayed(grammar, path, fast=False))
    shares_read: list[int] = []
    share = BlockDecider.share

    def spied(*args: Any) -> Any:
        shares_read.append(args[2])
        return share(*args)

    monkeypatch.setattr(BlockDecider, "share", spied)
    assert comparable(replayed(grammar, path, fast=True)) == exact
    assert shares_read == [0], "the fast path read the file"
    monkeypatch.setattr(replay_blocks, "SHARE_MIN", max(1, path.stat().st_size // 7))  # several shares
    assert comparable(replayed(grammar, path, fast=True, workers=3)) == exact
    return exact


def awkward_lines(grammar: Grammar) -> list[bytes]:
    """Lines the fast path must hand to the exact path, around the examples' text."""
    out: list[bytes] = []
    for n, example in enumerate(grammar.examples):
        text = header(grammar, n).encode() + example.text.encode()
        out += [
            text + b"\r",
            text.replace(b" ", b" \x1c", 1),
            text + "\u00e9".encode(),
            text.replace(b"203.0.113.", b"2001:db8::"),
            text.replace(b"203.0.113.", b"::ffff:198.51.100."),
            text.replace(b"203.0.113.", b"203.0.113.0"),
            text + b" " + b"x" * 20_000,
        ]
        if file_format(grammar) == "syslog":  # a rule's text, but from an app the grammar does not read
            out.append(text.replace(f" {sorted(grammar.syslog_apps)[0]}[".encode(), b" unread-app[", 1))
    return out


@pytest.fixture(scope="module")
def mixed_corpus() -> bytes:
    return mixed()


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_every_shipped_grammar_gives_the_same_summary_on_both_paths(
        path: Path, mixed_corpus: bytes, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    grammar = load_grammar(path)
    examples = [header(grammar, n).encode() + example.text.encode() for n, example in enumerate(grammar.examples)]
    log = tmp_path / "mixed.log"
    log.write_bytes(b"\n".join(examples * 3 + awkward_lines(grammar)) + b"\n" + mixed_corpus
                    + b"\n".join(examples))  # no final newline
    summary = assert_fast_equals_exact(grammar, log, monkeypatch)
    if grammar.source_kind not in ("journal", "ledger"):
        assert summary["matched"] > 0


@pytest.mark.parametrize(("grammar_name", "kind"), [
    ("sshd", "sshd"), ("nginx-wp-login", "nginx"), ("wp-limit-login", "wplimit"),
])
def test_benchmark_corpora_give_the_same_summary_and_bans(
        grammar_name: str, kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = tmp_path / f"{kind}.log"
    log.write_bytes(corpus(kind, 30000))
    summary = assert_fast_equals_exact(load_grammar(GRAMMARS / f"{grammar_name}.grammar"), log, monkeypatch)
    assert summary["matched"] > 1000 and summary["bans"]


def test_stamps_around_the_latest_moment_and_at_year_ends_decide_the_same(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The lane adds a line's second to its minute's start: every second either side of the
    latest moment a stamp may name (a day after reading, local time), the year's turns,
    Feb 29 and a 60th second must read as the exact path reads them."""
    latest = (READ_TIME + timedelta(days=1)).astimezone()  # the stamps are local, as the paths read them
    moments = [latest + timedelta(seconds=n) for n in range(-150, 150)]
    stamps = [m.strftime("%b %e %H:%M:%S") for m in moments]
    stamps += [f"{day} {time}" for day in ("Dec 31", "Jan  1", "Feb 29", "Feb 28", "Mar  1")
               for time in ("00:00:00", "12:30:45", "23:59:59", "23:59:60")]
    lines = [f"{stamp} web1 sshd[{n}]: Failed password for root from 198.51.100.{n % 7} port 22 ssh2"
             for n, stamp in enumerate(stamps * 2)]
    log = tmp_path / "stamps.log"
    log.write_text("\n".join(lines) + "\n")
    grammar = load_grammar(GRAMMARS / "sshd.grammar")
    decider = BlockDecider.build(grammar, "syslog", "file:test", READ_TIME)
    assert decider is not None
    data = log.read_bytes()
    # small blocks: each one's minutes are worked out afresh
    result = decider.share(lambda offset, size: data[offset:offset + size], 0, len(data), block=2048)
    assert len(result.times) > len(lines) // 2 and decider._stamp_seconds.whole_minutes
    for when, start in zip(result.times, result.starts, strict=True):  # each failure's own time, not just the bans'
        stamp = data[start:start + 15].decode()
        parsed = parse_traditional_stamp(stamp, 0, READ_TIME, None)
        assert parsed is not None and parsed[0].timestamp() == when, stamp
    summary = assert_fast_equals_exact(grammar, log, monkeypatch)
    assert summary["matched"] > len(lines) // 2 and summary["bans"]


@cache
def sshd_decider() -> BlockDecider:
    decider = BlockDecider.build(load_grammar(GRAMMARS / "sshd.grammar"), "syslog", "file:test", READ_TIME)
    assert decider is not None
    return decider


@given(st.one_of(
    st.tuples(*[st.integers(0, 300)] * 4).map(lambda q: ".".join(map(str, q))),
    st.from_regex(r"\A[0-9.x]{1,16}\Z"),  # short forms, leading zeros, hex: inet_aton reads them all
    st.ip_addresses().map(str),
    st.ip_addresses(v=4).map(lambda a: f"::ffff:{a}"),
))
@settings(max_examples=2000, deadline=None)
def test_an_address_reads_as_normalise_address_and_window_key_read_it(text: str) -> None:
    decider = sshd_decider()
    normalised = normalise_address(text)
    expected = None if normalised is None else (normalised, window_key(normalised))
    assert decider._address(text.encode()) == expected
    assert decider._addresses.get(text.encode()) == expected


def test_a_block_of_addresses_reads_as_each_one_alone() -> None:
    texts = ["203.0.113.7", "0.0.0.0", "255.255.255.255", "256.1.1.1", "010.1.1.1", "1.2.3", "1.2.3.4.5",
             "2001:db8::1", "::ffff:198.51.100.2", "10.0.0.01", "99.199.249.250", "example.org", "1.2.3.4 "]
    decider = BlockDecider.build(load_grammar(GRAMMARS / "sshd.grammar"), "syslog", "file:test", READ_TIME)
    assert decider is not None
    decider._remember({text.encode() for text in texts})
    for text in texts:
        normalised = normalise_address(text)
        assert decider._addresses.get(text.encode()) == (
            None if normalised is None else (normalised, window_key(normalised))), text


FAIL2BAN_CASES = [("sshd", "sshd"), ("dovecot", "dovecot"), ("postfix", "postfix"), ("exim", "exim"),
                  ("vsftpd", "vsftpd"), ("proftpd", "proftpd"), ("mysqld-auth", "mysqld-auth"),
                  ("nginx-http-auth", "nginx-http-auth"), ("nginx-botsearch", "nginx-botsearch"),
                  ("nginx-limit-req", "nginx-limit-req"), ("apache-auth", "apache-auth"),
                  ("apache-badbots", "apache-badbots")]


@pytest.mark.parametrize(("grammar_name", "log_name"), FAIL2BAN_CASES, ids=[c[0] for c in FAIL2BAN_CASES])
def test_fail2ban_sample_logs_give_the_same_summary(
        grammar_name: str, log_name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sample = FAIL2BAN_LOGS / log_name
    if not sample.exists():
        pytest.skip(f"fail2ban's sample log {sample} is not installed (apt-get install fail2ban)")
    grammar = load_grammar(GRAMMARS / f"{grammar_name}.grammar")
    log = tmp_path / "sample.log"
    log.write_bytes(sample.read_bytes() * 3)
    assert_fast_equals_exact(grammar, log, monkeypatch)


def test_shares_cover_the_file_and_start_at_lines(tmp_path: Path) -> None:
    lines = [b"x" * (n * 37 % 5000) for n in range(400)] + [b"y" * 100_000]
    log = tmp_path / "lines.log"
    log.write_bytes(b"\n".join(lines) + b"\nlast")
    data = log.read_bytes()
    fd = os.open(log, os.O_RDONLY)
    try:
        for begin in (0, len(lines[0]) + 1):
            for count in (1, 2, 5, 50, 5000):
                spans = shares(fd, begin, len(data), count)
                assert spans[0][0] == begin and spans[-1][1] == len(data)
                assert all(a[1] == b[0] for a, b in pairwise(spans))
                assert all(start == 0 or data[start - 1:start] == b"\n" for start, _ in spans)
                assert len(spans) <= count
    finally:
        os.close(fd)


def test_a_grammar_the_fast_path_cannot_promise_is_replayed_exactly(tmp_path: Path) -> None:
    path = tmp_path / "odd.grammar"
    path.write_text('grammar odd\ndescription "a rule with a non-ASCII literal"\napplies file format=raw\n'
                    'fail cafe: "caf\u00e9 " <address>\n'
                    'example "caf\u00e9 203.0.113.9" => cafe address=203.0.113.9\n')
    grammar = load_grammar(path)
    assert BlockDecider.build(grammar, "raw", "file:test", READ_TIME) is None
    log = tmp_path / "odd.log"
    log.write_text("caf\u00e9 203.0.113.9\ncaf\u00e9 203.0.113.9\nnoise\n")
    summary = replayed(grammar, log, fast=True)
    assert summary.matched == {"cafe": 2} and len(summary.bans) == 1


@pytest.mark.parametrize("block", [1, 7, 100, 4096, 70_000])
def test_any_block_size_decides_the_same(block: int, tmp_path: Path) -> None:
    """Blocks end at their last newline and the line after is read again with the next
    block; a line longer than a block is gathered whole. None of that shows in the result."""
    grammar = load_grammar(GRAMMARS / "sshd.grammar")
    examples = [header(grammar, n).encode() + e.text.encode() for n, e in enumerate(grammar.examples)]
    data = b"\n".join(examples + awkward_lines(grammar) + examples) + b"\n" + corpus("sshd", 2000) + examples[0]
    log = tmp_path / "blocks.log"
    log.write_bytes(data)
    decider = BlockDecider.build(grammar, "syslog", "file:test", READ_TIME)
    assert decider is not None
    fd = os.open(log, os.O_RDONLY)
    try:
        def read(offset: int, size: int) -> bytes:
            return os.pread(fd, size, offset)

        whole = decider.share(read, 0, len(data), block=len(data))
        assert whole.lines == data.count(b"\n") + 1 and len(whole.addresses) > 100
        assert decider.share(read, 0, len(data), block=block) == whole
    finally:
        os.close(fd)


def test_a_crlf_line_goes_to_the_exact_path_only_if_a_rule_may_match_it(tmp_path: Path) -> None:
    """Its \\r flags every CRLF line; only those a rule also flags are read exactly."""
    grammar = load_grammar(GRAMMARS / "sshd.grammar")
    failure = header(grammar).encode() + b"Failed password for root from 203.0.113.9 port 22 ssh2"
    noise = header(grammar).encode() + b"Accepted publickey for deploy from 192.0.2.1 port 22 ssh2"
    data = b"\r\n".join([noise] * 50 + [failure] + [noise] * 50) + b"\r\n"
    decider = BlockDecider.build(grammar, "syslog", "file:test", READ_TIME)
    assert decider is not None
    log = tmp_path / "crlf.log"
    log.write_bytes(data)
    fd = os.open(log, os.O_RDONLY)
    try:
        result = decider.share(lambda offset, size: os.pread(fd, size, offset), 0, len(data))
    finally:
        os.close(fd)
    assert result.lines == 101
    assert [line for _, line in result.exact] == [failure.decode()]
    assert len(result.addresses) == 0
