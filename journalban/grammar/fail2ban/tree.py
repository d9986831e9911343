"""A whole ``/etc/fail2ban`` tree to a journalban config and one grammar per enabled jail.

``import_tree(base, grammar_dir)`` reads the jails as fail2ban does (``jails.py``),
imports each enabled jail's filter with its ``[mode=...]`` and other arguments,
and maps the jail's keys onto the ``[jails.NAME]`` keys of ``docs/config.md``.
Whatever has no journalban equivalent is listed in ``dropped`` (jail, key, why)
and, for actions, as a comment in the config: nothing is left out silently.
"""

from __future__ import annotations

import ipaddress
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

from ...durations import format_duration
from .actions import enforcement
from .importer import ImportError_, import_filter
from .ini import ConfigError
from .jails import JailTree, read_tree
from .values import boolean, extract_options, seconds, words

RECIDIVE_FILTER = "recidive"
RECIDIVE_GRAMMAR = "recidive"  # shipped: reads the ledger's bans (`applies ledger`)
_REFERENCE = re.compile(r"%\((?:default/)?([^)/]+)\)s", re.I)
_JAIL_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]*")
MAX_JAIL_NAME = {"ipset": 23}  # set names jb-NAME-net4 stop at 31; chains jb-NAME at 28
DEFAULT_MAX_JAIL_NAME = 25
# jail keys mapped below (filter options among them are passed to the filter)
_MAPPED = frozenset({
    "enabled", "filter", "mode", "maxretry", "findtime", "bantime", "ignoreip", "ignoreself",
    "bantime.increment", "bantime.factor", "bantime.maxtime", "logpath", "backend", "port", "protocol",
    "banaction", "banaction_allports", "action", "chain", "blocktype", "journalmatch", "datepattern",
    "maxlines", "prefregex", "logtype", "maxmatches",
})
_FILTER_OPTIONS = ("journalmatch", "datepattern", "maxlines", "prefregex")
# keys that change what fail2ban does even when inherited from [DEFAULT]; why they are not carried over
_UNSUPPORTED = {
    "usedns": "journalban never resolves host names",
    "ignorecommand": "journalban runs no command to decide whether to ignore an address",
    "bantime.formula": "journalban's increment is bantime x bantime_factor x 2^n",
    "bantime.multipliers": "journalban's increment is bantime x bantime_factor x 2^n",
    "bantime.rndtime": "journalban adds no random time to bans",
    "bantime.overalljails": "journalban counts earlier bans per jail",
    "logtimezone": "journalban reads stamps in the host's zone or the stamp's own",
    "logencoding": "journalban reads UTF-8 (invalid bytes replaced)",
    "failregex": "a jail's own failregex is not imported; the filter's are",
    "ignoreregex": "a jail's own ignoreregex is not imported; the filter's are",
}
_HARMLESS = {"usedns": ("warn", "no"), "ignorecommand": ("",), "logencoding": ("auto", "utf-8", "utf8"),
             "bantime.overalljails": ("false",)}


@dataclass(frozen=True)
class Dropped:
    """One thing not carried over: which jail, which key, and why."""

    jail: str
    key: str
    why: str

    def __str__(self) -> str:
        return f"{self.jail}: {self.key}: {self.why}"


@dataclass
class TreeImport:
    """The config text, the grammar files by name, and everything reported about them."""

    config: str = ""
    grammars: dict[str, str] = field(default_factory=dict)  # grammar name -> text
    dropped: list[Dropped] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # jails that could not be imported, file errors
    jails: list[str] = field(default_factory=list)


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return json.dumps(str(value))


def _filter_path(tree: JailTree, name: str) -> Path | None:
    for suffix in (".conf", ".local"):
        path = tree.base / "filter.d" / f"{name}{suffix}"
        if path.is_file():
            return path
    return None


@dataclass
class _Jail:
    """One jail being converted: its TOML lines and what it drops."""

    tree: JailTree
    name: str
    result: TreeImport
    lines: list[str] = field(default_factory=list)

    def drop(self, key: str, why: str) -> None:
        self.result.dropped.append(Dropped(self.name, key, why))

    def value(self, key: str) -> str | None:
        return self.tree.value(self.name, key)

    def set(self, key: str, value: object) -> None:
        self.lines.append(f"{key} = {_toml(value)}")

    def duration(self, key: str, target: str, permanent: bool = False) -> None:
        written = self.value(key)
        if written is None:
            return
        try:
            value = seconds(written)
        except ValueError as error:
            self.drop(key, f"{error}; journalban's default is used")
            return
        if permanent and value < 0:
            self.set(target, -1)
        elif value > 0:
            self.set(target, format_duration(value))
        else:
            self.drop(key, f"{written!r} is not a positive duration; journalban's default is used")


