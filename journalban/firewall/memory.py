"""A firewall held in memory: the ``dry-run`` backend, and the stand-in unit tests use."""

import logging
from collections import deque
from collections.abc import Sequence

from journalban.firewall.base import Actual, Diff, Entry, JailLayout

log = logging.getLogger(__name__)
APPLIED_KEPT = 100  # the newest diffs ``applied`` shows: a dry-run daemon applies one per batch of bans for months


class MemoryFirewall:
    """Records what it would do; ``entries`` and ``applied`` (the newest ``APPLIED_KEPT``
    diffs) show it to tests."""

    name = "dry-run"

    def __init__(self) -> None:
        self.entries: set[Entry] = set()
        self.jails: set[str] = set()
        self.applied: deque[Diff] = deque(maxlen=APPLIED_KEPT)

    def read(self, jails: Sequence[JailLayout]) -> Actual:
        names = {j.name for j in jails}
        mine = frozenset(e for e in self.entries if e[0] in names)
        return Actual(entries=mine, layout_ok=names <= self.jails)

    def apply(self, jails: Sequence[JailLayout], diff: Diff) -> None:
        log.info("dry-run firewall: %s", diff)
        self.jails |= {j.name for j in jails}
        self.entries -= diff.remove
        self.entries |= diff.add
        self.applied.append(diff)

    def remove(self, jails: Sequence[JailLayout]) -> None:
        names = {j.name for j in jails}
        self.jails -= names
        self.entries = {e for e in self.entries if e[0] not in names}
