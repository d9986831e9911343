"""``journalban replay`` gives the same answer whichever scanner narrows the lines.

Each case is replayed with hyperscan, the portable literal scanner, every line
through the exact path, and the line-at-a-time ``replay_lines`` the scanners replaced;
summaries (counts per rule, bans, missed lines shown) and ``--matches`` output must be
equal. The inputs: every shipped grammar's examples, the benchmark corpora, crafted
buffers, and lines cut at every place a read can cut them.
"""

import io
import json
import re
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from journalban.cli import main
from journalban.grammar import Grammar, load_grammar
from journalban.grammar.scan import ENGINES, build_scanner
from journalban.replay import ReplayOptions, replay_file, replay_lines
from tests.corpora import mixed

ROOT = Path(__file__).resolve().parents[1]
GRAMMARS = ROOT / "grammars"
SHIPPED = sorted(GRAMMARS.glob("*.grammar"))
CORPUS = Path("/work/shared/bench/corpus.py")
READ_TIME = datetime(2026, 11, 26, tzinfo=UTC)
Outcome = tuple[dict[str, Any], list[dict[str, Any]]]


def file_format(grammar: Grammar) -> str:
    return grammar.file_format if grammar.file_format in ("raw", "syslog") else "raw"


def options(matches: list[dict[str, Any]]) -> ReplayOptions:
    return ReplayOptions(maxretry=2, findtime=3600, show_missed=5, read_time=READ_TIME,
                         on_match=lambda m: matches.append(m.as_json()))


def summary_of(summary: Any) -> dict[str, Any]:
    out = summary.as_json()
    del out["seconds"], out["lines_per_second"]
    out["missed_lines"] = summary.missed_lines
    return out


def replayed(grammar: Grammar, data: bytes, engine: str, fmt: str, block: int = 1 << 22) -> Outcome:
    matches: list[dict[str, Any]] = []
    summary = replay_file(io.BytesIO(data), grammar, fmt, "file:test", options(matches),
                          build_scanner(grammar, engine), block=block)
    return summary_of(summary), matches


def replayed_line_by_line(grammar: Grammar, data: bytes, fmt: str) -> Outcome:
    """How replay read files before the scanners: Python's own line iteration."""
    matches: list[dict[str, Any]] = []
    lines = (raw.decode("utf-8", "replace").rstrip("\r\n") for raw in io.BytesIO(data))
    return summary_of(replay_lines(lines, grammar, fmt, "file:test", options(matches))), matches


def assert_all_engines_agree(grammar: Grammar, data: bytes, fmt: str, block: int = 1 << 22) -> Outcome:
    reference = replayed_line_by_line(grammar, data, fmt)
    for engine in ENGINES:
        assert replayed(grammar, data, engine, fmt, block) == reference, engine
    return reference


def example_lines(grammar: Grammar) -> list[str]:
    """The grammar's examples as its files hold them (behind a syslog header where it reads syslog)."""
    if file_format(grammar) != "syslog":
        return [example.text for example in grammar.examples]
    app = sorted(grammar.syslog_apps)[0]
    return [f"Nov 14 22:13:{n % 60:02d} web1 {app}[{100 + n}]: {example.text}"
            for n, example in enumerate(grammar.examples)]


@pytest.fixture(scope="module")
def mixed_corpus() -> bytes:
    """Small benchmark corpora of three kinds, interleaved in blocks."""
    return mixed()


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_examples_and_the_mixed_corpus_give_the_same_replay_with_every_engine(path: Path,
                                                                             mixed_corpus: bytes) -> None:
    grammar = load_grammar(path)
    examples = ("\n".join(example_lines(grammar)) + "\n").encode()
    _, matches = assert_all_engines_agree(grammar, examples, file_format(grammar))
    if grammar.source_kind not in ("journal", "ledger"):  # files never reach journal-only grammars
        assert matches, "the examples hold matching lines"
    assert_all_engines_agree(grammar, examples + mixed_corpus + examples, file_format(grammar))


@pytest.mark.parametrize(("grammar_name", "kind"), [
    ("sshd", "sshd"), ("nginx-wp-login", "nginx"), ("wp-limit-login", "wplimit"),
])
def test_each_benchmark_corpus_matches_its_failures_with_every_engine(grammar_name: str, kind: str) -> None:
    done = subprocess.run([sys.executable, str(CORPUS), kind, "2000"], capture_output=True, check=True)
    failures = int(re.search(rb"(\d+) failures", done.stderr)[1])  # type: ignore[index]
    grammar = load_grammar(GRAMMARS / f"{grammar_name}.grammar")
    summary, matches = assert_all_engines_agree(grammar, done.stdout, file_format(grammar))
    assert summary["matched"] == len(matches) == failures


