"""Loading the config and the grammars its jails use: everything `journalban check` checks."""

from dataclasses import dataclass
from pathlib import Path

from journalban.config import Config, ConfigError, load_config, problem_at
from journalban.grammar import Grammar, check_examples, load_grammars


class LoadError(Exception):
    """Every problem found, each a ``file:line:column: message`` line."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class Loaded:
    config: Config
    grammars: dict[str, Grammar]  # by name, only those enabled jails use


def load(path: Path | None = None) -> Loaded:
    try:
        config = load_config(path)
    except ConfigError as exc:
        raise LoadError([str(p) for p in exc.problems]) from None
    available, errors = load_grammars(config.grammar_dirs)
    problems = [str(e) for e in errors]
    used: dict[str, Grammar] = {}
    for jail in config.jails.values():
        grammar = available.get(jail.grammar)
        if grammar is None:
            searched = ", ".join(map(str, config.grammar_dirs))
            problems.append(str(problem_at(config, ("jails", jail.name), "grammar",
                                           f"no grammar named '{jail.grammar}' in {searched}")))
            continue
        if grammar.source_kind != "file":
            problems.append(str(problem_at(config, ("jails", jail.name), "grammar",
                                           f"grammar '{jail.grammar}' reads {grammar.source_kind} "
                                           "events, but this jail follows files")))
        problems += [str(e) for e in check_examples(grammar)]
        if jail.enabled:
            used[grammar.name] = grammar
    if problems:
        raise LoadError(sorted(set(problems), key=problems.index))
    return Loaded(config, used)
