"""The operator's commands for a running daemon: status, ban, unban, list, history, reload.

They speak to the control socket. ``list`` and ``history`` also work with the daemon
stopped, by reading the ledger itself read-only, and say so. Exit codes: 0 ok,
1 refused or failed (the daemon's error is printed), 2 usage, 3 daemon not running.
On a terminal the tables are drawn by rich; piped, they are plain aligned text; ``--json``
is for scripts.
"""

import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click
from click.shell_completion import CompletionItem

from journalban.config import Config, ConfigError, load_config
from journalban.control import render
from journalban.control.client import DaemonNotRunning, request
from journalban.control.protocol import DEFAULT_SOCKET, parse_target
from journalban.control.tables import on_terminal
from journalban.durations import parse_duration

if TYPE_CHECKING:
    from journalban.ledger.store import Ledger

Reader = Callable[["Ledger", datetime], dict[str, Any]]
EXIT_ERROR, EXIT_NOT_RUNNING = 1, 3


def _jail_names(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[CompletionItem]:
    """Shell completion of --jail from the config's enabled jails."""
    try:
        config = load_config(ctx.params.get("config_path"))
    except ConfigError:
        return []
    return [CompletionItem(j.name) for j in config.enabled_jails if j.name.startswith(incomplete)]


def _target(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    try:
        return None if value is None else parse_target(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _duration(ctx: click.Context, param: click.Parameter, value: str | None) -> int | None:
    try:
        return None if value is None else parse_duration(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _common(command: Callable[..., Any]) -> Callable[..., Any]:
    # readable=False: a 0600 socket is not "readable" to a non-root user, who must still reach it to be refused
    command = click.option("--socket", "socket_path", type=click.Path(dir_okay=False, readable=False, path_type=Path),
                           help="Control socket (default: [control] socket of the config, "
                                f"else {DEFAULT_SOCKET}).")(command)
    return click.option("-c", "--config", "config_path", type=click.Path(path_type=Path, dir_okay=False),
                        is_eager=True, help="Config file (default: /etc/journalban/journalban.toml if present, "
                                            "else the embedded default).")(command)


JAIL_OPTION = click.option("--jail", "-j", shell_complete=_jail_names, help="Jail name.")
JSON_OPTION = click.option("--json", "as_json", is_flag=True, help="Print JSON, for scripts.")
HOST_OPTION = click.option("--host", help="Only what this host ([node] name) read and decided.")


def _fail(message: str, code: int = EXIT_ERROR, problems: list[str] | None = None) -> NoReturn:
    click.echo(f"journalban: {message}", err=True)
    for problem in problems or ():
        click.echo(problem, err=True)
    raise SystemExit(code)


def _config(config_path: Path | None) -> Config:
    try:
        return load_config(config_path)
    except ConfigError as exc:
        _fail("cannot read the config:", problems=[str(p) for p in exc.problems])


def _socket(socket_path: Path | None, config_path: Path | None) -> Path:
    if socket_path is not None:
        return socket_path
    # ``control_socket`` is the config's [control] socket once config.py has it.
    return Path(getattr(_config(config_path), "control_socket", DEFAULT_SOCKET))


def _ask(socket_path: Path, message: dict[str, Any]) -> dict[str, Any]:
    """The daemon's successful reply; any failure ends the command with its exit code."""
    try:
        reply = request(socket_path, message)
    except DaemonNotRunning as exc:
        _fail(str(exc), EXIT_NOT_RUNNING)
    except PermissionError:
        _fail(f"{socket_path}: permission denied (the control socket serves root only)")
    except (OSError, ValueError) as exc:
        _fail(f"{socket_path}: {exc}")
    if not reply.get("ok"):
        _fail(str(reply.get("error", "the daemon refused")), problems=reply.get("problems"))
    return reply


def _ask_or_read(socket_path: Path, config_path: Path | None, message: dict[str, Any],
                 read: Reader) -> dict[str, Any]:
    """The daemon's reply, or with the daemon stopped what ``read(ledger, now)`` finds in the ledger."""
    try:
        reply = request(socket_path, message)
    except DaemonNotRunning:
        from journalban.ledger.queries import open_read_only

        url = _config(config_path).ledger_url
        click.echo(f"journalban is not running: reading the ledger {url} directly (read-only)", err=True)
        ledger = open_read_only(url)
        try:
            return {"ok": True, "from": "ledger", **read(ledger, datetime.now(UTC))}
        except Exception as exc:  # a missing or unreadable database, say
            _fail(f"cannot read the ledger {url}: {exc}")
        finally:
            ledger.close()
    except PermissionError:
        _fail(f"{socket_path}: permission denied (the control socket serves root only)")
    except (OSError, ValueError) as exc:
        _fail(f"{socket_path}: {exc}")
    if not reply.get("ok"):
        _fail(str(reply.get("error", "the daemon refused")))
    return {**reply, "from": "daemon"}


def _emit(reply: dict[str, Any], as_json: bool, text: Callable[[dict[str, Any], bool], str]) -> None:
    """JSON, or ``text(reply, rich)``: rich's tables when stdout is a terminal."""
    if as_json:
        click.echo(json.dumps(reply, ensure_ascii=False))
        return
    rich = on_terminal()
    click.echo(text(reply, rich), color=True if rich else None)


def _with(**fields: str | None) -> dict[str, str]:
    return {key: value for key, value in fields.items() if value is not None}


@click.command()
@_common
@JSON_OPTION
@HOST_OPTION
def status(config_path: Path | None, socket_path: Path | None, as_json: bool, host: str | None) -> None:
    """Jails, hosts, what the sources read, and the last reconcile (the daemon must run)."""
    _emit(_ask(_socket(socket_path, config_path), {"command": "status", **_with(host=host)}), as_json,
          render.status)


@click.command()
@click.argument("address", callback=_target)
@JAIL_OPTION
@click.option("--for", "seconds", callback=_duration, metavar="DURATION",
              help="How long, e.g. 3600, 10m, 1d (default: the jail's bantime).")
@click.option("--forever", is_flag=True, help="Ban until unbanned.")
@click.option("--reason", default="by the operator", show_default=True, help="Why; recorded as 'manual: TEXT'.")
@click.option("--force", is_flag=True, help="Ban even an ignored, loopback or own address, or a network covering one.")
@_common
def ban(address: str, jail: str | None, seconds: int | None, forever: bool, reason: str, force: bool,
        config_path: Path | None, socket_path: Path | None) -> None:
    """Ban ADDRESS (an IP or CIDR network) in a jail; --jail may be left out when only one is enabled."""
    if seconds is not None and forever:
        raise click.UsageError("give --for or --forever, not both")
    message: dict[str, Any] = {"command": "ban", "address": address, "reason": reason, "force": force,
                               "forever": forever}
    message.update({k: v for k, v in (("jail", jail), ("for", seconds)) if v is not None})
    reply = _ask(_socket(socket_path, config_path), message)
    record = reply["ban"]
    until = "forever" if record["forever"] else f"until {render.when(record['expires_at'])}"
    replaced = f" (replaces ban #{reply['replaced']['id']})" if reply.get("replaced") else ""
    click.echo(f"banned {record['address']} in {record['jail']} {until}{replaced}")


@click.command()
@click.argument("address", callback=_target)
@JAIL_OPTION
@_common
def unban(address: str, jail: str | None, config_path: Path | None, socket_path: Path | None) -> None:
    """Lift the bans of exactly ADDRESS (IP or CIDR) in one jail, or in every jail."""
    message = {"command": "unban", "address": address, **({"jail": jail} if jail else {})}
    reply = _ask(_socket(socket_path, config_path), message)
    jails = ", ".join(b["jail"] for b in reply["bans"])
    click.echo(f"unbanned {address} in {reply['unbanned']} jail(s)" + (f": {jails}" if jails else ""))
    for network in reply.get("still_covered_by", []):
        click.echo(f"note: {address} is still covered by the ban of {network['address']} in {network['jail']}")


@click.command("list")
@JAIL_OPTION
@HOST_OPTION
@JSON_OPTION
@_common
def list_bans(jail: str | None, host: str | None, as_json: bool, config_path: Path | None,
              socket_path: Path | None) -> None:
    """The bans in force, with the host that decided each; with the daemon stopped, read from the ledger."""
    from journalban.ledger import queries

    def read(ledger: "Ledger", now: datetime) -> dict[str, Any]:
        return {"bans": [b.as_json() for b in queries.active_bans(ledger, now, jail, host)]}

    message = {"command": "list", **_with(jail=jail, host=host)}
    reply = _ask_or_read(_socket(socket_path, config_path), config_path, message, read)
    _emit(reply, as_json, lambda r, rich: render.bans(r["bans"], rich))


@click.command()
@click.argument("address", callback=_target)
@HOST_OPTION
@JSON_OPTION
@_common
def history(address: str, host: str | None, as_json: bool, config_path: Path | None,
            socket_path: Path | None) -> None:
    """Every failure and ban of ADDRESS, with reasons, the host that saw each, and how each ban ended."""
    from journalban.ledger import queries

    def read(ledger: "Ledger", now: datetime) -> dict[str, Any]:
        return queries.history(ledger, address, host=host).as_json()

    reply = _ask_or_read(_socket(socket_path, config_path), config_path,
                         {"command": "history", "address": address, **_with(host=host)}, read)
    _emit(reply, as_json, render.history)


@click.command()
@_common
def reload(config_path: Path | None, socket_path: Path | None) -> None:
    """Make the daemon load its config again; on problems it keeps the running one."""
    if socket_path is None:
        try:
            load_config(config_path)  # to find the socket; a broken config is refused here already
        except ConfigError as exc:
            _fail("the new config has problems; the running one stays (the daemon was not asked):",
                  problems=[str(p) for p in exc.problems])
    _ask(_socket(socket_path, config_path), {"command": "reload"})
    click.echo("reloaded")


COMMANDS = (status, ban, unban, list_bans, history, reload)
