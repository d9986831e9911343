"""Each control command against a real ledger, detector and reconciler, with the in-memory firewall."""

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import text

from journalban.control.protocol import parse_target
from journalban.detector import Verdict
from journalban.events import FOREVER, BanDecision, Failure
from journalban.ledger import queries

from .conftest import T0, FakeDaemon, make_daemon


def failure(address: str, jail: str = "wplogin", minutes: int = 0) -> Failure:
    return Failure(jail, address, T0 + timedelta(minutes=minutes), "wp/lockout", f"locked out: {address}", "test")


def test_a_manual_ban_is_recorded_enforced_and_known_to_the_detector(daemon: FakeDaemon) -> None:
    reply = daemon.ask({"command": "ban", "address": "203.0.113.9", "jail": "wplogin", "for": "1h",
                        "reason": "seen probing"})
    assert reply["ok"], reply
    assert reply["ban"]["reason"] == "manual: seen probing"
    assert reply["ban"]["expires_at"] == (T0 + timedelta(hours=1)).isoformat()
    assert daemon.firewall.entries == {("wplogin", "203.0.113.9")}
    assert daemon.calls == [("on_ban", "wplogin", "203.0.113.9", "manual: seen probing")]
    # the detector counts it as in force: no second ban row (the one-active-ban index would refuse it)
    verdicts = [daemon.detector.observe(failure("203.0.113.9", minutes=1), T0 + timedelta(minutes=1))[0]
                for _ in range(5)]
    assert verdicts == [Verdict.ALREADY_BANNED] * 5


@pytest.mark.parametrize(("text", "normal"), [
    ("::ffff:203.0.113.9", "203.0.113.9"),
    ("::ffff:203.0.113.0/120", "203.0.113.0/24"),
    ("203.0.113.77/24", "203.0.113.0/24"),
    ("2001:DB8::1/128", "2001:db8::1"),
    (" 2001:db8:1::5/64 ", "2001:db8:1::/64"),
])
def test_addresses_are_normalised(text: str, normal: str) -> None:
    assert parse_target(text) == normal


@pytest.mark.parametrize("text", ["203.0.113", "example.com", "fe80::1%eth0", "10.0.0.0/33", ""])
def test_what_is_not_an_address_is_refused(daemon: FakeDaemon, text: str) -> None:
    reply = daemon.ask({"command": "ban", "address": text, "jail": "wplogin"})
    assert not reply["ok"] and "address" in reply["error"]


@pytest.mark.parametrize("address", ["0.0.0.0/0", "10.0.0.0/8", "203.0.0.0/15", "::/0", "2001:db8::/31"])
def test_networks_wider_than_16_or_32_bits_are_refused_even_with_force(daemon: FakeDaemon, address: str) -> None:
    reply = daemon.ask({"command": "ban", "address": address, "jail": "wplogin", "force": True})
    assert not reply["ok"] and "wider than" in reply["error"]
    assert queries.active_bans(daemon.ledger, T0) == []


@pytest.mark.parametrize("address", ["127.0.0.1", "::1", "198.51.100.7", "198.51.0.0/16", "127.0.0.0/16"])
def test_protected_addresses_need_force(daemon: FakeDaemon, address: str) -> None:
    refused = daemon.ask({"command": "ban", "address": address, "jail": "wplogin"})
    assert not refused["ok"] and "force" in refused["error"]
    assert queries.active_bans(daemon.ledger, T0) == []
    forced = daemon.ask({"command": "ban", "address": address, "jail": "wplogin", "force": True})
    assert forced["ok"], forced


def test_the_jail_is_required_unless_only_one_is_enabled(daemon: FakeDaemon, tmp_path: Path) -> None:
    reply = daemon.ask({"command": "ban", "address": "203.0.113.9"})
    assert not reply["ok"] and "sshd, wplogin" in reply["error"]
    assert "no enabled jail named 'nope'" in daemon.ask(
        {"command": "ban", "address": "203.0.113.9", "jail": "nope"})["error"]
    single = make_daemon(f"sqlite:///{tmp_path}/single.db", jails=("sshd",))
    try:
        assert single.ask({"command": "ban", "address": "203.0.113.9"})["ban"]["jail"] == "sshd"
    finally:
        single.ledger.close()


def test_ban_times(daemon: FakeDaemon) -> None:
    default = daemon.ask({"command": "ban", "address": "203.0.113.1", "jail": "wplogin"})["ban"]
    assert default["expires_at"] == (T0 + timedelta(seconds=3600)).isoformat()  # the jail's bantime
    forever = daemon.ask({"command": "ban", "address": "203.0.113.2", "jail": "wplogin", "forever": True})["ban"]
    assert forever["forever"] and forever["expires_at"] == FOREVER.isoformat()
    seconds = daemon.ask({"command": "ban", "address": "203.0.113.3", "jail": "wplogin", "for": 90})["ban"]
    assert seconds["expires_at"] == (T0 + timedelta(seconds=90)).isoformat()
    for bad in ({"for": 60, "forever": True}, {"for": "soon"}, {"for": -5}, {"forever": "yes"}):
        reply = daemon.ask({"command": "ban", "address": "203.0.113.4", "jail": "wplogin", **bad})
        assert not reply["ok"], bad


def test_banning_again_replaces_the_ban_in_force(daemon: FakeDaemon) -> None:
    first = daemon.ask({"command": "ban", "address": "203.0.113.9", "jail": "wplogin", "for": 60})["ban"]
    second = daemon.ask({"command": "ban", "address": "203.0.113.9", "jail": "wplogin", "forever": True})
    assert second["replaced"]["id"] == first["id"] and second["replaced"]["end_reason"] == "replaced"
    assert [b.id for b in queries.active_bans(daemon.ledger, T0)] == [second["ban"]["id"]]


