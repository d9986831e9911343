"""The shipped sshd grammars against the benchmark corpus shapes and attacker-made user names.

The corpus lines are copied here as data (the bench is not imported at test time).
"""

from pathlib import Path

import pytest

from journalban.grammar import Grammar, Match, load_grammar

GRAMMARS = Path(__file__).resolve().parents[2] / "grammars"
SSHD = load_grammar(GRAMMARS / "sshd.grammar")
AGGRESSIVE = load_grammar(GRAMMARS / "sshd-aggressive.grammar")
BOTH = [pytest.param(SSHD, id="sshd"), pytest.param(AGGRESSIVE, id="aggressive")]

# /work/shared/bench/corpus.py FAILURES and NOISE, with the "app[pid]: " prefix split off
FAILURES = [
    "Failed password for {user} from {addr} port {port} ssh2",
    "Failed password for invalid user {user} from {addr} port {port} ssh2",
    "Invalid user {user} from {addr} port {port}",
    "Connection closed by authenticating user {user} {addr} port {port} [preauth]",
    "Disconnected from invalid user {user} {addr} port {port} [preauth]",
    "pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= rhost={addr}  user={user}",
]
NOISE = [
    "pam_unix(cron:session): session opened for user root(uid=0) by (uid=0)",
    "Started Session 4242 of User root.",
    "Accepted publickey for deploy from 10.0.0.5 port 51514 ssh2: RSA SHA256:Zm9vYmFy",
    "pam_unix(sshd:session): session opened for user deploy(uid=1000) by (uid=0)",
    "Received disconnect from 10.0.0.5 port 51514:11: disconnected by user",
    "Disconnected from user deploy 10.0.0.5 port 51514",
    "[4242.123456] IN=eth0 OUT= MAC=52:54:00:12:34:56 SRC=10.1.2.3 DST=10.1.2.4 LEN=60 PROTO=TCP SPT=443 DPT=51514",
    "New session 4242 of user deploy.",
    "connect from mail.example.org[192.0.2.25]",
    "DHCPACK of 10.0.0.17 from 10.0.0.1",
]
ADDRESSES = ["203.0.113.9", "2001:db8:1a2b:3c4d::5e6f", "::ffff:203.0.113.9"]
USERS = ["root", "deploy1", "x from 8.8.8.8 port 22 ssh2", "x 8.8.8.8 port 22 [preauth]"]


@pytest.mark.parametrize("grammar", BOTH)
@pytest.mark.parametrize("shape", FAILURES)
@pytest.mark.parametrize("address", ADDRESSES)
def test_every_corpus_failure_shape_matches(grammar: Grammar, shape: str, address: str) -> None:
    for user in USERS if "user={user}" not in shape else ["root", "deploy1"]:
        match = grammar.match(shape.format(user=user, addr=address, port=51514))
        assert isinstance(match, Match), (shape, user)
        assert match.address == address.removeprefix("::ffff:")
        assert match.captures["user"] == user
        assert match.captures.get("port", "51514") == "51514"


@pytest.mark.parametrize("grammar", BOTH)
@pytest.mark.parametrize("line", NOISE)
def test_no_corpus_noise_line_matches(grammar: Grammar, line: str) -> None:
    assert grammar.decide(line) == (None, None)


@pytest.mark.parametrize("grammar", BOTH)
def test_accepted_logins_never_match(grammar: Grammar) -> None:
    for line in [
        "Accepted publickey for root from 203.0.113.9 port 22 ssh2: ED25519 SHA256:abc",
        "Accepted password for root from 203.0.113.9 port 22 ssh2",
        "Accepted keyboard-interactive/pam for root from 2001:db8::1 port 22 ssh2",
    ]:
        assert grammar.match(line) is None, line


@pytest.mark.parametrize("grammar", BOTH)
@pytest.mark.parametrize(
    "user",
    [
        "root from 8.8.8.8 port 22 ssh2",
        "x 8.8.8.8 port 22 [preauth]",
        "a from 8.8.8.8 port 22 ssh2 [preauth] 8.8.8.8 port 22 [preauth]",
        "x from 8.8.8.8 not allowed because listed in DenyUsers",
    ],
)
def test_injected_user_names_never_yield_their_address(grammar: Grammar, user: str) -> None:
    real = "198.51.100.7"
    lines = [
        f"Failed password for {user} from {real} port 4711 ssh2",
        f"Failed password for invalid user {user} from {real} port 4711 ssh2",
        f"Invalid user {user} from {real} port 4711",
        f"Connection closed by invalid user {user} {real} port 4711 [preauth]",
        f"Disconnected from authenticating user {user} {real} port 4711 [preauth]",
        f"error: maximum authentication attempts exceeded for {user} from {real} port 4711 ssh2 [preauth]",
        f"Disconnecting invalid user {user} {real} port 4711: Too many authentication failures [preauth]",
        f"User {user} from {real} not allowed because not listed in AllowUsers",
    ]
    for line in lines:
        match = grammar.match(line)
        assert isinstance(match, Match), line
        assert match.address == real, line
        assert match.captures["user"] == user, line


def test_aggressive_repeats_every_sshd_rule_and_applies_line() -> None:
    normal = {rule.name: rule for rule in SSHD.rules}
    aggressive = {rule.name: rule for rule in AGGRESSIVE.rules}
    for name, rule in normal.items():
        assert name in aggressive, name
        assert aggressive[name].pattern.pattern == rule.pattern.pattern, name
        assert aggressive[name].action == rule.action, name
    assert AGGRESSIVE.selector == SSHD.selector
    assert AGGRESSIVE.trusts_stamp == SSHD.trusts_stamp


def test_aggressive_adds_probes_the_normal_grammar_leaves_alone() -> None:
    for line in [
        "Connection closed by 203.0.113.9 port 35352 [preauth]",
        "Did not receive identification string from 203.0.113.9 port 35836",
        "banner exchange: Connection from 203.0.113.9 port 44105: invalid format",
        "Unable to negotiate with 203.0.113.9 port 55419: no matching key exchange method found."
        " Their offer: diffie-hellman-group1-sha1",
    ]:
        assert SSHD.match(line) is None, line
        match = AGGRESSIVE.match(line)
        assert isinstance(match, Match) and match.address == "203.0.113.9", line


def test_sshd_reads_journal_and_auth_log() -> None:
    assert SSHD.source_kind == "syslog+journal"
    assert SSHD.file_format == "syslog"
    assert {"sshd"} <= SSHD.syslog_apps
    groups = set(SSHD.journal_matches)
    assert (("_SYSTEMD_UNIT", "ssh.service"),) in groups
    assert (("_SYSTEMD_UNIT", "sshd.service"),) in groups
    assert (("_EXE", "/usr/sbin/sshd"), ("_UID", "0")) in groups


@pytest.mark.parametrize("path", sorted(GRAMMARS.glob("*.grammar")), ids=lambda p: p.stem)
def test_every_fail_rule_of_a_shipped_grammar_has_an_example(path: Path) -> None:
    grammar = load_grammar(path)
    covered = {example.rule for example in grammar.examples}
    missing = [rule.name for rule in grammar.rules if rule.name not in covered]
    assert missing == []
