"""How many of fail2ban's own sample-log cases an imported filter decides the same way.

    python -m tests.compat.fail2ban_compat [-v] [FILTER ...]

For every sample log under fail2ban's ``tests/files/logs`` with a filter of the same
name in ``filter.d``: import the filter once per ``# filterOptions`` combination the
log asks for, then check every ``# failJSON:`` case (the JSON line and the log line
after it) against the imported grammar, after cutting the date out as fail2ban does
(``strip_date``; journal-type options get no date cut and their ``test.prefix-line``).

Scoring of one case:
- ``"match": false``: ok when the grammar gives no match or a Rejected (no ban either way).
- ``"match": true`` with an IP ``"host"``: ok when the grammar matches with that address
  (both normalised); without ``"host"``: ok when it matches.
- ``"match": true`` whose ``"host"`` is not an IP address (a host name fail2ban would
  resolve, or a failure id): journalban never resolves names, so the expected outcome is
  no ban: ok when the grammar gives no match or a Rejected. Counted in ``dns``.
- Multi-line cases are counted apart and not scored: every case of a filter with
  ``maxlines`` > 1 or a multi-line regex (also when no single-line rule is left to
  import), cases with ``"attempts"`` > 1 (several lines merged by fail2ban's multi-line
  failure id), and lines expected to match that only a ``<F-NOFAIL>`` part of a failregex
  takes (fail2ban reports them only by joining them to an earlier line of the session),
  and cases whose expected host does not appear in the line at all (taken from an
  earlier line of the same session).
- ``constraint`` / ``test.condition`` expressions are evaluated as fail2ban's test does,
  with only ``name`` and ``opts`` in scope; cases they exclude are not counted.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from journalban.grammar import Grammar, GrammarError, Match, build_grammar, normalise_address
from journalban.grammar.fail2ban import FilterImportError, ImportedGrammar, import_filter
from journalban.grammar.fail2ban.dates import strip_date

FAIL2BAN = Path("/usr/lib/python3/dist-packages/fail2ban")
LOGS = FAIL2BAN / "tests" / "files" / "logs"
FILTERS = Path("/etc/fail2ban/filter.d")
_OPTION_LINE = re.compile(r"^#+ ?(failJSON|(?:file|filter)Options|addFILE):(.+)$")
_SAFE_EXPRESSION = re.compile(r"^[\w\s'\".()=!<>,\[\]-]*$")


@dataclass
class Case:
    log: str
    line_number: int
    line: str
    data: dict[str, Any]
    options: dict[str, Any]


@dataclass
class FilterResult:
    name: str
    ok: int = 0
    total: int = 0
    dns: int = 0
    multiline: int = 0
    failures: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def _evaluate(expression: str, name: str, options: dict[str, Any]) -> bool:
    """A fail2ban test condition such as ``opts.get('mode') == 'aggressive'``."""
    if not _SAFE_EXPRESSION.match(expression) or "__" in expression:
        raise ValueError(f"unexpected condition {expression!r}")
    return bool(eval(expression, {"__builtins__": {}}, {"name": name, "opts": options}))


def read_cases(name: str, logs: Path = LOGS) -> Iterator[Case]:
    """Every failJSON case of a sample log, once per filter option set that applies."""
    files = [name]
    common: dict[str, Any] = {}
    index = 0
    while index < len(files):
        path = logs / files[index]
        index += 1
        option_sets: list[dict[str, Any]] = [{}]
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
        number = 0
        while number < len(lines):
            text = lines[number]
            number += 1
            found = _OPTION_LINE.match(text)
            if not found:
                continue
            kind, payload = found.groups()
            data = json.loads(payload)
            if kind == "fileOptions":
                common = data
                continue
            if kind == "addFILE":
                files.append(data)
                continue
            if kind == "filterOptions":
                option_sets = []
                for entry in data if isinstance(data, list) else [data]:
                    options = {**common, **entry}
                    condition = options.get("test.condition")
                    if condition and not _evaluate(condition, name, options):
                        continue
                    option_sets.append(options)
                continue
            if number >= len(lines):
                break
            line = lines[number].rstrip("\r\n")
            number += 1
            for options in option_sets:
                constraint = data.get("constraint")
                if constraint and not _evaluate(constraint, name, options):
                    continue
                yield Case(files[index - 1], number, line, data, options)


def _filter_options(options: dict[str, Any]) -> dict[str, str]:
    return {k: str(v) for k, v in options.items() if not k.startswith("test.")}


def message_for(case: Case, imported: ImportedGrammar) -> str:
    """The text fail2ban's regexes would see for this case's line."""
    if case.options.get("logtype") == "journal":
        return str(case.options.get("test.prefix-line", "")) + case.line
    return strip_date(case.line, imported.datepattern)


def _expected_address(host: Any) -> str | None:
    return normalise_address(str(host)) if host is not None else None


def nofail_rule(case: Case, grammar: Grammar, imported: ImportedGrammar) -> bool:
    """The line is one fail2ban only counts by joining it to an earlier line of the session.

    Such lines match a failregex part marked ``<F-NOFAIL>``/``<F-MLFGAINED>``: alone they
    are no failure (the importer turns them into ``nofail-N`` ignore rules); a case that
    still expects a match got it from fail2ban's multi-line failure id.
    """
    rule, _ = grammar.decide(message_for(case, imported))
    return rule is not None and rule.startswith("nofail-") and bool(case.data.get("match"))


def score(case: Case, grammar: Grammar, imported: ImportedGrammar) -> tuple[bool, bool, str]:
    """(ok, counted in dns, what happened) for one case."""
    result = grammar.match(message_for(case, imported))
    expected = bool(case.data.get("match", False))
    host = case.data.get("host")
    if not expected:
        return not isinstance(result, Match), False, str(result)
    address = _expected_address(host)
    if host is not None and address is None:
        return not isinstance(result, Match), True, str(result)
    if not isinstance(result, Match):
        return False, False, str(result)
    return address is None or result.address == address, False, str(result)


def _multiline(case: Case, imported: ImportedGrammar) -> bool:
    attempts = case.data.get("attempts")
    host = case.data.get("host")
    elsewhere = case.data.get("match") and host is not None and str(host) not in case.line
    return imported.multiline_filter or (isinstance(attempts, int) and attempts > 1) or bool(elsewhere)


def run_filter(name: str, filters: Path = FILTERS, logs: Path = LOGS) -> FilterResult:
    """Score every case of one sample log against its imported filter."""
    result = FilterResult(name)
    loaded: dict[str, tuple[ImportedGrammar, Grammar] | None] = {}
    failed_multiline: set[str] = set()
    for case in read_cases(name, logs):
        options = _filter_options(case.options)
        key = json.dumps(options, sort_keys=True)
        if key not in loaded:
            try:
                mode = options.pop("mode", None)
                imported = import_filter(filters / f"{name}.conf", mode, options)
                grammar = build_grammar(imported.text, Path(f"{imported.name}.grammar"))
                loaded[key] = (imported, grammar)
            except FilterImportError as error:
                if error.multiline:
                    loaded[key] = None
                    failed_multiline.add(key)
                else:
                    result.errors.append(f"{key}: {error}")
                    loaded[key] = None
            except GrammarError as error:
                result.errors.append(f"{key}: {error}")
                loaded[key] = None
        if key in failed_multiline:
            result.multiline += 1
            continue
        entry = loaded[key]
        if entry is not None and (_multiline(case, entry[0]) or nofail_rule(case, entry[1], entry[0])):
            result.multiline += 1
            continue
        result.total += 1
        if entry is None:
            result.failures.append(f"{case.log}:{case.line_number}: filter not imported")
            continue
        ok, dns, got = score(case, entry[1], entry[0])
        result.ok += ok
        result.dns += dns
        if not ok:
            result.failures.append(
                f"{case.log}:{case.line_number} {key}: expected {json.dumps(case.data)}, got {got}\n    {case.line}"
            )
    return result


def sample_filters(filters: Path = FILTERS, logs: Path = LOGS) -> list[str]:
    """Names of sample logs that have a filter of the same name."""
    return sorted(path.name for path in logs.iterdir() if path.is_file() and (filters / f"{path.name}.conf").is_file())


def available() -> str | None:
    """None when fail2ban's filters and sample logs are installed, else why not."""
    if not LOGS.is_dir():
        return f"fail2ban sample logs not found in {LOGS} (apt-get install fail2ban)"
    if not FILTERS.is_dir():
        return f"fail2ban filters not found in {FILTERS} (apt-get install fail2ban)"
    return None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("filters", nargs="*", help="sample log names (default: all)")
    parser.add_argument("-v", "--verbose", action="store_true", help="print each failing case")
    args = parser.parse_args(argv)
    missing = available()
    if missing:
        print(missing, file=sys.stderr)
        return 2
    names = args.filters or sample_filters()
    ok = total = dns = multiline = 0
    results = [run_filter(name) for name in names]
    for result in results:
        extra = f" (dns {result.dns})" if result.dns else ""
        extra += f" (multi-line {result.multiline}, not counted)" if result.multiline else ""
        print(f"{result.name}: {result.ok}/{result.total}{extra}")
        for error in result.errors:
            print(f"  import error: {error}")
        if args.verbose:
            for failure in result.failures:
                print(f"  FAIL {failure}")
        ok += result.ok
        total += result.total
        dns += result.dns
        multiline += result.multiline
    percent = 100.0 * ok / total if total else 0.0
    print(f"multi-line cases (not counted): {multiline}; host-name cases scored as no ban: {dns}")
    print(f"compat: {ok}/{total} ({percent:.1f}%)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
