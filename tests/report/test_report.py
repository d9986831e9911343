"""journalban report over a replayed ledger: the numbers agree with SQL and across formats."""

import csv
import io
import json
import re
import subprocess
import sys
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import create_engine, text

from journalban import paths
from journalban.events import BanDecision, Failure
from journalban.grammar import load_grammar
from journalban.ledger.store import Ledger
from journalban.ledger.views import fill_derived
from journalban.replay import ReplayOptions, replay_lines
from journalban.report import ReportData, render_csv, render_html, render_json, render_text
from journalban.report.collect import collect
from journalban.report.command import parse_since, report
from journalban.report.data import format_cell
from tests.postgres import postgres_server, postgres_url  # noqa: F401  (fixtures)

CORPUS = Path("/work/shared/bench/corpus.py")
# The 200,000 lines: replayed into the ledger once per module (~15 s at load 6).
CORPUS_ARGS = ("nginx", "200000", "--sources", "200")  # 14 Nov 2023 22:13 to 15 Nov 22:13 UTC
SINCE = datetime(2023, 11, 13, tzinfo=UTC)
NOW = datetime(2023, 11, 16, 12, tzinfo=UTC)
ACTIVE = [("sshd", "198.51.100.7"), ("sshd", "2001:db8::7")]
CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture(scope="module")
def ledger_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    if not CORPUS.exists():
        pytest.skip(f"{CORPUS} not found")
    lines = subprocess.run([sys.executable, str(CORPUS), *CORPUS_ARGS], capture_output=True, text=True,
                           check=True).stdout.splitlines()
    url = f"sqlite:///{tmp_path_factory.mktemp('report')}/ledger.db"
    ledger = Ledger(url)
    ledger.upgrade()
    grammar = load_grammar(paths.SHIPPED_GRAMMARS / "nginx-wp-login.grammar")
    replay_lines(lines, grammar, "raw", "file:access.log",
                 ReplayOptions(maxretry=3, findtime=600, bantime=3600, ledger=ledger))
    with ledger.engine.begin() as connection:  # two bans in force in another jail, one permanent
        for (jail, address), expiry in zip(ACTIVE, ["2023-11-16 13:00:00.000000", "9999-12-31 00:00:00.000000"],
                                           strict=True):
            connection.execute(text("INSERT INTO bans (jail, address, started_at, expires_at, reason) "
                                    "VALUES (:jail, :address, '2023-11-16 11:00:00.000000', :expiry, 'manual: test')"),
                               {"jail": jail, "address": address, "expiry": expiry})
        fill_derived(connection)
    ledger.close()
    return url


@pytest.fixture(scope="module")
def data(ledger_url: str) -> ReportData:
    return collect(ledger_url, SINCE, now=NOW)


def sql(url: str, query: str) -> list[tuple[object, ...]]:
    engine = create_engine(url)
    with engine.connect() as connection:
        rows = [tuple(r) for r in connection.execute(text(query), {"since": "2023-11-13 00:00:00.000000"})]
    engine.dispose()
    return rows


