"""A batch's record on SQLite as a few statements over JSON, run without the GIL.

``executemany`` takes the GIL back for every row it binds, so SQLite's part of a
record could not run beside the thread that reads. Here each kind of row (the new
bans, the links to earlier failures, the batch's failures) goes to SQLite as one
JSON text read by ``json_each``: each statement is one ``sqlite3_step``, with the
GIL let go throughout. What Python must work out (which failure rests on which ban)
is done by ``prepare`` in the calling thread; ``Prepared.write`` only runs the
statements, so the pipeline can run it in a thread of its own (``pipeline``).

Ban ids are not needed in Python: a row names its ban by jail and address, and
SQLite looks the id up: the pair's one active ban (new, or in force and joined), or,
for a ban recorded already ended (an old log replayed), the pair's newest. This is
the ``in_bulk`` case, one decision per pair; the others go through ``store``'s
statements. SQLite 3.38 or later (``->>``): ``AVAILABLE`` says whether this one is.
"""

import json
import sqlite3
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection

from journalban.events import BanDecision
from journalban.events import Failure as FailureEvent
from journalban.ledger.batch_bans import joined
from journalban.ledger.models import MATCHED_TEXT_LIMIT, SOURCE_LIMIT
from journalban.ledger.views import ban_seconds, day_of, network_of

AVAILABLE = sqlite3.sqlite_version_info >= (3, 38)
ROWS = 5000  # failures per INSERT: a JSON text of about 1 MB
ACTIVE, ENDED = 0, 1  # how a row's ban is found: the pair's active ban, or its newest
Row = tuple[object, ...]


def _ban_id(jail: int, address: int, kind: int, row: str = "value") -> str:
    """SQL for the id of the ban a JSON row (``row``) names at these positions."""
    pair = f"b.jail = {row} ->> {jail} AND b.address = {row} ->> {address}"
    return (f"CASE {row} ->> {kind} WHEN {ACTIVE} THEN (SELECT b.id FROM bans b WHERE {pair} AND b.ended_at IS NULL) "
            f"WHEN {ENDED} THEN (SELECT max(b.id) FROM bans b WHERE {pair}) END")


# [jail, address] of decisions not yet past their expiry: a ban of theirs past its time,
# not yet lifted by a reconcile, ends first (the one-active-ban index must see it ended).
_END_STALE = ("UPDATE bans SET ended_at = ?2, end_reason = 'expired' FROM json_each(?1) AS j "
              "WHERE bans.jail = j.value ->> 0 AND bans.address = j.value ->> 1 AND bans.ended_at IS NULL "
              "AND bans.expires_at <= ?2")
# [jail, address, started_at, expires_at, reason, ended_at, end_reason, day, network, seconds]:
# a new row unless the pair has a ban in force (its failures join it) and this one is not history.
_OPEN = ("INSERT INTO bans (jail, address, started_at, expires_at, reason, ended_at, end_reason, node, day, network, "
         "seconds) SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, value ->> 5, value ->> 6, "
         "?2, value ->> 7, value ->> 8, value ->> 9 FROM json_each(?1) "
         "WHERE value ->> 5 IS NOT NULL OR NOT EXISTS (SELECT 1 FROM bans b WHERE b.jail = value ->> 0 "
         "AND b.address = value ->> 1 AND b.ended_at IS NULL) ORDER BY key")
# The same rows: [jail, address, id, node] of the bans in force that decisions not yet past
# their expiry find (after _END_STALE: those are current), as one JSON text (one step).
_JOINED = ("SELECT json_group_array(json_array(b.jail, b.address, b.id, b.node)) FROM json_each(?1) AS j "
           "JOIN bans b ON b.jail = j.value ->> 0 AND b.address = j.value ->> 1 AND b.ended_at IS NULL "
           "WHERE j.value ->> 5 IS NULL")
# [jail, address, first failure's time, kind, fleet-scoped]: the unlinked failures of earlier
# batches behind a ban (this host's only, unless its jail counts the fleet's).
_LINK_EARLIER = ("UPDATE failures SET ban_id = " + _ban_id(0, 1, 3, row="j.value")
                 + " FROM json_each(?1) AS j WHERE failures.jail = j.value ->> 0 AND failures.address = j.value ->> 1 "
                 "AND failures.ban_id IS NULL AND failures.occurred_at >= j.value ->> 2 "
                 "AND (j.value ->> 4 OR failures.node = ?2)")
