"""The ``journalban`` command: the operator's edge of the program."""

import json
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, NoReturn

import click

from journalban import __version__, logs
from journalban.config import ConfigError, load_config
from journalban.durations import parse_duration
from journalban.grammar import Grammar, GrammarError, load_grammar, load_grammars
from journalban.loading import Loaded, LoadError, load
from journalban.logs import JOURNAL_SOCKET

if TYPE_CHECKING:
    from journalban.ledger.store import Ledger

CONFIG_OPTION = click.option(
    "-c", "--config", "config_path", type=click.Path(path_type=Path, dir_okay=False),
    help="Config file (default: /etc/journalban/journalban.toml if present, else the embedded default).")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="journalban")
def main() -> None:
    """Log-driven intrusion prevention with a ledger you can query."""


@main.command()
@CONFIG_OPTION
@click.option("-v", "--verbose", is_flag=True, help="Log debug messages too.")
@click.option("--log-to", "log_to", type=click.Choice(["auto", "journal", "stderr"]), default="auto",
              show_default=True, help="auto: the journal, with JOURNALBAN_* fields, when systemd connected "
                                      "stderr to it (JOURNAL_STREAM); stderr otherwise.")
@click.option("--journal-socket", type=click.Path(path_type=Path, dir_okay=False), default=JOURNAL_SOCKET,
              show_default=True, help="journald's native socket (a journal namespace's, say).")
def run(config_path: Path | None, verbose: bool, log_to: str, journal_socket: Path) -> None:
    """Run the daemon in the foreground, logging to the journal under systemd, else to stderr."""
    logs.setup(verbose, log_to, journal_socket)
    loaded = _load_or_exit(config_path)
    import asyncio  # the daemon's imports are not needed by `check` or `replay`

    from journalban.daemon import Daemon, DaemonFailed

    logging.getLogger(__name__).info("journalban %s starting with %s", __version__, loaded.config.path)
    try:
        asyncio.run(Daemon(loaded.config, loaded.grammars).run())
    except DaemonFailed as exc:  # exit status 1 with the reason, not a traceback
        raise SystemExit(str(exc)) from None


@main.command()
@CONFIG_OPTION
def check(config_path: Path | None) -> None:
    """Validate the config and the grammars it uses; exit 1 listing every error."""
    loaded = _load_or_exit(config_path)
    for warning in loaded.warnings:
        click.echo(warning, err=True)
    jails = ", ".join(j.name for j in loaded.config.enabled_jails) or "none"
    click.echo(f"{loaded.config.path}: ok (jails: {jails}; grammars: {', '.join(sorted(loaded.grammars)) or 'none'})")


@main.command()
@click.option("-g", "--grammar", "grammar_name", required=True, help="Grammar name, or path to a .grammar file.")
@click.argument("log", type=click.File("rb"), required=False)
@click.option("--journal", "journal_dir", type=click.Path(exists=True, file_okay=False),
              help="Replay a journal directory instead of a log file.")
@CONFIG_OPTION
@click.option("--format", "file_format", type=click.Choice(["raw", "syslog", "fail2ban"]),
              help="How lines are read (default: what the grammar expects); fail2ban: its date cut out "
                   "first, as fail2ban does for the filters import-fail2ban converts.")
@click.option("--maxretry", type=click.IntRange(min=1), default=5, show_default=True)
@click.option("--findtime", default="10m", show_default=True, help="Duration, e.g. 600, 10m, 1h.")
@click.option("--bantime", default="10m", show_default=True, help="Duration of the bans written with --ledger.")
@click.option("--show-missed", type=click.IntRange(min=0), default=0, help="Print up to N lines no rule matched.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as one JSON object.")
@click.option("--matches", is_flag=True, help="Print one JSON object per matched line instead of a summary.")
@click.option("--ledger", "ledger_url", help="Write the failures and the bans they would cause into this ledger.")
@click.option("--workers", type=click.IntRange(min=0), default=0,
              help="Processes reading shares of a big LOG file (default 0: one per CPU; 1: this one alone).")
def replay(grammar_name: str, log: BinaryIO | None, journal_dir: str | None, config_path: Path | None,
           file_format: str | None, maxretry: int, findtime: str, bantime: str, show_missed: int, as_json: bool,
           matches: bool, ledger_url: str | None, workers: int) -> None:
    """Replay LOG (a file, or - for stdin) through a grammar, as fail2ban-regex does."""
    from journalban.replay import ReplayOptions, journal_events, replay_file
    from journalban.replay import replay as replay_events
    from journalban.replay_output import print_summary

    grammar = _grammar_or_exit(grammar_name, config_path)
    if (log is None) == (journal_dir is None):
        _fail(["replay: give a LOG file (or -), or --journal DIR"])
    file_format = file_format or grammar.file_format
    if log is not None and file_format not in ("raw", "syslog", "fail2ban"):
        _fail([f"replay: grammar '{grammar.name}' reads only journal events: use --journal DIR, "
               "or --format raw|syslog|fail2ban to read a file anyway"])
    try:
        windows = parse_duration(findtime), parse_duration(bantime)
    except ValueError as exc:
        _fail([f"replay: {exc}"])
    ledger = _ledger(ledger_url) if ledger_url else None
    options = ReplayOptions(maxretry, windows[0], windows[1], show_missed,
                            (lambda m: click.echo(json.dumps(m.as_json()))) if matches else None, ledger,
                            workers=workers)
    try:
        if log is not None:
            summary = replay_file(log, grammar, file_format, f"file:{getattr(log, 'name', '-')}", options)
        else:
            assert journal_dir is not None
            summary = replay_events(journal_events(journal_dir, grammar), grammar, options)
    finally:
        if ledger is not None:
            ledger.close()
    if as_json:
        click.echo(json.dumps(summary.as_json()))
    elif not matches:
        print_summary(summary)