def _limits(jail: _Jail) -> None:
    maxretry = jail.value("maxretry")
    if maxretry is not None:
        if maxretry.isdigit() and int(maxretry) >= 1:
            jail.set("maxretry", int(maxretry))
        else:
            jail.drop("maxretry", f"{maxretry!r} is not a whole number of at least 1; journalban's default is used")
    jail.duration("findtime", "findtime")
    jail.duration("bantime", "bantime", permanent=True)
    increment = jail.value("bantime.increment")
    if increment is not None:
        try:
            increments = boolean(increment)
        except ValueError as error:
            jail.drop("bantime.increment", str(error))
            increments = False
        jail.set("bantime_increment", increments)
        factor = jail.value("bantime.factor")
        if factor is not None:
            try:
                jail.set("bantime_factor", float(factor) if "." in factor else int(factor))
            except ValueError:
                jail.drop("bantime.factor", f"{factor!r} is not a number")
        if jail.value("bantime.maxtime") is None and increments:
            jail.drop("bantime.maxtime", "not set: fail2ban has no limit, journalban's default (1w) applies")
        jail.duration("bantime.maxtime", "bantime_maxtime")
    maxmatches, maxretry = jail.value("maxmatches"), jail.value("maxretry")
    if maxmatches is not None and maxmatches != maxretry:
        jail.drop("maxmatches", "journalban keeps every failure of a ban in the ledger")


def _ignores(jail: _Jail) -> None:
    written = jail.value("ignoreip")
    if written is not None:
        kept = []
        for item in words(written):
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                jail.drop("ignoreip", f"{item!r} is not an address or network (journalban never resolves names)")
                continue
            kept.append(item)
        jail.set("ignoreip", kept)
    ignoreself = jail.value("ignoreself")
    if ignoreself is not None:
        try:
            jail.set("ignoreself", boolean(ignoreself))
        except ValueError as error:
            jail.drop("ignoreself", str(error))


def _sources(jail: _Jail) -> str:
    """``files`` or ``journal``; returns what the grammar must read: ``"file"`` or ``"journal"``."""
    backend = jail.value("backend") or "auto"
    logpath = jail.value("logpath")
    backend_name, backend_options = extract_options(backend)
    if backend_options:
        jail.drop("backend", f"options {backend_options} are not carried over")
    if backend_name.startswith("systemd"):
        jail.set("journal", True)
        if logpath:
            jail.drop("logpath", "not read with backend = systemd (as in fail2ban)")
        return "journal"
    if backend_name not in ("auto", "pyinotify", "polling", "gamin"):
        jail.drop("backend", f"{backend_name!r} is unknown; files are followed")
    files = []
    for line in (logpath or "").split("\n"):
        path, _, tail = line.strip().rpartition(" ")
        path, tail = (path, tail) if tail in ("head", "tail") else (line.strip(), "")
        if not path:
            continue
        if tail == "head":
            jail.drop("logpath", f"{path}: 'head' (read from the start): journalban reads a file from its end "
                                 "at the first start and from the start when it is created or rotated")
        files.append(path)  # a glob too: the file source follows every file it matches
    if not files:
        jail.drop("logpath", "no log file named: the jail reads nothing")
    jail.set("files", files)
    jail.set("journal", False)
    return "file"


def _enforcement(jail: _Jail) -> None:
    try:
        found = enforcement(jail.value("action"), jail.value("port"), jail.value("protocol"),
                            jail.value("chain"), jail.value("blocktype"))
    except ValueError as error:
        raise ConfigError(f"[{jail.name}] {error}") from None
    for key, value in (("firewall", found.firewall), ("ports", found.ports), ("chain", found.chain),
                       ("blocktype", found.blocktype)):
        if value is not None:
            jail.set(key, value)
    if found.log:
        jail.set("log", True)
    for key, why in found.dropped:
        jail.drop(key, why)
    for note in found.notes:
        jail.lines.append(f"# not carried over: action {note}")
    limit = MAX_JAIL_NAME.get(found.firewall or "", DEFAULT_MAX_JAIL_NAME)
    if len(jail.name) > limit:
        raise ConfigError(f"[{jail.name}] the name is longer than {limit} characters, the most journalban's "
                          f"{found.firewall or 'iptables'} firewall takes (its objects are named jb-NAME)")


def _unsupported(jail: _Jail) -> None:
    own = set(jail.tree.own_keys(jail.name))
    for key, why in _UNSUPPORTED.items():
        written = jail.value(key)
        if written is not None and written.strip().lower() not in _HARMLESS.get(key, ()):
            jail.drop(key, why)
    for key in sorted(own - _MAPPED - set(_UNSUPPORTED) - _helpers(jail)):
        jail.drop(key, "no journalban equivalent")


def _helpers(jail: _Jail) -> set[str]:
    """Keys other values refer to (``action_``, ``tcpport``): carried over through what uses them."""
    config = jail.tree.config
    texts = [*config.sections.get(jail.name, {}).values(), *config.defaults.values()]
    return {name.lower() for text in texts for name in _REFERENCE.findall(text)}