def test_numbers_agree_with_sql(ledger_url: str, data: ReportData) -> None:
    summary = dict(data.summary)
    [(failures, addresses)] = sql(ledger_url, "SELECT COUNT(*), COUNT(DISTINCT address) FROM failures "
                                              "WHERE occurred_at >= :since")
    [(bans,)] = sql(ledger_url, "SELECT COUNT(*) FROM bans WHERE started_at >= :since")
    assert (summary["failures"], summary["bans"], summary["active_bans"]) == (failures, bans, len(ACTIVE))
    assert failures > 10_000 and bans > 500
    assert summary["addresses"] == addresses + len(ACTIVE)  # the two banned by hand never failed
    rules = sql(ledger_url, "SELECT rule, COUNT(*) FROM failures GROUP BY rule")
    assert list(data.table("rules").rows) == rules
    counts = dict(sql(ledger_url, "SELECT address, COUNT(*) FROM failures GROUP BY address"))
    top = data.table("top_addresses").rows
    assert [r[1] for r in top] == sorted(counts.values(), reverse=True)[:20]
    assert all(counts[str(r[0])] == r[1] for r in top)
    per_day = dict(sql(ledger_url, "SELECT day, COUNT(*) FROM bans WHERE started_at >= :since GROUP BY day"))
    timeline = defaultdict(int)
    for record in data.table("timeline").records():
        timeline[record["bucket"]] += int(record["bans"] or 0)
    assert {d: n for d, n in timeline.items() if n} == per_day
    assert data.bucket == "day"
    assert sum(int(f or 0) for f in data.table("hours").column("failures")) == failures
    repeat = sql(ledger_url, "SELECT COUNT(*) FROM (SELECT address FROM bans GROUP BY address HAVING COUNT(*) > 1) r")
    assert summary["repeat_offenders"] == repeat[0][0] > 0
    # an IPv4 /24 is the ledger's network too (IPv6: the report's /48 against the ledger's /64)
    networks = dict(sql(ledger_url, "SELECT network, COUNT(*) FROM failures WHERE network NOT LIKE '%:%' "
                                    "GROUP BY network"))
    shown = [(r[0], r[2]) for r in data.table("top_networks").rows]
    assert [(n, networks[n]) for n, _ in shown if ":" not in str(n)] == [(n, c) for n, c in shown if ":" not in str(n)]
    assert shown[0][1] >= max(networks.values()) and len(shown) == 20
    assert dict(data.table("ban_durations").rows) == {"<= 10m": 0, "<= 1h": bans - 2, "<= 6h": 1, "<= 1d": 0,
                                                      "<= 1w": 0, "> 1w": 0, "permanent": 1}


def test_a_short_window_is_per_hour_and_a_jail_narrows_it(ledger_url: str) -> None:
    hourly = collect(ledger_url, datetime(2023, 11, 15, tzinfo=UTC), now=datetime(2023, 11, 16, tzinfo=UTC))
    assert hourly.bucket == "hour" and len({r[0] for r in hourly.table("timeline").rows}) == 23
    sshd = collect(ledger_url, SINCE, "sshd", now=NOW)
    assert dict(sshd.summary)["failures"] == 0 and dict(sshd.summary)["active_bans"] == 2
    assert {r[:2] for r in sshd.table("active_bans").rows} == set(ACTIVE)


def test_json_and_csv_carry_the_same_numbers(data: ReportData) -> None:
    parsed = json.loads(render_json(data))
    assert parsed["summary"] == dict(data.summary)
    for table in data.tables:
        assert parsed["tables"][table.name] == list(table.records())
    cells: dict[tuple[str, str, str], str] = {}
    for row in csv.DictReader(io.StringIO(render_csv(data))):
        cells[row["table"], row["key"], row["column"]] = row["value"]
    for figure, count in data.summary:
        assert cells["summary", figure, "count"] == str(count)
    for table in data.tables:
        for row in table.rows:
            for column, cell in zip(table.columns[table.key_columns:], row[table.key_columns:], strict=True):
                assert cells[table.name, table.key(row), column] == format_cell(cell)


def test_text_shows_the_same_numbers(data: ReportData) -> None:
    rendered = render_text(data)
    for figure, count in data.summary:
        assert re.search(rf"^{figure} +{count}$", rendered, re.MULTILINE)
    for name in ("top_addresses", "rules", "repeat_offenders", "top_networks"):
        for row in data.table(name).rows:
            assert re.search(r"^" + r" +".join(map(re.escape, map(format_cell, row))) + "$", rendered, re.MULTILINE)
    assert "#" * 40 in rendered  # the largest bar of each chart