@main.group()
def grammar() -> None:
    """Work with grammars."""


@grammar.command("test")
@click.argument("targets", nargs=-1)
@CONFIG_OPTION
def grammar_test(targets: tuple[str, ...], config_path: Path | None) -> None:
    """Run the examples of grammars (names or files; default: every grammar found)."""
    from journalban.grammar import run_grammar_tests

    try:
        directories = load_config(config_path).grammar_dirs
    except ConfigError as exc:
        _fail([str(p) for p in exc.problems])
    raise SystemExit(run_grammar_tests(list(targets), directories, sys.stdout))


@grammar.command("import-fail2ban")
@click.argument("filter_path", metavar="[FILTER.conf]", required=False,
                type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--mode", help="The filter's mode (e.g. sshd's normal, ddos, extra, aggressive).")
@click.option("--tree", "tree", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="A whole fail2ban directory (e.g. /etc/fail2ban): its enabled jails to -o DIR.")
@click.option("-o", "--output", default="-", show_default=True,
              help="Grammar file to write, or - for stdout; with --tree the directory to write into.")
def grammar_import_fail2ban(filter_path: Path | None, mode: str | None, tree: Path | None, output: str) -> None:
    """Convert a fail2ban filter into a grammar, or with --tree a fail2ban directory into a config.

    Warnings and what was not carried over go to stderr."""
    from journalban.grammar.fail2ban import main_import, main_import_tree

    if (filter_path is None) == (tree is None):
        _fail(["import-fail2ban: give a FILTER.conf, or --tree DIR"])
    if tree is not None:
        if output == "-" or mode is not None:
            _fail(["import-fail2ban --tree: give -o DIR (the config and grammars/ are written there); "
                   "modes come from the jails"])
        raise SystemExit(main_import_tree(tree, output))
    assert filter_path is not None
    raise SystemExit(main_import(filter_path, mode, output))


@main.group()
def db() -> None:
    """Manage the ledger database."""


@db.command()
@CONFIG_OPTION
def upgrade(config_path: Path | None) -> None:
    """Bring the ledger's schema to the newest revision (on PostgreSQL: the only way it changes)."""
    from sqlalchemy.exc import SQLAlchemyError

    from journalban.ledger.store import Ledger

    try:
        config = load_config(config_path)
    except ConfigError as exc:
        _fail([str(p) for p in exc.problems])
    ledger = Ledger(config.ledger_url, node=config.node_name)
    try:
        ledger.upgrade()
    except SQLAlchemyError as exc:
        _fail([f"cannot upgrade the ledger at {ledger.safe_url}: {exc}"])
    finally:
        ledger.close()
    click.echo(f"ledger at {ledger.safe_url} is up to date")


@db.command("copy")
@click.option("--to", "target_url", required=True, metavar="URL",
              help="SQLAlchemy URL of the empty ledger to copy into, e.g. postgresql+psycopg://user@/db?host=/run/postgresql")
@CONFIG_OPTION
def copy(target_url: str, config_path: Path | None) -> None:
    """Copy every row of the config's ledger into another, empty one (schemas are upgraded first)."""
    from sqlalchemy.exc import SQLAlchemyError

    from journalban.ledger.copy import CopyError, copy_ledger

    try:
        config = load_config(config_path)
    except ConfigError as exc:
        _fail([str(p) for p in exc.problems])
    try:
        counts = copy_ledger(config.ledger_url, target_url, node=config.node_name)
    except (CopyError, SQLAlchemyError) as exc:
        _fail([f"copy failed, nothing was copied: {exc}"])
    click.echo(", ".join(f"{count} {table}" for table, count in counts.items()) + " copied")


def _grammar_or_exit(name: str, config_path: Path | None) -> Grammar:
    """A grammar by file path, or by name in the config's grammar directories."""
    if name.endswith(".grammar") or "/" in name:
        try:
            return load_grammar(Path(name))
        except GrammarError as exc:
            _fail([str(exc)])
    try:
        directories = load_config(config_path).grammar_dirs
    except ConfigError as exc:
        _fail([str(p) for p in exc.problems])
    for directory in directories:  # the first directory holding NAME.grammar wins, as for the daemon
        candidate = directory / f"{name}.grammar"
        if candidate.is_file():
            try:
                found = load_grammar(candidate)
            except GrammarError as exc:
                _fail([str(exc)])
            if found.name == name:
                return found
    grammars, errors = load_grammars(directories)  # a file whose name differs from its grammar's
    if name not in grammars:
        _fail([str(e) for e in errors] + [f"no grammar named '{name}' in {', '.join(map(str, directories))}"])
    return grammars[name]


def _ledger(url: str) -> "Ledger":
    from journalban.ledger.store import Ledger

    ledger = Ledger(url)
    ledger.upgrade()
    return ledger


def _load_or_exit(config_path: Path | None) -> Loaded:
    try:
        return load(config_path)
    except LoadError as exc:
        _fail(exc.problems)


def _fail(problems: list[str]) -> NoReturn:
    for problem in problems:
        click.echo(problem, err=True)
    raise SystemExit(1)


def _attach_operator_commands() -> None:
    """status, ban, unban, list, history, reload (the control socket's commands) and report."""
    from journalban.operator_cli import COMMANDS
    from journalban.report.command import report

    for command in (*COMMANDS, report):
        main.add_command(command)


_attach_operator_commands()
