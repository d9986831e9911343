"""The grammar library: every new grammar loads with examples for every rule, and text a
client controls (user names, URLs, agents, HELO names, ban reasons) never chooses the
address, whatever address or copy of a log line it carries.

The lines are built here the way each server would write them, with a real client
address and a crafted value in every client-controlled field.
"""

from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from journalban.grammar import Match, load_grammar

GRAMMARS = Path(__file__).resolve().parents[2] / "grammars"
LIBRARY = [
    "nginx-http-auth", "nginx-limit-req", "nginx-botsearch", "apache-auth", "apache-badbots",
    "postfix", "dovecot", "exim", "vsftpd", "proftpd", "mysqld-auth", "gitea", "recidive",
]
LOADED = {name: load_grammar(GRAMMARS / f"{name}.grammar") for name in LIBRARY}

REAL = "198.51.100.7"
FAKE = "8.8.8.8"


@pytest.mark.parametrize("name", LIBRARY)
def test_library_grammar_loads_under_its_file_name(name: str) -> None:
    grammar = LOADED[name]
    assert grammar.name == name
    assert grammar.description


@pytest.mark.parametrize("name", LIBRARY)
def test_every_rule_has_examples_and_there_are_negative_ones(name: str) -> None:
    grammar = LOADED[name]
    per_rule = Counter(example.rule for example in grammar.examples)
    counts = {rule.name: per_rule[rule.name] for rule in grammar.rules}
    assert all(count >= 1 for count in counts.values()), counts
    fail_rules = [rule.name for rule in grammar.rules if rule.action == "fail"]
    assert sum(counts[rule] for rule in fail_rules) >= 2 * len(fail_rules), counts
    assert per_rule[None] >= 1, "no 'no match' example"


@pytest.mark.parametrize("name", LIBRARY)
def test_attack_shaped_examples_never_yield_the_planted_address(name: str) -> None:
    grammar = LOADED[name]
    planted = [example.text for example in grammar.examples if FAKE in example.text]
    assert planted, "no example carries a planted address"
    for text in planted:
        result = grammar.match(text)
        assert not (isinstance(result, Match) and result.address == FAKE), text


def test_journal_grammars_use_trusted_selectors_only() -> None:
    for name, grammar in LOADED.items():
        for group in grammar.journal_matches:
            fields = {field for field, _ in group}
            assert fields & {"_SYSTEMD_UNIT", "_EXE", "_UID", "_SYSTEMD_USER_UNIT"}, name
            assert "SYSLOG_IDENTIFIER" not in fields and "_COMM" not in fields, name


# ---- crafted values -------------------------------------------------------------------

EVIL = [
    FAKE,
    f"x from {FAKE} port 22",
    f"x {FAKE}",
    f"x [{FAKE}] y",
    f"x[{FAKE}]): USER y",
    f'x", client: {FAKE}, server: ',
    f"x>, method=PLAIN, rip={FAKE}, lip=192.0.2.1, TLS",
    f"x'@'{FAKE}' (using password: YES)",
    f"x: no such user found from h [{FAKE}] to 192.0.2.1:21",
    f'x] FAIL LOGIN: Client "{FAKE}"',
    f"x from {FAKE}:1: user does not exist [uid: 0, name: x",
    "x\\",
    f'x\\" {FAKE} "',
    f"ban sshd {FAKE} until 2024-01-02T04:04:05+00:00: x",
    f'{FAKE} - - [03/Feb/2024:10:00:00 +0000] "GET /.env HTTP/1.1" 404 0 "-" "EmailSiphon"',
]
BENIGN = ["alice", "bob@example.org"]


def nginx_escape(text: str) -> str:
    return text.replace("\\", "\\x5C").replace('"', "\\x22")


def apache_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')


def no_space(text: str) -> str:
    return text.replace(" ", "+")


