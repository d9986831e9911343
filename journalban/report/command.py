"""``journalban report``: read the ledger, print or write the report.

The lead attaches it to the CLI with ``main.add_command(report)``.
"""

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import NoReturn

import click

from journalban.config import ConfigError, load_config
from journalban.control.tables import on_terminal
from journalban.durations import parse_duration
from journalban.report.data import ReportData
from journalban.report.html import render_html
from journalban.report.machine import render_csv, render_json
from journalban.report.text import render_text

RENDERERS = {"text": render_text, "json": render_json, "csv": render_csv, "html": render_html}
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}([ T]\d{2}:\d{2}(:\d{2})?)?")


def parse_since(value: str, now: datetime) -> datetime:
    """``24h``, ``7d`` (back from ``now``) or a UTC date ``2026-11-01`` (or date and time)."""
    value = value.strip()
    if _DATE.fullmatch(value):
        moment = datetime.fromisoformat(value)
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    return now - timedelta(seconds=parse_duration(value))


@click.command()
@click.option("--since", default="24h", show_default=True, help="How far back: a duration (24h, 7d) or a UTC date.")
@click.option("--jail", help="Only this jail.")
@click.option("--host", help="Only the failures and bans of this node ([node] name).")
@click.option("--format", "fmt", type=click.Choice(sorted(RENDERERS)), default="text", show_default=True)
@click.option("-o", "--output", type=click.Path(path_type=Path, dir_okay=False), help="Write here, not stdout.")
@click.option("--ledger", "ledger_url", help="Ledger URL (default: the config's [ledger] url).")
@click.option("-c", "--config", "config_path", type=click.Path(path_type=Path, dir_okay=False),
              help="Config file (default: /etc/journalban/journalban.toml if present, else the embedded default).")
def report(since: str, jail: str | None, host: str | None, fmt: str, output: Path | None, ledger_url: str | None,
           config_path: Path | None) -> None:
    """Summarise the ledger: bans, failures, offenders, rules, hours, ban times."""
    from sqlalchemy.exc import SQLAlchemyError  # here: every other command starts without SQLAlchemy

    from journalban.report.collect import collect

    now = datetime.now(UTC)
    try:
        start = parse_since(since, now)
    except ValueError as exc:
        _fail(f"report: --since: {exc}")
    if ledger_url is None:
        try:
            ledger_url = load_config(config_path).ledger_url
        except ConfigError as exc:
            _fail(*map(str, exc.problems))
    try:
        data: ReportData = collect(ledger_url, start, jail, host, now=now)
    except SQLAlchemyError as exc:
        _fail(f"report: cannot read the ledger at {ledger_url}: {exc.__class__.__name__}: {exc.args[0]}")
    if fmt == "text" and output is None and on_terminal():
        click.echo(render_text(data, rich=True), nl=False, color=True)
        return
    rendered = RENDERERS[fmt](data)
    if output is None:
        click.echo(rendered, nl=False)
    else:
        output.write_text(rendered, encoding="utf-8")


def _fail(*problems: str) -> NoReturn:
    for problem in problems:
        click.echo(problem, err=True)
    raise SystemExit(1)
