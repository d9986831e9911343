"""The per-entry constructors of the frozen records build what the classes build: every
field set, equal, and just as frozen."""

import dataclasses
import inspect
import pickle
from collections.abc import Callable
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

import pytest

from journalban.events import Event, Failure, new_event, new_failure
from journalban.grammar.grammar import Match, _new_match

NOW = datetime(2026, 11, 26, 5, 30, tzinfo=UTC)
FIELDS = MappingProxyType({"_SYSTEMD_UNIT": "ssh.service"})

CASES: list[tuple[type, Callable[..., Any], tuple[Any, ...]]] = [
    (Event, new_event, (NOW, "journal", "Failed password for root", "web1", "sshd", 4242, FIELDS)),
    (Event, new_event, (NOW, "journal", "", None, None, None, FIELDS)),
    (Event, new_event, (NOW, "file:/var/log/auth.log", "Invalid user x", None, None, None, {})),
    (Failure, new_failure, ("sshd", "203.0.113.9", NOW, "sshd/failed", "Failed password", "journal",
                            MappingProxyType({"user": "root"}))),
    (Match, _new_match, ("failed", "203.0.113.9", MappingProxyType({"user": "root", "port": "22"}), None)),
    (Match, _new_match, ("failed", "2001:db8::1", MappingProxyType({}), "Nov 26 05:30:00")),
]


@pytest.mark.parametrize(("cls", "new", "values"), CASES, ids=lambda case: getattr(case, "__name__", ""))
def test_the_fast_constructor_builds_what_the_class_builds(
        cls: type, new: Callable[..., Any], values: tuple[Any, ...]) -> None:
    names = [item.name for item in dataclasses.fields(cls)]
    assert list(inspect.signature(new).parameters) == names  # a field added to the class must be added here
    built: Any = cls(*values)
    made: Any = new(*values)
    assert dataclasses.replace(made, **{names[0]: values[0]}) == built
    assert type(made) is cls
    assert made == built and repr(made) == repr(built) and str(made) == str(built)
    assert [getattr(made, name) for name in names] == list(values)
    if not any(isinstance(value, MappingProxyType) for value in values):  # mappingproxy does not pickle
        assert pickle.loads(pickle.dumps(made)) == built
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(made, names[0], values[0])


def test_records_built_either_way_differ_where_a_field_differs() -> None:
    cls, new, values = CASES[0]
    for at in range(len(values)):
        changed = list(values)
        changed[at] = "other" if not isinstance(values[at], int) else 1
        assert new(*changed) != cls(*values)
