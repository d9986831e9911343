"""Turning an event into a jail's failure: its grammar, and the rule for event time."""

import re
from collections.abc import Callable, Iterable

from journalban.events import Event, Failure
from journalban.grammar import Grammar, Match, Rejected


class JailMatcher:
    """One jail's grammar applied to events.

    Event time is the event's own time (for file lines, the moment they were read)
    unless the grammar declares its stamp trustworthy; a stamp in the future
    counts as now, so a skewed clock can neither hide nor postpone a failure.
    """

    def __init__(self, jail: str, grammar: Grammar) -> None:
        self.jail = jail
        self.grammar = grammar

    def match(self, event: Event) -> Failure | Rejected | None:
        if not self.grammar.applies_to(event):
            return None
        found = self.grammar.match(event.message)
        if not isinstance(found, Match):
            return found
        time = event.time
        if self.grammar.trusts_stamp and found.stamp is not None:
            stamped = self.grammar.stamp_time(found.stamp, event.time)
            if stamped is not None:
                time = min(stamped, event.time)
        return Failure(jail=self.jail, address=found.address, time=time,
                       rule=f"{self.grammar.name}/{found.rule}", text=event.message,
                       source=event.source, captures=found.captures)


def prefilter(grammars: Iterable[Grammar]) -> Callable[[str], bool]:
    """A cheap test on a raw line: False only when no rule of these grammars can match it,
    because the line lacks every rule's required literal. Lets noise skip parsing."""
    literals = sorted({rule.prefilter for g in grammars for rule in g.rules}, key=len)
    if not literals or literals[0] == "":
        return lambda line: True
    search = re.compile("|".join(map(re.escape, literals))).search  # one C-level scan per line
    return lambda line: search(line) is not None