def test_unban_ends_the_ban_lifts_the_detector_and_empties_the_firewall(daemon: FakeDaemon) -> None:
    for jail in ("wplogin", "sshd"):
        daemon.ask({"command": "ban", "address": "2001:db8::7", "jail": jail})
    one = daemon.ask({"command": "unban", "address": "2001:DB8::7", "jail": "sshd"})
    assert one["unbanned"] == 1 and daemon.firewall.entries == {("wplogin", "2001:db8::7")}
    rest = daemon.ask({"command": "unban", "address": "2001:db8::7"})
    assert rest["unbanned"] == 1 and daemon.firewall.entries == set()
    assert daemon.ask({"command": "unban", "address": "2001:db8::7"})["unbanned"] == 0
    ended = queries.history(daemon.ledger, "2001:db8::7").bans
    assert [b.end_reason for b in ended] == ["unbanned", "unbanned"]
    assert daemon.calls[-1][0] == "on_unban"
    verdict, _ = daemon.detector.observe(failure("2001:db8::7"), T0)
    assert verdict is Verdict.COUNTED  # counting afresh


def test_unbanning_a_host_names_the_network_ban_still_covering_it(daemon: FakeDaemon) -> None:
    daemon.ask({"command": "ban", "address": "203.0.113.0/24", "jail": "wplogin"})
    reply = daemon.ask({"command": "unban", "address": "203.0.113.9"})
    assert reply["unbanned"] == 0 and [b["address"] for b in reply["still_covered_by"]] == ["203.0.113.0/24"]


def test_list_and_history(daemon: FakeDaemon) -> None:
    fails = [failure("203.0.113.9", minutes=m) for m in range(3)]
    decision = BanDecision("wplogin", "203.0.113.9", T0, T0 + timedelta(minutes=10), "3 failures", tuple(fails))
    daemon.ledger.record(fails, [decision], {}, T0)
    daemon.ask({"command": "ban", "address": "203.0.113.0/24", "jail": "sshd", "reason": "scanner net"})
    daemon.ask({"command": "ban", "address": "192.0.2.1", "jail": "sshd"})
    daemon.ask({"command": "unban", "address": "192.0.2.1"})

    listed = daemon.ask({"command": "list"})["bans"]
    assert [(b["jail"], b["address"]) for b in listed] == [("sshd", "203.0.113.0/24"), ("wplogin", "203.0.113.9")]
    assert [b["address"] for b in daemon.ask({"command": "list", "jail": "sshd"})["bans"]] == ["203.0.113.0/24"]

    seen = daemon.ask({"command": "history", "address": "203.0.113.9"})
    assert seen["failures_total"] == 3 and all(f["ban_id"] == seen["bans"][0]["id"] for f in seen["failures"])
    assert [(b["address"], b["reason"]) for b in seen["bans"]] == [
        ("203.0.113.9", "3 failures"), ("203.0.113.0/24", "manual: scanner net")]
    network = daemon.ask({"command": "history", "address": "203.0.113.0/24"})
    assert [b["address"] for b in network["bans"]] == ["203.0.113.0/24"] and network["failures"] == []
    gone = daemon.ask({"command": "history", "address": "192.0.2.1"})["bans"]
    assert [(b["end_reason"], b["reason"]) for b in gone] == [("unbanned", "manual: by the operator")]


def test_status(daemon: FakeDaemon) -> None:
    daemon.ledger.record([failure("203.0.113.9"), failure("203.0.113.10", jail="sshd")], [], {}, T0)
    daemon.ask({"command": "ban", "address": "192.0.2.1", "jail": "sshd"})
    reply = daemon.ask({"command": "status"})
    assert reply["jails"] == [{"name": "wplogin", "failures_in_window": 1, "active_bans": 0},
                              {"name": "sshd", "failures_in_window": 1, "active_bans": 1}]
    assert reply["counters"] == {"lines": 7, "counted": 2}
    assert reply["last_reconcile"]["applied"] == ["+sshd:192.0.2.1 repair-layout"]
    daemon.clock.now = T0 + timedelta(minutes=11)  # the failures fall out of the 10-minute window
    assert [j["failures_in_window"] for j in daemon.ask({"command": "status"})["jails"]] == [0, 0]


def test_reload(daemon: FakeDaemon) -> None:
    assert daemon.ask({"command": "reload"}) == {"ok": True, "reloaded": True}
    daemon.problems = ["/etc/journalban/journalban.toml:3:1: defaults.bantime: expected a duration"]
    reply = daemon.ask({"command": "reload"})
    assert not reply["ok"] and reply["problems"] == daemon.problems and "running one stays" in reply["error"]


@pytest.mark.parametrize(("request_", "error"), [
    ([1, 2], "JSON object"),
    ({"command": "explode"}, "unknown command"),
    ({"command": 3}, "unknown command"),
    ({"command": "list", "jial": "x"}, "unknown field(s) jial"),
    ({"command": "history"}, "'address'"),
    ({"command": "ban", "address": "203.0.113.9", "jail": "wplogin", "reason": 5}, "'reason'"),
])
def test_bad_requests_get_error_replies(daemon: FakeDaemon, request_: object, error: str) -> None:
    reply = daemon.ask(request_)
    assert reply["ok"] is False and error in reply["error"]


def test_a_failing_handler_becomes_an_error_reply(daemon: FakeDaemon) -> None:
    with daemon.ledger.engine.begin() as connection:
        connection.execute(text("DROP TABLE failures"))
    reply = daemon.ask({"command": "status"})
    assert reply["ok"] is False and reply["error"].startswith("status failed:")
