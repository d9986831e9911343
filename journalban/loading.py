"""Loading the config and the grammars its jails use: everything `journalban check` checks.

Where a jail's setting depends on its grammar (``journal = "auto"``), it is
settled here, so the daemon only ever sees plain booleans.
"""

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from journalban.config import Config, ConfigError, JailConfig, load_config, problem_at
from journalban.grammar import Grammar, check_examples, load_grammars
from journalban.grammar.compiler import backtracking_warnings


class LoadError(Exception):
    """Every problem found, each a ``file:line:column: message`` line."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class Loaded:
    config: Config  # with every jail's ``journal`` settled to True or False
    grammars: dict[str, Grammar]  # by name, only those enabled jails use
    warnings: tuple[str, ...] = ()


def load(path: Path | None = None) -> Loaded:
    try:
        config = load_config(path)
    except ConfigError as exc:
        raise LoadError([str(p) for p in exc.problems]) from None
    available, errors = load_grammars(config.grammar_dirs)
    # A broken grammar no jail uses must not stop the daemon; one a jail uses must.
    used_names = {jail.grammar for jail in config.jails.values()}
    problems = [str(e) for e in errors if e.path.stem in used_names]
    warnings: list[str] = [f"warning: {e}" for e in errors if e.path.stem not in used_names]
    used: dict[str, Grammar] = {}
    jails: dict[str, JailConfig] = {}
    for configured in config.jails.values():
        grammar = available.get(configured.grammar)
        if grammar is None:
            searched = ", ".join(map(str, config.grammar_dirs))
            problems.append(str(problem_at(config, ("jails", configured.name), "grammar",
                                           f"no grammar named '{configured.grammar}' in {searched}")))
            continue
        jail = _settle_sources(configured, grammar)
        jails[jail.name] = jail
        problems += _source_problems(config, jail, grammar)
        if jail.journal and jail.syslog:
            warnings.append(str(problem_at(config, ("jails", jail.name), "syslog",
                                           "warning: this jail reads both journald and the syslog listener; "
                                           "a listener fed from the same journal counts every failure twice")))
        problems += [str(e) for e in check_examples(grammar)]
        warnings += [f"warning: {grammar.path}: {w}" for w in backtracking_warnings(grammar.rules, grammar.name)
                     if grammar.name not in used]
        if jail.enabled:
            used[grammar.name] = grammar
    if problems:
        raise LoadError(sorted(set(problems), key=problems.index))
    return Loaded(dataclasses.replace(config, jails=jails), used, tuple(warnings))


def _settle_sources(jail: JailConfig, grammar: Grammar) -> JailConfig:
    if jail.journal is None:
        auto = bool(grammar.journal_matches) and not jail.files and not jail.syslog and not jail.ledger_bans
        return dataclasses.replace(jail, journal=auto)
    return jail


def _source_problems(config: Config, jail: JailConfig, grammar: Grammar) -> list[str]:
    where = ("jails", jail.name)
    problems = []
    if jail.files and grammar.file_format == "none":
        problems.append(problem_at(config, where, "files", f"grammar '{grammar.name}' reads only journal "
                                                          "events, but this jail follows files"))
    if jail.journal and not grammar.journal_matches:
        problems.append(problem_at(config, where, "journal", f"grammar '{grammar.name}' has no "
                                                            "'applies journal' line to select entries with"))
    if jail.syslog and not grammar.syslog_apps:
        problems.append(problem_at(config, where, "syslog", f"grammar '{grammar.name}' has no "
                                                           "'applies syslog' line naming the apps to read"))
    if jail.syslog and not config.syslog.listen:
        problems.append(problem_at(config, where, "syslog", "syslog = true, but [sources.syslog] listen "
                                                           "names no address to listen on"))
    if jail.ledger_bans and not grammar.reads_ledger:
        problems.append(problem_at(config, where, "ledger_bans", f"grammar '{grammar.name}' has no "
                                                                "'applies ledger' line: it cannot read bans"))
    if not (jail.files or jail.journal or jail.syslog or jail.ledger_bans):
        problems.append(problem_at(config, where, None, f"jail '{jail.name}' reads nothing: give it files, "
                                                        "journal = true, syslog = true or ledger_bans = true"))
    return [str(p) for p in problems]
