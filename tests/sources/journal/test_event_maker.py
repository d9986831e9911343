"""The journal source's event maker, on raw entries as libsystemd hands them over: a run
of one sender's entries shares its decoded origin, and whatever the order senders come
in (a run, taking turns, an own line between), each entry gets its own sender's."""

from datetime import UTC, datetime

from journalban.events import Event
from journalban.sources.journal import SELECTOR_FIELDS, _EventMaker

USEC = 1_700_000_000_000_000


def raw(unit: str, ident: str, uid: str, pid: str = "42") -> dict[str, bytes | list[bytes]]:
    return {"_SYSTEMD_UNIT": unit.encode(), "SYSLOG_IDENTIFIER": ident.encode(), "_UID": uid.encode(),
            "_COMM": b"sshd", "_EXE": b"/usr/sbin/sshd", "_HOSTNAME": b"web1", "_PID": pid.encode()}


def test_runs_and_turns_of_senders_each_get_their_own_origin() -> None:
    make = _EventMaker(SELECTOR_FIELDS)
    sshd, user, own = raw("ssh.service", "sshd", "0"), raw("session-1.scope", "sshd", "1000"), \
        raw("session-1.scope", "journalban", "0")
    twice = {**sshd, "SYSLOG_IDENTIFIER": [b"sshd", b"forged"]}  # a field held twice: its first value
    order = [sshd, sshd, user, user, own, sshd, own, own, user, twice, twice, sshd]
    made = [make(dict(entry), b"Failed password", USEC + n) for n, entry in enumerate(order)]
    sender = {id(sshd): ("ssh.service", "0"), id(twice): ("ssh.service", "0"), id(user): ("session-1.scope", "1000")}
    assert [None if e is None else (e.fields["_SYSTEMD_UNIT"], e.fields["_UID"], e.app) for e in made] == [
        None if entry is own else (*sender[id(entry)], "sshd") for entry in order]
    events = [e for e in made if e is not None]
    assert all(isinstance(e, Event) and e.source == "journal" and e.pid == 42 for e in events)
    assert [e.time for e in events] == [datetime.fromtimestamp((USEC + n) / 1e6, UTC)
                                        for n, entry in enumerate(order) if entry is not own]
    # One sender's entries share one fields mapping (JailMatcher remembers its selection by it).
    assert made[0] is not None and made[1] is not None and made[0].fields is made[1].fields
    assert made[2] is not None and made[0].fields is not made[2].fields
    assert made[5] is not None and made[5].fields is made[0].fields
