"""JailMatcher remembers the selection of the last journal sender's fields, never longer, and
keeps of a match what the daemon records."""

from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType

from journalban.events import Event, Failure
from journalban.grammar import load_grammar
from journalban.match import JailMatcher

ROOT = Path(__file__).resolve().parents[1]
MESSAGE = "Failed password for root from 203.0.113.9 port 22 ssh2"
NOW = datetime(2026, 11, 26, tzinfo=UTC)


def test_senders_taking_turns_are_each_selected_by_their_own_fields() -> None:
    matcher = JailMatcher("sshd", load_grammar(ROOT / "grammars/sshd.grammar"))
    sshd = MappingProxyType({"_SYSTEMD_UNIT": "ssh.service", "_UID": "0"})
    user = MappingProxyType({"_SYSTEMD_UNIT": "user@1000.service", "SYSLOG_IDENTIFIER": "sshd", "_UID": "1000"})
    forged = dict(user)  # another mapping, equal to a rejected one
    found = []
    for fields in (sshd, user, sshd, sshd, forged, user, sshd):
        result = matcher.match(Event(NOW, "journal", MESSAGE, app="sshd", fields=fields))
        found.append(isinstance(result, Failure))
    assert found == [True, False, True, True, False, False, True]
    file_event = Event(NOW, "file:/var/log/auth.log", MESSAGE, app="sshd", fields=sshd)
    assert isinstance(matcher.match(file_event), Failure)  # not a journal event: asked afresh, by its app


def test_a_failure_keeps_what_the_ledger_records_and_one_shared_empty_captures() -> None:
    matcher = JailMatcher("sshd", load_grammar(ROOT / "grammars/sshd.grammar"))
    first, second = (matcher.match(Event(NOW, "file:/var/log/auth.log", message, app="sshd"))
                     for message in (MESSAGE, MESSAGE.replace("203.0.113.9", "198.51.100.4")))
    assert isinstance(first, Failure) and isinstance(second, Failure)
    assert (first.address, first.rule, first.text) == ("203.0.113.9", "sshd/failed", MESSAGE)
    assert second.address == "198.51.100.4"
    # the grammar captured method, user and port; a burst holds tens of thousands of failures
    assert matcher.grammar.match(MESSAGE).captures == {"method": "password", "user": "root", "port": "22"}  # type: ignore[union-attr]
    assert first.captures == {} and first.captures is second.captures


def test_a_batch_is_matched_as_its_events_one_by_one() -> None:
    """``match_batch`` selects by app while a file's events keep it, by the fields' identity
    on the journal, and keeps failures in order with the rejected apart, as ``match`` of
    each event does."""
    grammar = load_grammar(ROOT / "grammars/sshd.grammar")
    sshd = MappingProxyType({"_SYSTEMD_UNIT": "ssh.service", "_UID": "0"})
    other = MappingProxyType({"_SYSTEMD_UNIT": "cron.service", "_UID": "0"})
    events = []
    for number in range(60):
        address = "999.1.1.1" if number % 13 == 0 else f"198.51.100.{number}"
        message = MESSAGE.replace("203.0.113.9", address) if number % 7 else "Accepted publickey for root"
        source, app, fields = [("file:/var/log/auth.log", "sshd", {}), ("file:/var/log/auth.log", "cron", {}),
                               ("journal", "sshd", sshd), ("journal", "sshd", other),
                               ("syslog", "sshd-session", {}), ("file:/var/log/auth.log", None, {})][number % 6]
        events.append(Event(NOW, source, message, app=app, fields=fields))
    failures, rejected = JailMatcher("sshd", grammar).match_batch(events)
    one_by_one = [JailMatcher("sshd", grammar).match(event) for event in events]
    assert failures == [found for found in one_by_one if isinstance(found, Failure)]
    assert [reason for _, reason in rejected] == [found for found in one_by_one
                                                   if found is not None and not isinstance(found, Failure)]
    assert [event for event, _ in rejected] == [event for event, found in zip(events, one_by_one, strict=True)
                                                if found is not None and not isinstance(found, Failure)]
    assert len(failures) > 10 and rejected
    assert {f.source for f in failures} == {"file:/var/log/auth.log", "journal", "syslog"}
