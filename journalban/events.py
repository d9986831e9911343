"""The small frozen records that cross journalban's stage boundaries.

Sources emit ``Event``; the matcher turns an event that a jail's grammar
recognises into a ``Failure``; the detector turns failures into ``BanDecision``.
Each has a readable ``str`` so a stage's output can be printed and compared.
"""

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

# The expiry of a permanent ban: a real time, so plain SQL such as
# ``expires_at > CURRENT_TIMESTAMP`` treats it as active without special cases.
FOREVER = datetime(9999, 12, 31, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Event:
    """One log record from any source, before anything is matched."""

    time: datetime  # UTC; for file lines the moment the line was read
    source: str  # where it came from, e.g. "file:/var/log/nginx/access.log"
    message: str  # the text grammars match
    host: str | None = None
    app: str | None = None
    pid: int | None = None
    fields: Mapping[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.time.isoformat()} {self.source} {self.message!r}"


@dataclass(frozen=True, slots=True)
class Failure:
    """An event that a jail's grammar calls a failure, with the offending address."""

    jail: str
    address: str  # normalised by ipaddress; IPv4-mapped IPv6 folded to IPv4
    time: datetime  # event time (UTC), the one windows count in
    rule: str  # "grammar/rule"
    text: str  # the matched message
    source: str
    captures: Mapping[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.time.isoformat()} {self.jail} {self.address} {self.rule}"


def slot_setters(cls: type) -> tuple[Callable[[Any, Any], None], ...]:
    """Each field's slot descriptor ``__set__``, in field order: sets one slot of a new
    instance directly, where the frozen ``__init__`` goes through ``object.__setattr__``."""
    return tuple(cls.__dict__[item.name].__set__ for item in fields(cls))


_new = object.__new__
NO_FIELDS: Mapping[str, str] = MappingProxyType({})  # the fields of every event that has none, shared
_EVENT_SLOTS = slot_setters(Event)
_FAILURE_SLOTS = slot_setters(Failure)


def new_event(time: datetime, source: str, message: str, host: str | None, app: str | None, pid: int | None,
              fields: Mapping[str, str]) -> Event:
    """``Event(...)`` with every field given in order, for a source's per-entry loop: about
    half the cost of the class call (no ``__init__``, no ``object.__setattr__`` per field)."""
    event = _new(Event)
    set_time, set_source, set_message, set_host, set_app, set_pid, set_fields = _EVENT_SLOTS
    set_time(event, time)
    set_source(event, source)
    set_message(event, message)
    set_host(event, host)
    set_app(event, app)
    set_pid(event, pid)
    set_fields(event, fields)
    return event


def new_failure(jail: str, address: str, time: datetime, rule: str, text: str, source: str,
                captures: Mapping[str, str]) -> Failure:
    """``Failure(...)`` with every field given in order, for the matcher's per-event path
    (a quarter of the cost of the class called with keywords); see ``new_event``."""
    failure = _new(Failure)
    set_jail, set_address, set_time, set_rule, set_text, set_source, set_captures = _FAILURE_SLOTS
    set_jail(failure, jail)
    set_address(failure, address)
    set_time(failure, time)
    set_rule(failure, rule)
    set_text(failure, text)
    set_source(failure, source)
    set_captures(failure, captures)
    return failure


@dataclass(frozen=True, slots=True)
class BanDecision:
    """The detector's verdict that an address must be banned in a jail."""

    jail: str
    address: str
    start: datetime
    expiry: datetime
    reason: str
    failures: tuple[Failure, ...]  # the detector's: only the one that tipped it (windows keep times)
    replaces: tuple[str, ...] = ()  # host bans a subnet ban takes over
    count: int = 0  # failures in the window behind the ban; 0: len(failures)
    window_start: datetime | None = None  # time of the window's oldest; None: the oldest of failures

    @property
    def failure_count(self) -> int:
        return self.count or len(self.failures)

    @property
    def first_failure_at(self) -> datetime:
        return self.window_start or min(f.time for f in self.failures)

    def __str__(self) -> str:
        until = "forever" if self.expiry >= FOREVER else f"until {self.expiry.isoformat()}"
        return f"ban {self.jail} {self.address} {until}: {self.reason}"