def _grammar(jail: _Jail, reads: str) -> str:
    """Import the jail's filter; returns the grammar name."""
    written = jail.value("filter")
    if not written:
        raise ConfigError(f"[{jail.name}] filter is empty: nothing recognises failures")
    try:
        filter_name, options = extract_options(written)
    except ValueError as error:
        raise ConfigError(f"[{jail.name}] filter: {error}") from None
    path = _filter_path(jail.tree, filter_name)
    if path is None:
        raise ConfigError(f"[{jail.name}] filter {filter_name!r} does not exist: no "
                          f"{jail.tree.base / 'filter.d' / filter_name}.conf or .local")
    mode = options.pop("mode", None)
    options.setdefault("logtype", reads)
    for key in _FILTER_OPTIONS:
        if key in jail.tree.own_keys(jail.name) and (value := jail.value(key)) is not None:
            options[key] = value
    name = "f2b-" + jail.name
    try:
        imported = import_filter(path, mode, options, name=name, reads=reads)
    except ImportError_ as error:
        raise ConfigError(f"[{jail.name}] filter {filter_name!r}: {error}") from None
    for warning in imported.warnings:
        jail.drop("filter", warning)
    jail.result.grammars[name] = imported.text
    return name


def _recidive(jail: _Jail) -> bool:
    """fail2ban's recidive filter reads fail2ban's own log of bans; journalban's reads its ledger's bans."""
    written = jail.value("filter") or ""
    if not written.startswith(RECIDIVE_FILTER) or extract_options(written)[0] != RECIDIVE_FILTER:
        return False
    jail.lines.append(f"grammar = {_toml(RECIDIVE_GRAMMAR)}")
    jail.set("ledger_bans", True)
    jail.set("journal", False)
    jail.drop("filter", f"{written!r}: fail2ban's own log of bans is replaced by the shipped "
                        f"'{RECIDIVE_GRAMMAR}' grammar reading the bans of the ledger (ledger_bans = true)")
    if jail.value("logpath"):
        jail.drop("logpath", f"{jail.value('logpath')!r}: not read; the ledger's bans are")
    return True


def _convert(tree: JailTree, name: str, result: TreeImport) -> list[str]:
    if not _JAIL_NAME.fullmatch(name):
        raise ConfigError(f"[{name}] is not a journalban jail name (a letter, then letters, digits, '-' or '_')")
    jail = _Jail(tree, name, result)
    if not _recidive(jail):
        reads = _sources(jail)
        jail.lines.insert(0, f"grammar = {_toml(_grammar(jail, reads))}")
    _limits(jail)
    _ignores(jail)
    _enforcement(jail)
    _unsupported(jail)
    return [f"[jails.{name}]", *jail.lines, ""]


def import_tree(base: Path, grammar_dir: Path) -> TreeImport:
    """Convert the enabled jails of the tree at ``base``; grammars are looked up in ``grammar_dir``."""
    result = TreeImport()
    try:
        tree = read_tree(base)
    except ConfigError as error:
        result.errors.extend(str(error).split("\n"))
        return result
    sections: list[str] = []
    for name in tree.jail_names:
        before = len(result.dropped), set(result.grammars)
        try:
            if not tree.enabled(name):
                continue
            sections.extend(_convert(tree, name, result))
            result.jails.append(name)
        except (ConfigError, ValueError) as error:  # ValueError: a NAME[options] that does not parse
            del result.dropped[before[0]:]
            for grammar in set(result.grammars) - before[1]:
                del result.grammars[grammar]
            result.errors.append(f"jail {name} not imported: {error}")
    header = [
        f"# journalban configuration imported from the fail2ban tree {base}",
        "# by `journalban grammar import-fail2ban --tree`; see docs/grammars.md, 'Coming from fail2ban'.",
        "",
        "[grammars]",
        f"directories = {_toml([str(grammar_dir)])}",
        "",
    ]
    result.config = "\n".join(header + sections)
    return result


def main_import_tree(base: Path | str, output: Path | str) -> int:
    """``journalban grammar import-fail2ban --tree DIR -o OUT``: 0 when every enabled jail was imported."""
    from ...loading import LoadError, load

    out = Path(output).absolute()
    grammar_dir = out / "grammars"
    result = import_tree(Path(base), grammar_dir)
    for dropped in result.dropped:
        print(f"not carried over: {dropped}", file=sys.stderr)
    if not result.config:
        for error in result.errors:
            print(f"error: {error}", file=sys.stderr)
        return 1
    try:
        grammar_dir.mkdir(parents=True, exist_ok=True)
        for name, text in result.grammars.items():
            (grammar_dir / f"{name}.grammar").write_text(text, encoding="utf-8")
        (out / "journalban.toml").write_text(result.config, encoding="utf-8")
    except OSError as error:
        print(f"error: {error.filename}: cannot write: {error.strerror}", file=sys.stderr)
        return 1
    problems: list[str] = []
    try:
        load(out / "journalban.toml")
    except LoadError as error:
        problems = error.problems
    for problem in [*result.errors, *problems]:
        print(f"error: {problem}", file=sys.stderr)
    print(f"{out / 'journalban.toml'}: {len(result.jails)} jails imported ({', '.join(result.jails) or 'none'}), "
          f"{len(result.errors)} not, {len(result.dropped)} things not carried over", file=sys.stderr)
    return 1 if result.errors or problems else 0
