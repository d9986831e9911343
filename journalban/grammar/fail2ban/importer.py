"""A fail2ban filter file to the text of a journalban grammar.

Each failregex becomes a ``fail`` rule holding one ``/regex/``; with a
``prefregex``, the failregex takes the place of its ``<F-CONTENT>`` part, so the
rule checks the prefix and the content in one match. ignoreregexes become
``ignore`` rules the same way. Rules are matched against the line after its date
is cut out (``strip_date``), as fail2ban does: a grammar reading files says
``applies file format=fail2ban``, with the filter's ``datepattern`` declared.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import GrammarError
from ..loader import build_grammar
from . import regex as rx
from .dates import date_regexes
from .ini import ConfigError, Resolver, read_config

MODE_KEY = "mode"
_NEEDS_QUOTES = re.compile(r"[\s\"'#]")


class ImportError_(Exception):
    """A filter that cannot be imported; the message names the file and the key.

    ``multiline`` is set when nothing was left because every failregex needs several lines.
    """

    def __init__(self, message: str, multiline: bool = False) -> None:
        super().__init__(message)
        self.multiline = multiline


@dataclass
class ImportedGrammar:
    """The grammar text, what it could not carry over, and how lines must be prepared."""

    name: str
    text: str
    warnings: list[str] = field(default_factory=list)
    datepattern: str | None = None  # for strip_date
    multiline: bool = False  # some failregexes were left out: they need several lines
    multiline_filter: bool = False  # maxlines > 1 or a regex spanning lines: all is multi-line
    skipped: int = 0  # failregexes not imported


def _lines(value: str | None) -> list[str]:
    if value is None:
        return []
    return [line.strip() for line in value.split("\n") if line.strip()]


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _name(path: Path, mode: str | None) -> str:
    stem = re.sub(r"[^A-Za-z0-9_.-]", "-", path.stem)
    return f"{stem}-{mode}" if mode else stem


def _datepattern_line(value: str, warnings: list[str], where: str) -> str | None:
    """The ``datepattern`` statement of the grammar: each of fail2ban's formats as one string;
    one that Python's ``re`` cannot take is left out, with a warning."""
    kept = []
    for line in _lines(value):
        try:
            date_regexes(line)
        except re.error as error:
            warnings.append(f"{where}: datepattern {line!r} does not compile ({error.msg}); left out")
            continue
        kept.append(f"'{line}'" if "'" not in line else _quote(line))
    return "datepattern " + " ".join(kept) if kept else None


def _journal_lines(value: str, warnings: list[str], where: str) -> list[str]:
    """``journalmatch`` groups to trusted ``applies journal`` lines; others are dropped."""
    out: list[str] = []
    for group in value.split("+"):
        pairs = group.split()
        if not pairs or any("=" not in pair for pair in pairs):
            continue
        line = "applies journal " + " ".join(
            key + "=" + (_quote(val) if _NEEDS_QUOTES.search(val) else val)
            for key, _, val in (pair.partition("=") for pair in pairs)
        )
        try:
            build_grammar(f"grammar probe\n{line}\nfail f: <address>\n", Path("probe"))
        except GrammarError as error:
            warnings.append(f"{where}: journalmatch {' '.join(pairs)!r} is not used: {error.message}")
            continue
        out.append(line)
    return out


