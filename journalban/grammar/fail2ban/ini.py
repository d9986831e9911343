"""fail2ban's configuration files as fail2ban reads them: includes, ``.local``, interpolation.

A filter file is read together with everything it includes: ``[INCLUDES] before``
files first, then the file, then its ``.local``, then ``after`` files (each of those
again with its own includes and ``.local``), paths relative to the including file.
Later files override earlier ones option by option; the value an option had before
an override stays reachable as ``%(known/NAME)s``.

Two substitution steps follow, as in fail2ban: ``%(NAME)s`` (configparser-style,
with ``section/NAME`` and ``known/NAME``) and then ``<NAME>`` tags that name other
options, resolved until nothing changes. Tags that name no option (``<HOST>``,
``<F-USER>``) are left for the regex translation.
"""

from __future__ import annotations

import ast
import configparser
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

_INTERPOLATION = re.compile(r"%\(([^)]+)\)s")
_TAG = re.compile(r"<([^ <>]+)>")
_MAX_DEPTH = 50


class ConfigError(Exception):
    """A filter that cannot be read; the message names the file and the key."""


@dataclass
class Config:
    """Merged sections of a filter and its includes; ``known`` holds overridden values."""

    defaults: dict[str, str] = field(default_factory=dict)
    sections: dict[str, dict[str, str]] = field(default_factory=dict)
    known: dict[str, dict[str, str]] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)

    def merge(self, parser: configparser.RawConfigParser) -> None:
        for name in parser.sections():
            values = dict(parser.items(name, raw=True))
            if name == "DEFAULT":
                self.defaults.update(values)
                continue
            current = self.sections.get(name)
            if current is None:
                self.sections[name] = dict(values)
                continue
            previous = {key: current[key] for key in values if key in current}
            self.known.setdefault(name, {}).update(previous)
            current.update(values)


def _parser(path: Path) -> configparser.RawConfigParser:
    # DEFAULT read as a plain section: Config.merge keeps it apart, per file;
    # ';' starts a comment after a value too, as in fail2ban's own parser
    parser = configparser.RawConfigParser(strict=False, interpolation=None, default_section="\0no default",
                                          inline_comment_prefixes=(";",))
    try:
        with path.open(encoding="utf-8") as handle:
            parser.read_file(handle)
    except configparser.MissingSectionHeaderError as error:
        raise ConfigError(f"{path}:{error.lineno}:1: expected a [section] header before {error.line.strip()!r}") \
            from None
    except configparser.ParsingError as error:
        lines = "\n".join(f"{path}:{number}:1: cannot parse {_source_line(text)!r}: expected a [section], "
                           "NAME = VALUE, or an indented continuation line" for number, text in error.errors)
        raise ConfigError(lines) from None
    except (OSError, UnicodeDecodeError, configparser.Error) as error:
        raise ConfigError(f"{path}: cannot read: {error}") from None
    return parser


def _source_line(quoted: str) -> str:
    """configparser keeps a bad line as its repr; the line itself, for the message."""
    try:
        return str(ast.literal_eval(quoted)).strip()
    except (ValueError, SyntaxError):
        return quoted


def _with_local(path: Path) -> list[Path]:
    local = path.with_suffix(".local")
    return [path, local] if local.is_file() and local != path else [path]


def include_order(path: Path, seen: tuple[Path, ...] = ()) -> list[Path]:
    """Every file read for ``path``, in the order fail2ban reads them."""
    order: list[Path] = []
    for file in _with_local(path):
        if file in seen:
            continue
        if not file.is_file():
            raise ConfigError(f"{file}: no such file")
        parser = _parser(file)
        before: list[Path] = []
        after: list[Path] = []
        if parser.has_section("INCLUDES"):
            for key, target in (("before", before), ("after", after)):
                if parser.has_option("INCLUDES", key):
                    for written in parser.get("INCLUDES", key, raw=True).split("\n"):
                        name = written.strip()
                        if name:
                            included = Path(name) if Path(name).is_absolute() else file.parent / name
                            if included.is_file() or included.with_suffix(".local").is_file():
                                target.extend(include_order(included, (*seen, file)))
        for item in (*before, file, *after):
            if item not in order:
                order.append(item)
    return order


def read_config(path: Path) -> Config:
    """The merged configuration of ``path`` and its includes."""
    config = Config()
    for file in include_order(path):
        config.merge(_parser(file))
        config.files.append(file)
    return config


@dataclass
class Resolver:
    """``%(NAME)s`` and ``<NAME>`` substitution over a Config, with jail-given options."""

    config: Config
    options: Mapping[str, str]  # given by the jail or ``--mode``: win over the files
    path: Path

    def raw(self, section: str, name: str) -> tuple[str, str] | None:
        """The uninterpolated value of ``name`` seen from ``section``, and its own section."""
        name = name.lower()
        if name == "__name__":  # fail2ban: the section's own name
            return section, section
        if "/" in name:
            where, _, option = name.rpartition("/")
            value: str | None
            if where == "known":
                value = self.config.known.get(section, {}).get(option)
                value = self.config.defaults.get(option) if value is None else value
                return None if value is None else (value, section)
            if where == "default":
                value = self.config.defaults.get(option)
                return None if value is None else (value, section)
            for key, values in self.config.sections.items():
                if key.lower() == where and option in values:
                    return values[option], key
            value = self.config.defaults.get(option)
            return None if value is None else (value, section)
        if name in self.options:
            return self.options[name], section
        value = self.config.sections.get(section, {}).get(name)
        value = self.config.defaults.get(name) if value is None else value
        return None if value is None else (value, section)

    def get(self, section: str, name: str, depth: int = 0) -> str | None:
        """``name`` from ``section`` with ``%(...)s`` interpolated."""
        found = self.raw(section, name)
        if found is None:
            return None
        value, where = found
        return self.interpolate(where, name.rpartition("/")[2], value, depth)

    def interpolate(self, section: str, name: str, value: str, depth: int = 0) -> str:
        if depth > _MAX_DEPTH:
            raise ConfigError(f"{self.path}: [{section}] {name}: interpolation loops")

        def substitute(found: re.Match[str]) -> str:
            key = found.group(1).lower()
            if key == name.lower():
                raise ConfigError(f"{self.path}: [{section}] {name}: refers to itself")
            raw = self.raw(section, key)
            if raw is None:
                raise ConfigError(f"{self.path}: [{section}] {name}: unknown reference %({key})s")
            return self.interpolate(raw[1], key.rpartition("/")[2], raw[0], depth + 1)

        return _INTERPOLATION.sub(substitute, value.replace("%%", "\0")).replace("\0", "%")

    def tags(self, value: str, known: Mapping[str, str]) -> str:
        """Replace ``<NAME>`` tags naming options until none is left to replace."""
        for _ in range(_MAX_DEPTH):
            changed = False

            def substitute(found: re.Match[str]) -> str:
                nonlocal changed
                name = found.group(1)
                replacement = known.get(name)
                if replacement is None:
                    replacement = self.get("Definition", name) if name not in _NOT_OPTIONS else None
                if replacement is None:
                    return found.group()
                changed = True
                return replacement

            value = _TAG.sub(substitute, value)
            if not changed:
                return value
        raise ConfigError(f"{self.path}: tags refer to each other without end: {value[:80]!r}")


# fail2ban's own tags: never looked up as options
_NOT_OPTIONS = frozenset({"HOST", "ADDR", "IP4", "IP6", "DNS", "CIDR", "SUBNET", "SKIPLINES"})
