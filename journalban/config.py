"""The TOML configuration, validated into typed objects.

Everything that can be checked without I/O is checked here, and every problem is
reported with the file, line and column of the key at fault. Whether a jail's
grammar exists or its files can be read is checked when they are opened.
The keys and their documentation live in one table, ``SCHEMA``, which the test
suite compares with ``docs/config.md``.
"""

import ipaddress
import re
import socket
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from journalban import paths
from journalban.durations import parse_duration
from journalban.firewall.base import PortSpec
from journalban.firewall.iptables import MAX_JAIL_NAME

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

FIREWALLS = ("iptables", "ipset", "nftables", "dry-run")
BLOCKTYPES = ("drop", "reject")
ON_STOP = ("keep", "remove")
SCOPES = ("host", "fleet")
# ipset set names stop at 31 characters: "jb-" + NAME + "-net4"
MAX_JAIL_NAME_FOR = {"ipset": 31 - len("jb-") - len("-net4")}
_CHAIN = re.compile(r"[A-Za-z0-9_-]{1,28}")
_JAIL_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]*")


# --- value converters: each takes the TOML value and returns the typed one or raises ValueError

def _bool(value: object) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"expected true or false, got {value!r}")
    return value


def _str(value: object) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"expected a non-empty string, got {value!r}")
    return value


def _str_list(value: object) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ValueError(f"expected a list of strings, got {value!r}")
    return tuple(value)


def _positive_int(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"expected a whole number of at least 1, got {value!r}")
    return value