def import_filter(path: Path, mode: str | None = None, options: dict[str, str] | None = None, *,
                  name: str | None = None, reads: str = "auto") -> ImportedGrammar:
    """Import one fail2ban filter file; raises ImportError_ naming the file and key.

    ``reads``: ``"auto"`` (journal when the journalmatch gives a trusted selector,
    else file lines), or ``"file"`` / ``"journal"`` as a jail's backend demands.
    """
    given = dict(options or {})
    if mode is not None:
        given[MODE_KEY] = mode
    try:
        config = read_config(path)
    except ConfigError as error:
        raise ImportError_(str(error)) from None
    if "Definition" not in config.sections:
        raise ImportError_(f"{path}: no [Definition] section")
    resolver = Resolver(config, given, path)
    init = {key: val for key, val in config.sections.get("Init", {}).items()}
    init_values: dict[str, str] = {}
    try:
        for key in init:
            value = resolver.get("Init", key)
            if value is not None:
                init_values[key] = value
        init_values.update(given)
        resolver = Resolver(config, {**init_values, **given}, path)

        def option(key: str) -> str | None:
            value = resolver.get("Definition", key)
            return None if value is None else resolver.tags(value, init_values)

        failregex = _lines(option("failregex"))
        ignoreregex = _lines(option("ignoreregex"))
        prefregex = (option("prefregex") or "").strip() or None
        datepattern = (option("datepattern") or "").strip() or None
        journalmatch = (option("journalmatch") or "").strip()
        maxlines = (option("maxlines") or "1").strip()
    except ConfigError as error:
        raise ImportError_(str(error)) from None
    name = name or _name(path, mode)
    where = str(path)
    imported = ImportedGrammar(name, "", [], datepattern)
    warnings = imported.warnings
    if not failregex:
        raise ImportError_(f"{path}: [Definition] failregex is empty")
    try:
        lines_buffered = int(maxlines)
    except ValueError:
        raise ImportError_(f"{path}: [Definition] maxlines {maxlines!r} is not a number") from None
    if lines_buffered > 1:
        imported.multiline = imported.multiline_filter = True
        warnings.append(
            f"{where}: maxlines = {lines_buffered}: journalban matches one line at a time; "
            "only single-line failregexes are imported"
        )

    prefix = rx.translate(prefregex) if prefregex else None
    if prefix is not None and "content" not in prefix.markers:
        warnings.append(f"{where}: prefregex has no <F-CONTENT>; it is used as an extra check")
    rules: list[str] = []
    used_dns = used_host = False

    nofails: list[str] = []

    def build(kind: str, index: int, raw: str, extra: str = "") -> str | None:
        nonlocal used_dns, used_host
        label = f"{kind} {index + 1}"
        part = rx.translate(raw)
        used_dns |= part.dns
        used_host |= part.host
        if part.multiline:
            imported.multiline = imported.multiline_filter = True
            warnings.append(f"{where}: {label} spans several lines; not imported")
            return None
        body = part.text
        markers = part.markers & {"nofail", "mlfgained"}
        if kind == "failregex" and markers:
            # fail2ban: when this group took part, the line is no failure (it only feeds
            # its multi-line bookkeeping); an ignore rule that needs the group says so
            guard = "".join(f"(?({marker})|(?!))" for marker in sorted(markers))
            nofail = build("nofail", index, raw, extra=guard)
            if nofail is not None:
                nofails.append(nofail)
            imported.multiline = True
        if prefix is not None:
            pref = prefix.text
            for group in rx.group_names(pref) & rx.group_names(body):
                if group != "content":
                    pref = rx.rename_group(pref, group, None if group == "address" else f"pref_{group}")
            if "content" in prefix.markers:
                body = rx.combine(pref, body)
            else:
                body = f"(?={rx.as_search(pref)}$){rx.as_search(body)}"
        body = rx.as_search(body) + extra
        try:
            re.compile(body)
        except re.error as error:
            warnings.append(f"{where}: {label} does not compile ({error}); not imported")
            return None
        names = rx.group_names(body)
        if kind == "failregex" and "address" not in names:
            warnings.append(f"{where}: {label} has no address (<HOST>, <ADDR>...); not imported")
            return None
        for group in names & {"stamp", "content"}:
            body = rx.rename_group(body, group, None)
        if kind != "nofail":
            for group in names & {"nofail", "mlfgained"}:
                body = rx.rename_group(body, group, None)
        if kind == "failregex":
            return f"fail fail-{index + 1}: /{rx.escape_slashes(body)}/"
        return f"ignore {kind.replace('regex', '')}-{index + 1}: /{rx.escape_slashes(body)}/"

    for index, raw in enumerate(failregex):
        rule = build("failregex", index, raw)
        if rule is None:
            imported.skipped += 1
        else:
            rules.append(rule)
    ignores: list[str] = []
    for index, raw in enumerate(ignoreregex):
        rule = build("ignoreregex", index, raw)
        if rule is not None:
            ignores.append(rule)
        if prefix is not None and len(ignoreregex) < len(failregex) - 2:
            # fail2ban then also tries it on the whole line, before the prefregex
            whole = rx.as_search(rx.translate(raw).text)
            ignores.append(f"ignore ignore-{index + 1}-line: /{rx.escape_slashes(whole)}/")
    if used_host:
        warnings.append(
            f"{where}: <HOST> matches IP addresses only; lines naming a host name are not "
            "matched (journalban never resolves DNS)"
        )
    if used_dns:
        warnings.append(f"{where}: <DNS> taken as an address: host names are never resolved")
    if not rules:
        raise ImportError_(
            f"{path}: [Definition] failregex: no single-line rule with an address",
            multiline=imported.multiline_filter,
        )

    applies = _journal_lines(journalmatch, warnings, where) if journalmatch and reads != "file" else []
    if reads == "journal" and not applies:
        raise ImportError_(f"{path}: [Definition] journalmatch {journalmatch!r} gives no trusted journal "
                           "selector (a field journald sets itself, such as _SYSTEMD_UNIT)")
    if journalmatch and not applies and reads != "file":
        warnings.append(f"{where}: no trusted journalmatch; the grammar reads raw file lines")
    header = [
        f"grammar {name}",
        "description " + _quote(f"imported from fail2ban filter {path.name}" + (f", mode {mode}" if mode else "")),
    ]
    if applies:
        header.extend(applies)
    else:
        header.append("applies file format=fail2ban")  # the date cut out of each line, as fail2ban does
        declared = _datepattern_line(datepattern, warnings, where) if datepattern else None
        if declared is not None:
            header.append(declared)
    header.append("time read")
    for warning in warnings:
        header.append("# warning: " + warning.replace("\n", " "))
    text = "\n".join([*header, "", *ignores, *nofails, *rules]) + "\n"
    try:
        build_grammar(text, Path(f"{name}.grammar"))
    except GrammarError as error:
        raise ImportError_(f"{path}: the imported grammar does not load: {error}") from None
    imported.text = text
    return imported


def main_import(filter_path: Path | str, mode: str | None, output: Path | str | None) -> int:
    """``journalban import fail2ban FILTER [--mode M] [-o OUT]``: 0 on success, else 1."""
    path = Path(filter_path)
    try:
        imported = import_filter(path, mode)
    except ImportError_ as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    for warning in imported.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if output is None or str(output) == "-":
        sys.stdout.write(imported.text)
        return 0
    try:
        Path(output).write_text(imported.text, encoding="utf-8")
    except OSError as error:
        print(f"error: {output}: cannot write: {error.strerror}", file=sys.stderr)
        return 1
    return 0