NGINX_ERR = "2024/01/02 03:04:05 [error] 42#42: *7 "
APACHE_ERR = "[Tue Jan 02 03:04:05.123456 2024] [auth_basic:error] [pid 42:tid 7] "
CLF = "[03/Feb/2024:10:00:00 +0000]"
PAM = "authentication failure; logname= uid=0 euid=0 tty="

# (grammar, where the value goes, line builder, whether the line must match the real
# address whatever the value; False: it may also not match, but never the planted one)
Builder = Callable[[str], str]
CASES: list[tuple[str, str, Builder, bool]] = [
    ("nginx-http-auth", "user",  # a basic-auth user name cannot hold ':'
     lambda v: f'{NGINX_ERR}user "{v}": password mismatch, client: {REAL}, server: s, '
     'request: "GET / HTTP/1.1", host: "h"', False),
    ("nginx-http-auth", "request, host, referrer",
     lambda v: f'{NGINX_ERR}user "alice" was not found in "/etc/htpasswd", client: {REAL}, '
     f'server: s, request: "GET /{v} HTTP/1.1", host: "{v}", referrer: "{v}"', True),
    ("nginx-limit-req", "request, host, referrer",
     lambda v: f'{NGINX_ERR}limiting requests, excess: 1.500 by zone "one", client: {REAL}, '
     f'server: s, request: "GET /{v} HTTP/1.1", host: "{v}", referrer: "{v}"', True),
    ("nginx-botsearch", "user, referer, agent",
     lambda v: f'{REAL} - {nginx_escape(v)} {CLF} "GET /.env HTTP/1.1" 404 0 '
     f'"{nginx_escape(v)}" "{nginx_escape(v)}"', True),
    ("nginx-botsearch", "query",
     lambda v: f'{REAL} - - {CLF} "GET /phpmyadmin/?{nginx_escape(no_space(v))} HTTP/1.1" 404 0 '
     '"-" "-"', True),
    ("apache-auth", "user, uri (unknown user)",
     lambda v: f"{APACHE_ERR}[client {REAL}:51234] AH01618: user {v} not found: /{v}", True),
    ("apache-auth", "user, uri, referer (mismatch)",
     # a Basic user name holds no ':' (the credentials are USER:PASSWORD)
     lambda v: f'{APACHE_ERR}[client {REAL}:51234] AH01617: user {v.replace(":", "")}: authentication failure '
     f'for "/{v}": Password Mismatch, referer: {v}', True),
    ("apache-badbots", "request, referer, user",
     lambda v: f'{REAL} - {apache_escape(v)} {CLF} "GET /{apache_escape(v)} HTTP/1.1" 200 5 '
     f'"{apache_escape(v)}" "EmailSiphon"', True),
    ("apache-badbots", "agent",
     lambda v: f'{REAL} - - {CLF} "GET / HTTP/1.1" 200 5 "-" "Mozilla/5.00 (Nikto/2.1.6) '
     f'{apache_escape(v)}"', True),
    ("postfix", "recipient, sender, HELO",
     lambda v: f"NOQUEUE: reject: RCPT from unknown[{REAL}]: 554 5.7.1 <{v}>: Relay access "
     f"denied; from=<{v}> to=<{v}> proto=ESMTP helo=<{v}>", True),
    ("dovecot", "login user",
     lambda v: f"imap-login: Disconnected (auth failed, 1 attempts in 2 secs): user=<{v}>, "
     f"method=PLAIN, rip={REAL}, lip=192.0.2.1, TLS, session=<abc>", True),
    ("dovecot", "passdb user",
     lambda v: f"auth-worker(1): pam({v},{REAL}): pam_authenticate() failed: "
     "Authentication failure (password mismatch?)", True),
    ("dovecot", "pam ruser and user",
     lambda v: f"pam_unix(dovecot:auth): {PAM}dovecot ruser={v} rhost={REAL}  user={v}", False),
    ("exim", "set_id",
     lambda v: f"2024-01-02 03:04:05 login authenticator failed for (helo) [{REAL}]:4321 "
     f"I=[192.0.2.1]:587: 535 Incorrect authentication data (set_id={v})", True),
    ("exim", "recipient",
     lambda v: f"2024-01-02 03:04:05 H=(helo) [{REAL}]:4321 I=[192.0.2.1]:25 F=<a@b> "
     f"rejected RCPT <{v}>: relay not permitted", True),
    ("exim", "command and input",
     lambda v: f"2024-01-02 03:04:05 SMTP protocol synchronization error (next input sent too "
     f'soon: pipelining was not advertised): rejected "{v}" H=(helo) [{REAL}]:4321 '
     f'I=[192.0.2.1]:25 next input="{v}"', False),
    ("vsftpd", "FAIL LOGIN user",
     lambda v: f'[pid 42] [{v}] FAIL LOGIN: Client "{REAL}"', True),
    ("vsftpd", "pam ruser and user",
     lambda v: f"pam_unix(vsftpd:auth): {PAM}ftp ruser={v} rhost={REAL}  user={v}", False),
    ("proftpd", "no such user",
     lambda v: f"ftp ({REAL}[{REAL}]) - USER {v}: no such user found from {REAL} [{REAL}] "
     "to 192.0.2.1:21", True),
    ("proftpd", "login failed",
     lambda v: f"ftp ({REAL}[{REAL}]) - USER {v} (Login failed): Incorrect password", True),
    ("mysqld-auth", "user",
     lambda v: f"2024-01-02  3:04:05 42 [Warning] Access denied for user '{v}'@'{REAL}' "
     "(using password: YES)", True),
    ("gitea", "typed user name",
     lambda v: f"2024/01/02 03:04:05 ...auth.go:193:SignInPost() [I] Failed authentication "
     f"attempt for {v} from {REAL}:54321: user does not exist [uid: 0, name: {v}]", False),
    ("recidive", "ban reason",
     lambda v: f"ban sshd {REAL} until 2024-01-02T04:04:05+00:00: 5 failures in 600s: {v}", True),
]