def _seconds(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 60:
        raise ValueError(f"expected a number of seconds between 0 and 60, got {value!r}")
    return float(value)


def _seconds_or_off(value: object) -> float:
    """Like ``_seconds``, and 0 turns the thing off."""
    return 0.0 if value == 0 and not isinstance(value, bool) else _seconds(value)


def _bantime(value: object) -> int | None:
    """A duration, or None for a permanent ban (``-1`` or ``"forever"``)."""
    if value == -1 or value == "forever":
        return None
    return parse_duration(value)


def _number(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ValueError(f"expected a positive number, got {value!r}")
    return float(value)


def _int_range(low: int, high: int) -> Callable[[object], int]:
    def convert(value: object) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ValueError(f"expected a whole number from {low} to {high}, got {value!r}")
        return value
    return convert


def _chain(value: object) -> str:
    if not isinstance(value, str) or not _CHAIN.fullmatch(value):
        raise ValueError(f"expected a chain name like INPUT, FORWARD or DOCKER-USER, got {value!r}")
    return value


def _optional_str(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {value!r}")
    return value


def _node_name(value: object) -> str:
    """This host's name in the ledger; ``""`` is the host name."""
    if value == "":
        return socket.gethostname()[:64]
    if not isinstance(value, str) or not re.fullmatch(r"\S{1,64}", value):
        raise ValueError(f"expected a name of 1 to 64 characters without spaces, got {value!r}")
    return value


def _since(value: object) -> str:
    if value in ("now", "boot", "all"):
        return str(value)
    parse_duration(value)
    return str(value)


def _auto_bool(value: object) -> bool | None:
    """``true``/``false``, or ``"auto"`` (None): decided by the grammar once it is loaded."""
    if value == "auto":
        return None
    return _bool(value)


def _listen(value: object) -> tuple[str, ...]:
    urls = _str_list(value) if value != [] else ()
    for url in urls:
        if not re.fullmatch(r"(unix://)/\S+|(udp|tcp|tls)://(\[[0-9a-fA-F:.]+\]|[^\s:/\[\]]+):\d{1,5}", url):
            raise ValueError(f"{url!r} is not unix:///path, udp://HOST:PORT, tcp://HOST:PORT or tls://HOST:PORT")
    return urls


def _hook(value: object) -> tuple[str, ...]:
    from journalban.control.hooks import check_hook

    argv = _str_list(value) if value != [] else ()
    if argv and (problems := check_hook(argv)):
        raise ValueError("; ".join(problems))
    return argv


def _absolute_path(value: object) -> str:
    if not isinstance(value, str) or not value.startswith("/"):
        raise ValueError(f"expected an absolute path, got {value!r}")
    return value


def _networks(value: object) -> tuple[IPNetwork, ...]:
    out = []
    for item in _str_list(value):
        try:
            out.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ValueError(f"{item!r} is not an address or CIDR network") from None
    return tuple(out)


def _choice(*choices: str) -> Callable[[object], str]:
    def convert(value: object) -> str:
        if value not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}, got {value!r}")
        return str(value)
    return convert


_PORT = re.compile(r"(\d{1,5})(?::(\d{1,5}))?(?:/(tcp|udp))?")


def _ports(value: object) -> tuple[PortSpec, ...] | None:
    """``"all"`` → None; ``[22, "80/tcp", "8000:8100/udp"]`` → one PortSpec per protocol."""
    if value == "all":
        return None
    if not isinstance(value, list) or not value:
        raise ValueError(f'expected "all" or a list of ports like [22, "8000:8100/udp"], got {value!r}')
    by_protocol: dict[str, list[str]] = {}
    for item in value:
        found = _PORT.fullmatch(str(item)) if isinstance(item, int | str) else None
        numbers = [int(n) for n in found.groups()[:2] if n] if found else []
        if not found or isinstance(item, bool) or not all(1 <= n <= 65535 for n in numbers):
            raise ValueError(f"{item!r} is not a port, a range like 8000:8100, or either with /tcp or /udp")
        low, high, protocol = found.groups()
        by_protocol.setdefault(protocol or "tcp", []).append(f"{low}:{high}" if high else low)
    return tuple(PortSpec(p, tuple(ports)) for p, ports in sorted(by_protocol.items()))  # type: ignore[arg-type]


@dataclass(frozen=True)
class Key:
    """One configuration key: how to read it, its default, and what the docs say of it."""

    convert: Callable[[object], Any]
    type: str
    default: object  # the TOML value; None means required
    meaning: str


_JAIL_DEFAULTS: dict[str, Key] = {
    "bantime": Key(_bantime, "duration or \"forever\"", "10m",
                   "How long a ban lasts; `-1` or `\"forever\"` for a permanent ban."),
    "bantime_increment": Key(_bool, "boolean", False,
                             "Repeat offenders get longer bans: `bantime x bantime_factor x 2^n` for an address "
                             "banned n times before in this jail (counted in the ledger), at most `bantime_maxtime`."),
    "bantime_factor": Key(_number, "number", 1, "The factor of `bantime_increment`."),
    "bantime_maxtime": Key(parse_duration, "duration", "1w", "The longest ban `bantime_increment` gives."),
    "findtime": Key(parse_duration, "duration", "10m",
                    "The window in which `maxretry` failures open a ban; older events are too old to count."),
    "maxretry": Key(_positive_int, "integer", 5, "Failures within `findtime` that open a ban."),
    "ignoreip": Key(_networks, "list of addresses/CIDRs", ["127.0.0.0/8", "::1"],
                    "Never counted, never banned. Loopback is always ignored, listed or not."),
    "ignoreself": Key(_bool, "boolean", True, "Never ban the host's own addresses."),
    "firewall": Key(_choice(*FIREWALLS), "string", "iptables",
                    "Backend enforcing bans: `iptables`, `ipset`, `nftables` or `dry-run`."),
    "blocktype": Key(_choice(*BLOCKTYPES), "string", "drop",
                     "`drop` silently, or `reject` (ICMP port unreachable)."),
    "ports": Key(_ports, '"all" or list', "all",
                 'Ports blocked for a banned address: `"all"`, or a list like '
                 '`[22, "80/tcp", "8000:8100/udp"]` (tcp if no protocol).'),
    "chain": Key(_chain, "string", "INPUT", "Where the jail is hooked: `INPUT`, or `FORWARD`/`DOCKER-USER` "
                                            "for published container ports."),
    "log": Key(_bool, "boolean", False, "Kernel-log dropped packets, rate-limited, prefixed `journalban <jail>: `."),
    "subnet_threshold": Key(_int_range(0, 65536), "integer", 0,
                            "When this many addresses of one subnet are banned at once, one subnet ban "
                            "replaces them (0: never)."),
    "subnet_prefix4": Key(_int_range(16, 32), "integer", 24, "The IPv4 subnet size of aggregation."),
    "subnet_prefix6": Key(_int_range(32, 128), "integer", 64, "The IPv6 subnet size of aggregation."),
    "on_ban": Key(_hook, "list of strings", [],
                  "Program run after a ban: absolute path, then arguments; `{address}`, `{jail}`, `{reason}` "
                  "replaced as whole arguments, no shell, killed after 30 s."),
    "on_unban": Key(_hook, "list of strings", [], "Program run after a ban is lifted, as `on_ban`."),
    "on_stop": Key(_choice(*ON_STOP), "string", "keep",
                   "What the daemon does with the jail's bans when it stops: `keep` them in force or `remove` them."),
    "scope": Key(_choice(*SCOPES), "string", "host",
                 "On a shared ledger: `host` counts this host's failures and enforces the bans it decided; "
                 "`fleet` counts every host's failures in one window and enforces the ban on every host."),
}

SCHEMA: dict[str, dict[str, Key]] = {
    "control": {
        "socket": Key(_absolute_path, "path", "/run/journalban/control.sock",
                      "Unix socket of `journalban status/ban/unban/list/history/reload`; mode 0600, root only."),
    },
    "ledger": {
        "url": Key(_str, "string", "sqlite:////var/lib/journalban/ledger.db",
                   "SQLAlchemy URL of the ledger database; SQLite runs in WAL mode."),
        "keep_failures": Key(parse_duration, "duration", "30d",
                             "Failures older than this are purged (hourly); bans are kept."),
        "spool": Key(_absolute_path, "path", "/var/lib/journalban/spool.db",
                     "PostgreSQL ledger only: the local SQLite file that keeps what this host records "
                     "while the server is away, until it is delivered."),
    },
    "node": {
        "name": Key(_node_name, "string", "", "This host's name in the ledger, on every failure, ban and source "
                                              "position; `\"\"` is the host name."),
    },
    "reconcile": {
        "interval": Key(parse_duration, "duration", "30s",
                        "How often the firewall is compared with the ledger (also at once after every new ban)."),
    },
    "grammars": {
        "directories": Key(_str_list, "list of paths", ["/etc/journalban/grammars"],
                           "Searched for `NAME.grammar` before the grammars that ship with journalban."),
    },
    "sources.files": {
        "poll_interval": Key(_seconds, "seconds (number)", 0.2,
                             "How often followed files are checked anyway (inotify reads new lines at once)."),
        "max_line": Key(_int_range(256, 16 << 20), "integer", 65536, "Longer lines are cut and counted."),
        "rescan_interval": Key(_seconds, "seconds (number)", 5,
                               "How often a jail's file globs are expanded again for files that appeared."),
    },
    "sources.journal": {
        "enabled": Key(_bool, "boolean", True, "Read journald for the jails whose grammars apply to it."),
        "directory": Key(_optional_str, "path", "", "Read the journal in this directory instead of the system's."),
        "files": Key(_str_list, "list of paths", [], "Read these journal files instead of the system journal."),
        "since": Key(_since, "string", "now", 'Where the very first start begins: "now", "boot", "all" or a duration.'),
        "poll_interval": Key(_seconds_or_off, "seconds (number)", 0.01,
                             "How often the journal is read besides journald's change notice, which comes up "
                             "to 250 ms late; 0: on the notice alone."),
        "own_process": Key(_bool, "boolean", True,
                           "Walk the journal in a process of its own, beside the daemon's matching."),
    },
    "sources.syslog": {
        "listen": Key(_listen, "list of URLs", [], "Where the syslog listener listens; off while empty."),
        "allow": Key(_networks, "list of CIDRs", ["127.0.0.0/8", "::1"], "Senders accepted; others are refused."),
        "max_message": Key(_int_range(480, 16 << 20), "integer", 65536, "Longer messages are cut and counted."),
        "max_connections": Key(_int_range(1, 65536), "integer", 256, "Simultaneous TCP/TLS connections."),
        "idle_timeout": Key(parse_duration, "duration", "5m", "A connection silent this long is closed."),
        "cert": Key(_optional_str, "path", "", "TLS certificate (PEM) for tls:// listeners."),
        "key": Key(_optional_str, "path", "", "TLS private key (PEM) for tls:// listeners."),
        "ca": Key(_optional_str, "path", "", "CA (PEM): when set, tls:// clients must show a certificate it signed."),
    },
    "defaults": _JAIL_DEFAULTS,
    "jails.NAME": {
        "enabled": Key(_bool, "boolean", True, "A disabled jail is validated but not run."),
        "grammar": Key(_str, "string", None, "Name of the grammar (`NAME.grammar`) that recognises failures."),
        "files": Key(_str_list, "list of paths", [],
                     "Log files followed for this jail, like `tail -F`; a glob follows every file it matches."),
        "journal": Key(_auto_bool, 'boolean or "auto"', "auto",
                       "Read journald: `auto` does when the grammar applies to the journal and the jail has no files."),
        "syslog": Key(_bool, "boolean", False, "Read what the syslog listener receives."),
        "ledger_bans": Key(_bool, "boolean", False,
                           "Read every ban the ledger records in other jails (recidive); needs `applies ledger`."),
        **_JAIL_DEFAULTS,
    },
}


@dataclass(frozen=True)
class JailConfig:
    name: str
    enabled: bool
    grammar: str
    files: tuple[str, ...]
    journal: bool | None  # None: "auto", settled once the grammar is loaded
    syslog: bool
    ledger_bans: bool  # one event per ban recorded in another jail (journalban.sources.ledger_bans)
    bantime: int | None  # None: forever
    bantime_increment: bool
    bantime_factor: float
    bantime_maxtime: int
    findtime: int
    maxretry: int
    ignoreip: tuple[IPNetwork, ...]
    ignoreself: bool
    firewall: str
    blocktype: str
    ports: tuple[PortSpec, ...] | None
    chain: str
    log: bool
    subnet_threshold: int
    subnet_prefix4: int
    subnet_prefix6: int
    on_ban: tuple[str, ...]
    on_unban: tuple[str, ...]
    on_stop: str
    scope: str  # "host" | "fleet": what a shared ledger's hosts count and enforce together


@dataclass(frozen=True)
class JournalConfig:
    enabled: bool
    directory: str
    files: tuple[str, ...]
    since: str
    poll_interval: float  # 0: read on journald's change notice alone
    own_process: bool  # journalban.sources.journal_process: walked beside the main thread


@dataclass(frozen=True)
class SyslogConfig:
    listen: tuple[str, ...]
    allow: tuple[IPNetwork, ...]
    max_message: int
    max_connections: int
    idle_timeout: int
    cert: str
    key: str
    ca: str


@dataclass(frozen=True)
class Config:
    path: Path
    control_socket: str
    ledger_url: str
    keep_failures: int  # seconds
    ledger_spool: str  # [ledger] spool: kept while a PostgreSQL ledger is away (journalban.ledger.spool)
    node_name: str  # [node] name: this host in a shared ledger
    reconcile_interval: int
    grammar_dirs: tuple[Path, ...]  # the operator's, then the shipped ones
    file_poll_interval: float
    file_max_line: int
    file_rescan_interval: float  # [sources.files] rescan_interval: globs expanded again
    journal: JournalConfig
    syslog: SyslogConfig
    jails: Mapping[str, JailConfig]

    @property
    def enabled_jails(self) -> list[JailConfig]:
        return [j for j in self.jails.values() if j.enabled]


@dataclass(frozen=True)
class ConfigProblem:
    path: Path
    line: int
    column: int
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}:{self.column}: {self.message}"


class ConfigError(Exception):
    """Every problem found in one file, each with its location."""

    def __init__(self, problems: list[ConfigProblem]) -> None:
        super().__init__("\n".join(map(str, problems)))
        self.problems = problems


def default_config_path() -> Path:
    """``/etc/journalban/journalban.toml`` when present, else the embedded default."""
    return paths.SYSTEM_CONFIG if paths.SYSTEM_CONFIG.exists() else paths.DEFAULT_CONFIG


def load_config(path: Path | None = None) -> Config:
    path = path or default_config_path()
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([ConfigProblem(path, 1, 1, f"cannot read: {exc}")]) from None
    return parse_config(text, path)


_TOML_POSITION = re.compile(r"\(at line (\d+), column (\d+)\)")


def parse_config(text: str, path: Path) -> Config:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        where = _TOML_POSITION.search(str(exc))
        line, col = (int(where[1]), int(where[2])) if where else (1, 1)
        message = _TOML_POSITION.sub("", str(exc)).strip()
        raise ConfigError([ConfigProblem(path, line, col, f"invalid TOML: {message}")]) from None
    return _Validator(text, path).config(data)


class _Validator:
    """Walks the parsed TOML once, collecting problems instead of stopping at the first."""

    def __init__(self, text: str, path: Path) -> None:
        self.lines = text.splitlines()
        self.path = path
        self.problems: list[ConfigProblem] = []

    def config(self, data: dict[str, Any]) -> Config:
        known = {name.split(".")[0] for name in SCHEMA}
        for name in data:
            if name not in known:
                self.problem((), name, f"unknown section [{name}]")
        control = self.section(data, ("control",), "control")
        ledger = self.section(data, ("ledger",), "ledger")
        node = self.section(data, ("node",), "node")
        reconcile = self.section(data, ("reconcile",), "reconcile")
        grammars = self.section(data, ("grammars",), "grammars")
        sources = self.table(data, (), "sources")
        for name in sources:
            if name not in ("files", "journal", "syslog"):
                self.problem(("sources",), name, f"unknown section [sources.{name}]")
        files = self.section(data, ("sources", "files"), "sources.files")
        journal = self.section(data, ("sources", "journal"), "sources.journal")
        syslog = self.section(data, ("sources", "syslog"), "sources.syslog")
        if journal.get("directory") and journal.get("files"):
            self.problem(("sources", "journal"), "files", "[sources.journal] takes directory or files, not both")
        if any(u.startswith("tls://") for u in syslog.get("listen", ())) and not (
                syslog.get("cert") and syslog.get("key")):
            self.problem(("sources", "syslog"), "listen", "tls:// listeners need cert and key in [sources.syslog]")
        defaults = self.section(data, ("defaults",), "defaults")
        jails = {name: self.jail(name, table, defaults)
                 for name, table in self.table(data, (), "jails").items()}
        if self.problems:
            raise ConfigError(self.problems)
        return Config(
            path=self.path,
            control_socket=control["socket"],
            ledger_url=ledger["url"],
            keep_failures=ledger["keep_failures"],
            ledger_spool=ledger["spool"],
            node_name=node["name"],
            reconcile_interval=reconcile["interval"],
            grammar_dirs=(*map(Path, grammars["directories"]), paths.SHIPPED_GRAMMARS),
            file_poll_interval=files["poll_interval"],
            file_max_line=files["max_line"],
            file_rescan_interval=files["rescan_interval"],
            journal=JournalConfig(**journal),
            syslog=SyslogConfig(**syslog),
            jails=jails,
        )

    def table(self, data: dict[str, Any], where: tuple[str, ...], name: str) -> dict[str, Any]:
        value = data.get(name, {})
        if not isinstance(value, dict):
            self.problem(where, name, f"{'.'.join((*where, name))} must be a table")
            return {}
        return value

    def section(self, data: dict[str, Any], table_path: tuple[str, ...], schema_name: str,
                inherited: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Values of one table: its own keys converted, the rest from ``inherited`` or defaults."""
        table = data
        for part in table_path:
            table = self.table(table, table_path[:table_path.index(part)], part)
        schema = SCHEMA[schema_name]
        out: dict[str, Any] = {}
        for key, value in table.items():
            if key not in schema:
                self.problem(table_path, key, f"unknown key '{key}' in [{'.'.join(table_path)}]")
                continue
            try:
                out[key] = schema[key].convert(value)
            except ValueError as exc:
                self.problem(table_path, key, f"{'.'.join((*table_path, key))}: {exc}")
        for key, spec in schema.items():
            if key in out or key in table:
                continue
            if inherited is not None and key in inherited:
                out[key] = inherited[key]
            elif spec.default is None:
                self.problem(table_path, None, f"[{'.'.join(table_path)}] needs '{key}'")
            else:
                out[key] = spec.convert(spec.default)
        return out

    def jail(self, name: str, table: object, defaults: Mapping[str, Any]) -> JailConfig:
        where = ("jails", name)
        if not _JAIL_NAME.fullmatch(name):
            self.problem(("jails",), name, f"jail name '{name}' must start with a letter and hold only "
                                           "letters, digits, '-' or '_'")
        if not isinstance(table, dict):
            self.problem(("jails",), name, f"jails.{name} must be a table")
            table = {}
        values = self.section({"jails": {name: table}}, where, "jails.NAME", inherited=defaults)
        limit = MAX_JAIL_NAME_FOR.get(values.get("firewall", ""), MAX_JAIL_NAME)
        if len(name) > limit:
            self.problem(("jails",), name, f"jail name '{name}' is too long for the {values['firewall']} "
                                           f"firewall: at most {limit} characters (its objects are named jb-NAME)")
        if self.problems:
            return None  # type: ignore[return-value]  # never returned: config() raises
        return JailConfig(name=name, **{k: values[k] for k in SCHEMA["jails.NAME"]})

    def problem(self, table_path: tuple[str, ...], key: str | None, message: str) -> None:
        line, column = self.locate(table_path, key)
        self.problems.append(ConfigProblem(self.path, line, column, message))

    def locate(self, table_path: tuple[str, ...], key: str | None) -> tuple[int, int]:
        """Line and column of ``key`` in table ``table_path`` (or of the table's header).

        tomllib keeps no positions, so the text is searched: the ``[a.b]`` header
        first, then the key's assignment below it; a key that is itself a table is
        found by its own header.
        """
        header = self.header(table_path)
        if key is None:
            return header or (1, 1)
        start = header[0] if header else 0
        assignment = re.compile(rf"\s*(?:{re.escape(key)}|\"{re.escape(key)}\")\s*[=.]")
        for number in range(start, len(self.lines)):
            line = self.lines[number]
            if assignment.match(line):
                return number + 1, len(line) - len(line.lstrip()) + 1
            if line.lstrip().startswith("["):
                break
        return self.header((*table_path, key)) or header or (1, 1)

    def header(self, table_path: tuple[str, ...]) -> tuple[int, int] | None:
        if not table_path:
            return None
        parts = r"\s*\.\s*".join(rf"(?:{re.escape(p)}|\"{re.escape(p)}\")" for p in table_path)
        pattern = re.compile(rf"\s*\[\s*{parts}\s*\]")
        for number, line in enumerate(self.lines):
            if pattern.match(line):
                return number + 1, line.index("[") + 1
        return None


def problem_at(config: Config, table_path: tuple[str, ...], key: str | None, message: str) -> ConfigProblem:
    """A problem found after validation (a missing grammar, say), located in the config file."""
    try:
        text = config.path.read_text(encoding="utf-8")
    except OSError:
        text = ""
    line, column = _Validator(text, config.path).locate(table_path, key)
    return ConfigProblem(config.path, line, column, message)
