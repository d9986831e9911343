"""fail2ban's jail value syntaxes and its actions, mapped to journalban's jail keys."""

import pytest

from journalban.grammar.fail2ban.actions import enforcement
from journalban.grammar.fail2ban.values import boolean, extract_options, seconds, split_actions


@pytest.mark.parametrize(("written", "expected"), [
    ("600", 600), ("10m", 600), ("1h", 3600), ("-1", -1), ("1h 30m", 5400), ("1d12h", 129600),
    ("48h", 172800), ("1w", 604800), ("1 day", 86400), ("3600s", 3600), ("2 hours", 7200),
    ("1mo", 2629800), ("1y", 31557600), ("1d-1h", 82800),  # fail2ban's MyTime.str2seconds
])
def test_durations_are_fail2bans(written: str, expected: int) -> None:
    assert seconds(written) == expected


@pytest.mark.parametrize("written", ["", "ten minutes", "1h;rm", "__import__('os')", "1h*"])
def test_other_duration_text_is_refused_never_evaluated(written: str) -> None:
    with pytest.raises(ValueError, match="is not a fail2ban duration"):
        seconds(written)


def test_booleans() -> None:
    assert [boolean(w) for w in ("true", "Yes", "on", "1", "false", "no", "OFF", "0")] == [True] * 4 + [False] * 4
    with pytest.raises(ValueError, match="is not a boolean"):
        boolean("maybe")


def test_names_with_options_and_action_lists() -> None:
    assert extract_options('sshd[mode=aggressive]') == ("sshd", {"mode": "aggressive"})
    assert extract_options("a[p='x, y'][q=1]") == ("a", {"p": "x, y", "q": "1"})
    with pytest.raises(ValueError, match="unexpected text"):
        extract_options('a[p="x" junk]')
    assert split_actions('iptables[port="ssh", protocol="tcp"]\n  sendmail-whois[dest="a,b"]') == [
        'iptables[port="ssh", protocol="tcp"]', 'sendmail-whois[dest="a,b"]']


def test_the_first_firewall_action_decides_and_others_are_named() -> None:
    found = enforcement('nftables-multiport[port="ssh,8000:8100", protocol="tcp,udp"]\n'
                        "sendmail-whois[dest=root]\niptables[port=22]", None, None, None, None)
    assert found.firewall == "nftables"
    assert found.ports == [22, "22/udp", "8000:8100", "8000:8100/udp"]
    assert found.blocktype == "reject"
    assert found.dropped == [
        ("action sendmail-whois", "a mail/chat/report action: journalban runs none (an on_ban hook can)"),
        ("action iptables", "a second firewall, other than the first action's: the first one is used")]
    assert found.notes == ["sendmail-whois[dest=root]", "iptables[port=22]"]


@pytest.mark.parametrize(("action", "expected"), [
    ("iptables-allports", ("iptables", "all")),
    ('iptables[type=allports, port="ssh"]', ("iptables", "all")),
    ('iptables-ipset-proto6[port="0:65535"]', ("ipset", "all")),
    ('iptables-multiport[port="ssh", protocol="all"]', ("iptables", "all")),
    ('iptables-multiport[port="no-such-service"]', ("iptables", "all")),
])
def test_ports_close_everything_where_fail2ban_would(action: str, expected: tuple[str, str]) -> None:
    found = enforcement(action, None, None, None, None)
    assert (found.firewall, found.ports) == expected


def test_chain_blocktype_and_log() -> None:
    found = enforcement("iptables-multiport-log", "http", "tcp", "DOCKER-USER", "DROP")
    assert (found.firewall, found.ports, found.chain, found.blocktype, found.log) == (
        "iptables", [80], "DOCKER-USER", "drop", True)
    odd = enforcement("iptables", "22", "tcp", "<known/chain>", "TARPIT")
    assert odd.chain is None and odd.blocktype is None and odd.dropped == [
        ("blocktype", "'TARPIT': journalban drops or rejects; its default (drop) is used")]


def test_an_allow_list_is_refused_never_turned_into_bans() -> None:
    with pytest.raises(ValueError, match="lets the matched addresses in"):
        enforcement('iptables-multiport[blocktype=RETURN, returntype=DROP]', "21", "tcp", None, "RETURN")


def test_one_action_per_protocol_closes_both() -> None:
    found = enforcement('iptables-multiport[name=x-tcp, protocol="tcp"]\n'
                        'iptables-multiport[name=x-udp, protocol="udp"]', "53", "tcp", None, None)
    assert (found.firewall, found.ports, found.dropped) == ("iptables", [53, "53/udp"], [])


def test_an_action_with_no_backend_keeps_the_default_and_no_action_bans_nothing() -> None:
    ufw = enforcement("ufw[application=OpenSSH]", None, None, None, None)
    assert ufw.firewall is None and ("action ufw", "no journalban firewall backend does what it does") in ufw.dropped
    nothing = enforcement("", None, None, None, None)
    assert nothing.firewall == "dry-run" and nothing.dropped[0][0] == "action"