# [occurred_at, jail, address, rule, text, source, network, ban's jail, ban's address, kind]
_INSERT = ("INSERT INTO failures (occurred_at, jail, address, rule, text, source, network, ban_id, recorded_at, node, "
           "day) SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, value ->> 4, value ->> 5, value ->> 6, "
           + _ban_id(7, 8, 9) + ", ?2, ?3, substr(value ->> 0, 1, 10) FROM json_each(?1)")


@dataclass(frozen=True, slots=True)
class Prepared:
    """A record's statements and their JSON texts, ready to run in any thread."""

    stale: str | None
    bans: str | None
    links: str | None
    failures: tuple[str, ...]
    now: str
    node: str

    def write(self, connection: Connection) -> None:
        """Run the statements, in this order, on a connection inside a transaction."""
        if self.stale is not None:
            connection.exec_driver_sql(_END_STALE, (self.stale, self.now))
        if self.bans is not None:
            in_force = connection.exec_driver_sql(_JOINED, (self.bans,)).scalar_one()
            for jail, address, ban_id, node in json.loads(in_force):  # said, as the other paths say it
                joined(jail, address, ban_id, node)
            connection.exec_driver_sql(_OPEN, (self.bans, self.node))
        if self.links is not None:  # before this batch's failures exist: earlier ones only
            connection.exec_driver_sql(_LINK_EARLIER, (self.links, self.node))
        for rows in self.failures:
            connection.exec_driver_sql(_INSERT, (rows, self.now, self.node))


def prepare(bans: Sequence[BanDecision], now: datetime, node: str,
            fleet_jails: Collection[str], stored: Callable[[datetime], str], networks: dict[str, str],
            link: Callable[[int, BanDecision, Mapping[int, FailureEvent], dict[int, int]], bool],
            batch: Mapping[int, FailureEvent]) -> Prepared:
    """The statements that record ``batch`` (the failures by id(), as ``store`` builds it) and
    ``bans``; ``link`` is ``store.Ledger._link``, given a decision's index for its ban id."""
    stale: list[tuple[str, str]] = []
    opened: list[tuple[object, ...]] = []
    kinds: list[int] = []
    for decision in bans:
        history = decision.expiry <= now
        kinds.append(ENDED if history else ACTIVE)
        if not history:
            stale.append((decision.jail, decision.address))
        opened.append((decision.jail, decision.address, stored(decision.start), stored(decision.expiry),
                       decision.reason, stored(decision.expiry) if history else None,
                       "expired" if history else None, day_of(decision.start), network_of(decision.address),
                       ban_seconds(decision.start, decision.expiry)))
    ban_of: dict[int, int] = {}  # id() of a failure of this batch -> index of the decision it rests on
    earlier = [(d.jail, d.address, stored(d.first_failure_at), kinds[n], d.jail in fleet_jails)
               for n, d in enumerate(bans) if not link(n, d, batch, ban_of)]
    chunks = [_dumps(part) for part in _rows(batch, ban_of, bans, kinds, stored, networks)]
    return Prepared(_dumps(stale) if stale else None, _dumps(opened) if opened else None,
                    _dumps(earlier) if earlier else None, tuple(chunks), stored(now), node)


def _rows(batch: Mapping[int, FailureEvent], ban_of: Mapping[int, int], bans: Sequence[BanDecision],
          kinds: Sequence[int], stored: Callable[[datetime], str], networks: dict[str, str]) -> Iterator[list[Row]]:
    """The failure rows, ``ROWS`` at a time (only their JSON is kept: a burst's rows all at
    once were megabytes more at the peak); one loop, its lookups in locals, no call per row."""
    stamps: dict[datetime, str] = {}
    named = [(d.jail, d.address, kind) for d, kind in zip(bans, kinds, strict=True)]
    unlinked = (None, None, None)
    part: list[Row] = []
    for key, f in batch.items():
        at = stamps.get(f.time)
        if at is None:
            at = stamps[f.time] = stored(f.time)
        network = networks.get(f.address)
        if network is None:
            network = networks[f.address] = network_of(f.address)
        n = ban_of.get(key)
        part.append((at, f.jail, f.address, f.rule, f.text[:MATCHED_TEXT_LIMIT], f.source[:SOURCE_LIMIT], network,
                     *(unlinked if n is None else named[n])))
        if len(part) == ROWS:
            yield part
            part = []
    if part:
        yield part


def _dumps(rows: object) -> str:
    return json.dumps(rows, ensure_ascii=False, check_circular=False)
