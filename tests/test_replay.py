import json
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner

from journalban.cli import main

NGINX = '{addr} - - [01/Apr/2026:16:{minute:02d}:00 +0000] "{method} {path} HTTP/1.1" 200 512 "-" "curl/8"'


def nginx_log(tmp_path: Path) -> Path:
    lines = []
    for minute in range(6):  # one POST a minute from .9: 5 within 10 minutes bans it
        lines.append(NGINX.format(addr="203.0.113.9", minute=minute, method="POST", path="/wp-login.php"))
        lines.append(NGINX.format(addr="198.51.100.4", minute=minute, method="GET", path="/"))
    lines.append(NGINX.format(addr="198.51.100.5", minute=30, method="POST", path="/xmlrpc.php"))
    log = tmp_path / "access.log"
    log.write_text("\n".join(lines) + "\n")
    return log


def invoke(*args: str, stdin: str | None = None) -> str:
    result = CliRunner().invoke(main, ["replay", *args], input=stdin)
    assert result.exit_code == 0, result.output
    return result.output


def test_summary_counts_and_would_ban(tmp_path: Path) -> None:
    summary = json.loads(invoke("-g", "nginx-wp-login", str(nginx_log(tmp_path)), "--json"))
    assert (summary["lines"], summary["matched"], summary["missed"]) == (13, 7, 6)
    assert summary["matched_per_rule"] == {"wp-login": 7}
    assert [b["address"] for b in summary["bans"]] == ["203.0.113.9"]
    assert summary["bans"][0]["start"] == "2026-04-01T16:04:00+00:00"  # the log's time, not now


def test_text_summary_and_missed_lines(tmp_path: Path) -> None:
    out = invoke("-g", "nginx-wp-login", str(nginx_log(tmp_path)), "--show-missed", "1", "--maxretry", "6")
    assert "Lines: 13 read, 7 matched, 0 ignored, 0 rejected (invalid address), 6 missed" in out
    assert "Would ban (maxretry 6 in 600s): 1 addresses, 1 bans" in out
    assert "  2: 198.51.100.4 - - [01/Apr/2026:16:00:00" in out


def test_matches_are_json_lines_with_line_numbers(tmp_path: Path) -> None:
    out = invoke("-g", "nginx-wp-login", str(nginx_log(tmp_path)), "--matches").splitlines()
    assert len(out) == 7
    assert json.loads(out[0]) == {"line": 1, "rule": "wp-login", "address": "203.0.113.9",
                                  "captures": json.loads(out[0])["captures"], "time": "2026-04-01T16:00:00+00:00"}
    assert json.loads(out[-1])["line"] == 13


def test_stdin_and_a_grammar_file(tmp_path: Path) -> None:
    grammar = Path(__file__).resolve().parent.parent / "grammars/wp-limit-login.grammar"
    out = invoke("-g", str(grammar), "-", "--json", "--maxretry", "1",
                 stdin="Apr 3 01:11:12 IP locked out by wp-limit-login: 203.0.113.9\nnoise\n")
    assert json.loads(out)["banned_addresses"] == 1


def test_ledger_import_keeps_failures_and_past_bans_as_history(tmp_path: Path) -> None:
    db = tmp_path / "ledger.db"
    invoke("-g", "nginx-wp-login", str(nginx_log(tmp_path)), "--ledger", f"sqlite:///{db}")
    connection = sqlite3.connect(db)
    assert connection.execute("SELECT count(*) FROM failures").fetchone() == (7,)
    assert connection.execute("SELECT address, end_reason FROM bans").fetchall() == [("203.0.113.9", "expired")]
    assert connection.execute("SELECT count(*) FROM failures WHERE ban_id IS NOT NULL").fetchone() == (5,)
    connection.close()


def test_unknown_grammar_is_a_clear_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["replay", "-g", "nope", str(nginx_log(tmp_path))])
    assert result.exit_code == 1
    assert "no grammar named 'nope'" in result.output


AUTH_LOG = """\
Apr  1 16:00:01 web1 sshd[101]: Failed password for root from 203.0.113.9 port 4711 ssh2
Apr  1 16:00:02 web1 CRON[102]: pam_unix(cron:session): session opened for user root(uid=0) by (uid=0)
Apr  1 16:00:03 web1 sshd[103]: Invalid user admin from 203.0.113.9 port 4712
Apr  1 16:00:04 web1 sudo[104]: Failed password for root from 198.51.100.1 port 22 ssh2
Apr  1 16:00:05 web1 sshd[105]: Accepted publickey for deploy from 10.0.0.5 port 51514 ssh2: RSA SHA256:x
not a syslog line at all
"""


def test_syslog_files_are_read_by_their_prefix_and_only_the_grammars_apps_count(tmp_path: Path) -> None:
    log = tmp_path / "auth.log"
    log.write_text(AUTH_LOG)
    summary = json.loads(invoke("-g", "sshd", str(log), "--json", "--maxretry", "2"))
    assert (summary["lines"], summary["matched"], summary["missed"]) == (6, 2, 4)  # sudo's line is not sshd's
    assert [b["address"] for b in summary["bans"]] == ["203.0.113.9"]


def test_a_journal_directory_is_replayed_with_the_grammars_trusted_matches(tmp_path: Path) -> None:
    from tests.sources.journal.journald import JOURNAL_REMOTE, build_journal, export_record

    if not Path(JOURNAL_REMOTE).exists():
        pytest.skip(f"{JOURNAL_REMOTE} is not installed")
    records = b""
    for n, (unit, message) in enumerate([
        ("ssh.service", "Failed password for root from 203.0.113.9 port 22 ssh2"),
        ("cron.service", "Failed password for root from 198.51.100.1 port 22 ssh2"),  # not sshd's unit
        ("ssh.service", "Failed password for invalid user x from 203.0.113.9 port 23 ssh2"),
    ]):
        records += export_record({
            "__CURSOR": f"s=0;i={n + 1}", "__REALTIME_TIMESTAMP": str(1_775_059_200_000_000 + n * 1_000_000),
            "__MONOTONIC_TIMESTAMP": str(1_000_000 + n), "_BOOT_ID": "0" * 32, "_HOSTNAME": "web1",
            "_SYSTEMD_UNIT": unit, "_UID": "0", "SYSLOG_IDENTIFIER": "sshd", "MESSAGE": message})
    (tmp_path / "journal").mkdir()
    build_journal(records, tmp_path / "journal" / "x.journal")
    summary = json.loads(invoke("-g", "sshd", "--journal", str(tmp_path / "journal"), "--json", "--maxretry", "2"))
    assert (summary["lines"], summary["matched"]) == (2, 2)
    assert [b["address"] for b in summary["bans"]] == ["203.0.113.9"]
