"""``journalban replay --format fail2ban``: imported filters see lines as fail2ban does.

Checked against fail2ban-regex itself on the same file, and the date fail2ban cuts
out gives each line its time."""

import json
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from click.testing import CliRunner

from journalban.cli import main
from journalban.grammar.fail2ban import import_filter
from journalban.replay_fail2ban import date_time

CORPUS = Path("/work/shared/bench/corpus.py")
FILTERS = Path("/etc/fail2ban/filter.d")
REFERENCE = datetime(2026, 11, 26, 12, tzinfo=UTC)


def imported(name: str, tmp_path: Path) -> Path:
    path = tmp_path / f"{name}.grammar"
    path.write_text(import_filter(FILTERS / f"{name}.conf", None).text)
    return path


def replay_json(*args: str) -> dict:  # type: ignore[type-arg]
    result = CliRunner().invoke(main, ["replay", *args, "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)  # type: ignore[no-any-return]


def test_counts_equal_fail2ban_regex_on_the_sshd_corpus(tmp_path: Path) -> None:
    log = tmp_path / "auth.log"
    with log.open("wb") as sink:
        subprocess.run([sys.executable, str(CORPUS), "sshd", "3000"], stdout=sink, stderr=subprocess.DEVNULL,
                       check=True)
    done = subprocess.run(["fail2ban-regex", str(log), str(FILTERS / "sshd.conf")], capture_output=True,
                          text=True, check=True)
    found = re.search(r"^Lines: (\d+) lines, (\d+) ignored, (\d+) matched, (\d+) missed", done.stdout, re.M)
    assert found, done.stdout[-2000:]
    lines, ignored, matched, missed = map(int, found.groups())
    summary = replay_json("-g", str(imported("sshd", tmp_path)), "--format", "fail2ban", str(log))
    assert (summary["lines"], summary["matched"], summary["ignored"], summary["missed"]) == (
        lines, matched, ignored, missed)
    assert matched > 0


def test_the_date_is_cut_out_and_gives_the_time(tmp_path: Path) -> None:
    """apache-badbots' datepattern takes the date in brackets; its offset is honoured."""
    agent = "EmailCollector"
    log = tmp_path / "access.log"
    log.write_text("".join(
        f'203.0.113.9 - - [14/Nov/2023:22:13:{second:02d} +0100] "GET / HTTP/1.1" 200 5 "-" "{agent}"\n'
        for second in (1, 2, 3)) + '198.51.100.4 - - [14/Nov/2023:22:13:04 +0100] "GET / HTTP/1.1" 200 5 "-" "curl"\n')
    grammar = imported("apache-badbots", tmp_path)
    result = CliRunner().invoke(main, ["replay", "-g", str(grammar), "--format", "fail2ban", str(log), "--matches"])
    assert result.exit_code == 0, result.output
    matches = [json.loads(line) for line in result.output.splitlines()]
    assert [(m["line"], m["address"], m["time"]) for m in matches] == [
        (n, "203.0.113.9", f"2023-11-14T21:13:0{n}+00:00") for n in (1, 2, 3)]
    summary = replay_json("-g", str(grammar), "--format", "fail2ban", str(log), "--maxretry", "3")
    assert [b["start"] for b in summary["bans"]] == ["2023-11-14T21:13:03+00:00"]


def test_without_the_fail2ban_format_the_date_stays_in_the_line(tmp_path: Path) -> None:
    log = tmp_path / "auth.log"
    log.write_text("Nov 14 22:13:20 web1 sshd[1]: Invalid user x from 203.0.113.9 port 22\n")
    grammar = str(imported("sshd", tmp_path))
    assert replay_json("-g", grammar, "--format", "fail2ban", str(log))["matched"] == 1
    assert replay_json("-g", grammar, "--format", "raw", str(log))["matched"] == 0


@pytest.mark.parametrize(("text", "pattern", "expected"), [
    ("2024-01-02 03:04:05", None, datetime(2024, 1, 2, 3, 4, 5).astimezone(UTC)),
    ("2024-01-02T03:04:05.250+02:00", None, datetime(2024, 1, 2, 1, 4, 5, 250000, tzinfo=UTC)),
    ("14/Nov/2023:22:13:20 +0000", None, datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)),
    ("1700000000", None, datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)),
    ("@4000000065540f8a00000000", None, datetime(2023, 11, 15, 0, 23, 38, tzinfo=UTC)),
    ("Nov 25 23:00:00", None, datetime(2026, 11, 25, 23).astimezone(UTC)),  # no year: this year
    ("Dec 31 23:00:00", None, datetime(2025, 12, 31, 23).astimezone(UTC)),  # ... unless that is ahead
    ("L 02/01/2024 - 03:04:05", "^L %%d/%%m/%%Y - %%H:%%M:%%S", datetime(2024, 1, 2, 3, 4, 5).astimezone(UTC)),
    ("Feb 30 01:02:03", None, None),  # no such day in any year
])
def test_dates_fail2ban_finds_are_read(text: str, pattern: str | None, expected: datetime | None) -> None:
    assert date_time(text, pattern, REFERENCE) == expected


def test_a_zone_offset_is_applied() -> None:
    moment = date_time("2024-01-02 03:04:05 -0130", None, REFERENCE)
    assert moment == datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone(-timedelta(hours=1, minutes=30)))
