"""The bans the ledger records, as events for the jails that read them (recidive).

A ban decided in one jail becomes one event whose message is the ban's own line
(``str(BanDecision)``: ``ban sshd 203.0.113.9 until ...: REASON``), stamped with
the ban's start. The pipeline matches these events in the same batch, and so the
same transaction, as the ban itself: the count a recidive jail keeps is made of
failure rows in the ledger, which a restart reads back like any other window.
"""

from collections.abc import Collection, Iterable

from journalban.events import BanDecision, Event
from journalban.grammar.applies import LEDGER_SOURCE

LEDGER = LEDGER_SOURCE  # the source name of these events, and the pipeline's key for their readers


def ban_event(ban: BanDecision) -> Event:
    """One ban as the event a ``applies ledger`` grammar reads."""
    return Event(time=ban.start, source=LEDGER, message=str(ban))


def ban_events(bans: Iterable[BanDecision], readers: Collection[str]) -> list[Event]:
    """Events for the bans of jails other than ``readers``: a jail that reads bans never
    counts its own, nor another reader's, so its bans cannot feed back into it."""
    return [ban_event(ban) for ban in bans if ban.jail not in readers]
