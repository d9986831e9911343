"""The ``journalban`` command: the operator's edge of the program."""

import asyncio
import logging
import sys
from pathlib import Path
from typing import NoReturn

import click

from journalban import __version__
from journalban.config import ConfigError, load_config
from journalban.loading import Loaded, LoadError, load

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
def run(config_path: Path | None, verbose: bool) -> None:
    """Run the daemon in the foreground, logging to stderr."""
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    loaded = _load_or_exit(config_path)
    from journalban.daemon import Daemon  # the daemon's imports are not needed by `check`

    logging.getLogger(__name__).info("journalban %s starting with %s", __version__, loaded.config.path)
    asyncio.run(Daemon(loaded.config, loaded.grammars).run())


@main.command()
@CONFIG_OPTION
def check(config_path: Path | None) -> None:
    """Validate the config and the grammars it uses; exit 1 listing every error."""
    loaded = _load_or_exit(config_path)
    jails = ", ".join(j.name for j in loaded.config.enabled_jails) or "none"
    click.echo(f"{loaded.config.path}: ok (jails: {jails}; grammars: {', '.join(sorted(loaded.grammars)) or 'none'})")


@main.group()
def db() -> None:
    """Manage the ledger database."""


@db.command()
@CONFIG_OPTION
def upgrade(config_path: Path | None) -> None:
    """Bring the ledger's schema to the newest revision."""
    from journalban.ledger.store import Ledger

    try:
        config = load_config(config_path)
    except ConfigError as exc:
        _fail([str(p) for p in exc.problems])
    ledger = Ledger(config.ledger_url)
    try:
        ledger.upgrade()
    finally:
        ledger.close()
    click.echo(f"ledger at {config.ledger_url} is up to date")


def _load_or_exit(config_path: Path | None) -> Loaded:
    try:
        return load(config_path)
    except LoadError as exc:
        _fail(exc.problems)


def _fail(problems: list[str]) -> NoReturn:
    for problem in problems:
        click.echo(problem, err=True)
    raise SystemExit(1)