class _Tables(HTMLParser):
    """The text of every cell of every <table id=...>."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self.current: str | None = None
        self.cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table":
            self.current = dict(attrs).get("id") or ""
            self.tables[self.current] = []
        elif tag == "tr" and self.current is not None:
            self.tables[self.current].append([])
        elif tag == "td":
            self.cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "td" and self.cell is not None and self.current is not None:
            self.tables[self.current][-1].append("".join(self.cell))
            self.cell = None
        elif tag == "table":
            self.current = None

    def handle_data(self, data: str) -> None:
        if self.cell is not None:
            self.cell.append(data)


def test_html_shows_the_same_numbers_and_references_nothing(data: ReportData) -> None:
    rendered = render_html(data)
    parser = _Tables()
    parser.feed(rendered)
    assert [r for r in parser.tables["summary"] if r] == [[f, str(c)] for f, c in data.summary]
    for table in data.tables:
        rows = [r for r in parser.tables[table.name] if r]
        expected = [[format_cell(c) for c in row] for row in table.rows] or [["(none)"]]
        assert rows == expected, table.name
    assert rendered.count("<svg") >= 6 and rendered.count("<rect") > 24 and "<polyline" in rendered
    for external in ("http://", "https://", "src=", "@import", "url(", "<script", "<link"):
        assert external not in rendered, external


@pytest.fixture
def html_file(tmp_path: Path, data: ReportData) -> Path:
    path = tmp_path / "report.html"
    path.write_text(render_html(data), encoding="utf-8")
    return path


def test_html_renders_in_a_browser_without_network(html_file: Path, tmp_path: Path) -> None:
    if not CHROMIUM.exists():
        print(f"\nskipping the browser check: {CHROMIUM} not installed (apt-get install chromium)")
        pytest.skip(f"{CHROMIUM} not installed")
    screenshot = tmp_path / "shot.png"
    subprocess.run([str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                    "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}", "--proxy-server=127.0.0.1:9",
                    f"--screenshot={screenshot}", "--window-size=1200,3000", html_file.as_uri()],
                   capture_output=True, timeout=120, check=True)
    png = screenshot.read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 20_000  # a blank page compresses to a few kB
    dom = subprocess.run([str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu",
                          "--disable-background-networking", "--no-first-run", "--proxy-server=127.0.0.1:9",
                          f"--user-data-dir={tmp_path / 'profile2'}", "--dump-dom", html_file.as_uri()],
                         capture_output=True, text=True, timeout=120, check=True).stdout
    assert dom.count("<svg") >= 6


def test_the_command_writes_every_format(ledger_url: str, data: ReportData, tmp_path: Path) -> None:
    outputs = {}
    for fmt in ("text", "json", "csv", "html"):
        out = tmp_path / f"report.{fmt}"
        result = CliRunner().invoke(report, ["--ledger", ledger_url, "--since", "2023-11-13", "--format", fmt,
                                             "-o", str(out)])
        assert result.exit_code == 0, result.output
        outputs[fmt] = out.read_text()
    assert json.loads(outputs["json"])["summary"] == dict(data.summary)  # the data ends before either "now"
    assert "<svg" in outputs["html"] and "Summary" in outputs["text"] and outputs["csv"].startswith("table,key")


def test_the_command_fails_clearly_without_a_ledger(tmp_path: Path) -> None:
    missing = tmp_path / "none.db"
    result = CliRunner().invoke(report, ["--ledger", f"sqlite:///{missing}"])
    assert result.exit_code == 1 and "cannot read the ledger" in result.output
    assert not missing.exists()  # read-only: nothing created


def test_parse_since() -> None:
    now = datetime(2026, 11, 25, 12, tzinfo=UTC)
    assert parse_since("24h", now) == datetime(2026, 11, 24, 12, tzinfo=UTC)
    assert parse_since("7d", now) == datetime(2026, 11, 18, 12, tzinfo=UTC)
    assert parse_since("2026-11-01", now) == datetime(2026, 11, 1, tzinfo=UTC)
    assert parse_since("2026-11-01 06:30", now) == datetime(2026, 11, 1, 6, 30, tzinfo=UTC)
    with pytest.raises(ValueError):
        parse_since("yesterday", now)


def test_read_only_engine_cannot_write(ledger_url: str) -> None:
    from sqlalchemy.exc import OperationalError

    from journalban.report.collect import read_only_engine
    engine = read_only_engine(ledger_url)
    with engine.connect() as connection, pytest.raises(OperationalError):
        connection.execute(text("DELETE FROM heals"))
    engine.dispose()




def _two_host_ledger(url: str) -> str:
    """web1 and web2 ([node] name) record failures and bans in one ledger: web1 5 failures and
    1 ban on 14 Nov, web2 3 failures and 1 ban on 15 Nov and 2 failures on 16 Nov. No
    reconcile runs, so both bans are still in force."""
    for node, address, day, count in (("web1", "203.0.113.1", 14, 5), ("web2", "203.0.113.2", 15, 3),
                                      ("web2", "203.0.113.2", 16, 2)):
        ledger = Ledger(url, node=node)
        ledger.upgrade()
        start = datetime(2023, 11, day, 8, tzinfo=UTC)
        failures = [Failure("sshd", address, start + timedelta(minutes=m), "sshd/fail", f"fail from {address}",
                            "file:auth.log") for m in range(count)]
        bans = [] if day == 16 else [BanDecision("sshd", address, failures[-1].time, failures[-1].time +
                                                 timedelta(hours=1), f"{count} failures", tuple(failures))]
        ledger.record(failures, bans, {}, failures[-1].time)
        ledger.close()
    return url


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_per_host_tables_and_charts_agree_in_every_format(dialect: str, request: pytest.FixtureRequest,
                                                         tmp_path: Path) -> None:
    url = _two_host_ledger(f"sqlite:///{tmp_path}/hosts.db" if dialect == "sqlite"
                           else str(request.getfixturevalue("postgres_url")))
    data = collect(url, SINCE, now=NOW)
    assert dict(data.summary)["hosts"] == 2
    assert list(data.table("hosts").rows) == [("web1", 5, 1, 1), ("web2", 5, 1, 1)]
    assert sql(url, "SELECT node, COUNT(*) FROM failures GROUP BY node ORDER BY node") == [("web1", 5), ("web2", 5)]
    per_day = {(r["bucket"], r["host"]): (r["failures"], r["bans"]) for r in data.table("host_timeline").records()}
    assert per_day == {("2023-11-14", "web1"): (5, 1), ("2023-11-14", "web2"): (0, 0),
                       ("2023-11-15", "web1"): (0, 0), ("2023-11-15", "web2"): (3, 1),
                       ("2023-11-16", "web1"): (0, 0), ("2023-11-16", "web2"): (2, 0)}
    parsed = json.loads(render_json(data))
    assert parsed["tables"]["hosts"] == [{"host": "web1", "failures": 5, "bans": 1, "active_bans": 1},
                                         {"host": "web2", "failures": 5, "bans": 1, "active_bans": 1}]
    rows = list(csv.DictReader(io.StringIO(render_csv(data))))
    assert {(r["key"], r["column"], r["value"]) for r in rows if r["table"] == "host_timeline"
            and r["key"].startswith("2023-11-15")} == {("2023-11-15/web1", "failures", "0"),
                                                       ("2023-11-15/web1", "bans", "0"),
                                                       ("2023-11-15/web2", "failures", "3"),
                                                       ("2023-11-15/web2", "bans", "1")}
    text_report = render_text(data)
    assert re.search(r"^Failures per host\n-+\nweb1  5  #{40}\nweb2  5  #{40}$", text_report, re.MULTILINE)
    html_report = render_html(data)
    assert "Failures per day, by host" in html_report and "Bans per day, by host" in html_report
    web2 = collect(url, SINCE, host="web2", now=NOW)
    assert list(web2.table("hosts").rows) == [("web2", 5, 1, 1)] and dict(web2.summary)["failures"] == 5


def test_report_text_is_drawn_by_rich_on_a_terminal_only(ledger_url: str, data: ReportData) -> None:
    args = ["--ledger", ledger_url, "--since", "2023-11-13"]
    piped = CliRunner().invoke(report, args)
    drawn = CliRunner().invoke(report, args, env={"FORCE_COLOR": "1", "COLUMNS": "200"})
    assert piped.exit_code == drawn.exit_code == 0, (piped.output, drawn.output)
    assert "\x1b[" not in piped.stdout and "─" not in piped.stdout and "#" * 40 in piped.stdout
    assert "\x1b[" in drawn.stdout and "─" in drawn.stdout and "#" * 40 in drawn.stdout
    plain = re.sub(r"\x1b\[[0-9;]*m", "", drawn.stdout)
    for figure, count in data.summary:
        assert re.search(rf"^ *{figure} +{count} *$", plain, re.MULTILINE), figure
    for row in data.table("top_addresses").rows:
        assert re.search(r" +".join(map(re.escape, map(format_cell, row))), plain)