def adversarial(grammar: Grammar, size: int) -> bytes:
    """Every example and rule literal run together and repeated up to ``size`` bytes, on one line."""
    fragments = [example.text for example in grammar.examples] + [rule.prefilter for rule in grammar.rules]
    unit = " ".join(fragments).encode()
    return (unit * (size // len(unit) + 1))[:size]


@pytest.mark.parametrize("name", ["sshd", "dovecot", "mysqld-auth", "nginx-wp-login", "apache-auth"])
def test_crafted_buffers_give_the_same_result(name: str) -> None:
    grammar = load_grammar(GRAMMARS / f"{name}.grammar")
    lines = example_lines(grammar)
    header = lines[0][: len(lines[0]) - len(grammar.examples[0].text)]  # "" for raw lines
    megabyte_line = header.encode() + adversarial(grammar, 1 << 20)
    repeated = b"\n".join(header.encode() + adversarial(grammar, n) for n in (10, 100, 1000, 16383, 16385, 20000))
    data = repeated + b"\n" + megabyte_line + b"\n" + "\n".join(lines).encode()
    summary, _ = assert_all_engines_agree(grammar, data, file_format(grammar), block=1 << 16)
    assert summary["rejected"] >= 1 or summary["missed"] >= 2  # the long lines were counted, not lost


@pytest.mark.parametrize("block", [1, 2, 7, 64, 4096])
@pytest.mark.parametrize("ending", [b"\n", b"\r\n", b""], ids=["lf", "crlf", "no-final-newline"])
def test_lines_cut_across_reads(block: int, ending: bytes) -> None:
    grammar = load_grammar(GRAMMARS / "sshd.grammar")
    lines = [*example_lines(grammar), "", "noise", "Nov 14 22:13:20 web1 sshd[1]: Invalid user x from 203.0.113.9"]
    newline = ending or b"\n"
    data = newline.join(line.encode() for line in lines) + ending
    summary, matches = assert_all_engines_agree(grammar, data, "syslog", block=block)
    assert summary["lines"] == len(lines)
    assert matches[-1]["line"] == len(lines)


def test_invalid_utf8_and_non_ascii_lines() -> None:
    grammar = load_grammar(GRAMMARS / "sshd.grammar")
    prefix = b"Nov 14 22:13:20 web1 sshd[1]: "
    data = b"\n".join([
        prefix + b"Invalid user r\xc3\xb6ot from 203.0.113.9",  # valid UTF-8
        prefix + b"Invalid user r\xffot from 203.0.113.9",  # not UTF-8: replaced, as before
        prefix + b"Invalid user \xe2\x80\xa8 from 203.0.113.9",  # a Unicode line separator
        prefix + b"Failed password for root from 203.0.113.9 port 22 ssh2\xc3",  # cut character
    ]) + b"\n"
    _, matches = assert_all_engines_agree(grammar, data, "syslog")
    assert [m["line"] for m in matches] == [1, 2, 3]


def test_show_missed_lists_the_first_missed_lines_in_order() -> None:
    grammar = load_grammar(GRAMMARS / "sshd.grammar")
    lines = ["noise 1", "Nov 14 22:13:20 web1 sshd[1]: Invalid user x from 203.0.113.9", "noise 2",
             "Nov 14 22:13:21 web1 sshd[2]: Invalid user y from 999.0.0.1", "noise 3", "noise 4", "noise 5",
             "noise 6"]
    summary, _ = assert_all_engines_agree(grammar, ("\n".join(lines) + "\n").encode(), "syslog")
    assert summary["missed_lines"] == [(1, "noise 1"), (3, "noise 2"), (5, "noise 3"), (6, "noise 4"),
                                       (7, "noise 5")]
    assert summary["rejected"] == 1


def test_the_cli_honours_the_scanner_environment_variable(tmp_path: Path) -> None:
    log = tmp_path / "auth.log"
    log.write_text("Nov 14 22:13:20 web1 sshd[1]: Invalid user x from 203.0.113.9\nnoise\n")
    outputs = []
    for engine in ENGINES:
        result = CliRunner().invoke(main, ["replay", "-g", "sshd", str(log), "--json"],
                                    env={"JOURNALBAN_SCANNER": engine})
        assert result.exit_code == 0, result.output
        summary = json.loads(result.output)
        outputs.append((summary["lines"], summary["matched"], summary["missed"]))
    assert outputs == [(2, 1, 1)] * len(ENGINES)