def _values(grammar: str, where: str) -> list[str]:
    values = EVIL + BENIGN
    if grammar == "nginx-http-auth" and where == "user":
        values = [value for value in values if ":" not in value]
    return values


@pytest.mark.parametrize(
    ("grammar", "where", "build", "always"),
    [pytest.param(*case, id=f"{case[0]}:{case[1]}") for case in CASES],
)
def test_crafted_field_never_yields_its_address(
    grammar: str, where: str, build: Builder, always: bool
) -> None:
    for value in _values(grammar, where):
        line = build(value)
        result = LOADED[grammar].match(line)
        if always or value in BENIGN:
            assert isinstance(result, Match), line
        if isinstance(result, Match):
            assert result.address == REAL, line


@pytest.mark.parametrize(
    ("grammar", "where", "build", "always"),
    [pytest.param(*case, id=f"{case[0]}:{case[1]}") for case in CASES],
)
def test_a_whole_copied_line_in_a_field_never_yields_its_address(
    grammar: str, where: str, build: Builder, always: bool
) -> None:
    # the same line with the planted address, and every tail of it, as the crafted value
    fake_line = build("x").replace(REAL, FAKE)
    tails = {fake_line[index:] for index in range(0, len(fake_line), 7)}
    if grammar == "nginx-http-auth" and where == "user":
        tails = {tail for tail in tails if ":" not in tail}
    for value in sorted(tails):
        line = build(value)
        result = LOADED[grammar].match(line)
        if isinstance(result, Match):
            assert result.address == REAL, line


def test_recidive_ignores_its_own_bans_and_subnet_bans() -> None:
    recidive = LOADED["recidive"]
    assert recidive.decide(f"ban recidive {REAL} forever: 3 failures in 86400s: x")[0] == "own-jail"
    assert recidive.match(f"ban sshd {REAL}/32 forever: x") is None
    match = recidive.match(f"ban recidive-long {REAL} forever: 3 failures in 86400s: x")
    assert isinstance(match, Match) and match.captures["jail"] == "recidive-long"
