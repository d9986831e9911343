"""Language additions: nginx/Apache/exim stamps, <hostname>, <endpoint> (ADDR:PORT),
case-insensitive literals, and the refusals that keep matching linear and addresses right."""

import ipaddress
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from journalban.grammar import Grammar, GrammarError, Match, Rejected, build_grammar, load_grammar
from journalban.grammar.stamps import PATTERNS, parse_apache, parse_iso8601, parse_nginx

REFERENCE = datetime(2030, 1, 1, tzinfo=UTC)
PARIS_SUMMER = timezone(timedelta(hours=2))
HEADER = "grammar test\napplies file format=raw\n"


def grammar(rules: str, header: str = HEADER) -> Grammar:
    return build_grammar(header + rules, Path("test.grammar"))


# ---- stamps ----

def test_nginx_error_log_stamp_is_host_local_time() -> None:
    assert parse_nginx("2024/01/02 03:04:05", REFERENCE, UTC) == datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert parse_nginx("2024/07/02 10:00:00", REFERENCE, PARIS_SUMMER) == datetime(2024, 7, 2, 8, tzinfo=UTC)


def test_apache_error_log_stamp_with_and_without_microseconds() -> None:
    assert parse_apache("Sat Jul 20 21:37:32.266605 2013", REFERENCE, UTC) == datetime(
        2013, 7, 20, 21, 37, 32, 266605, tzinfo=UTC)
    assert parse_apache("Thu Jul 11 01:21:43 2013", REFERENCE, UTC) == datetime(2013, 7, 11, 1, 21, 43, tzinfo=UTC)
    assert parse_apache("Thu Jul 11 01:21:43.5 2013", REFERENCE, UTC) == datetime(
        2013, 7, 11, 1, 21, 43, 500000, tzinfo=UTC)


def test_exim_stamp_with_a_spaced_offset() -> None:
    assert parse_iso8601("2013-06-02 09:05:48 +0200", REFERENCE) == datetime(2013, 6, 2, 7, 5, 48, tzinfo=UTC)
    assert parse_iso8601("2013-06-02 09:05:48 -0130", REFERENCE) == datetime(2013, 6, 2, 10, 35, 48, tzinfo=UTC)
    assert parse_iso8601("2013-06-02 09:05:48", REFERENCE, UTC) == datetime(2013, 6, 2, 9, 5, 48, tzinfo=UTC)


@pytest.mark.parametrize(("parse", "text"), [
    (parse_nginx, "2024/02/30 03:04:05"), (parse_nginx, "2024/01/02 25:04:05"), (parse_nginx, "2024-01-02 03:04:05"),
    (parse_apache, "Sat Foo 20 21:37:32 2013"), (parse_apache, "Sat Feb 30 21:37:32 2013"),
    (parse_apache, "Sat Jul 20 21:37:32.1234567 2013"),
])
def test_impossible_stamps_give_none(parse: Callable[..., datetime | None], text: str) -> None:
    assert parse(text, REFERENCE) is None


@pytest.mark.parametrize(("kind", "line", "stamp"), [
    ("nginx", "2024/01/02 03:04:05 [error] 7#7: *1 user x: password mismatch, client: 203.0.113.9",
     "2024/01/02 03:04:05"),
    ("apache", "[Sat Jul 20 21:37:32.266605 2013] client 203.0.113.9", "Sat Jul 20 21:37:32.266605 2013"),
    ("iso8601", "2013-06-02 09:05:48 +0200 client 203.0.113.9", "2013-06-02 09:05:48 +0200"),
    ("iso8601", "2013-06-02 09:05:48 client 203.0.113.9", "2013-06-02 09:05:48"),
])
def test_stamps_in_rules(kind: str, line: str, stamp: str) -> None:
    before, _, after = line.partition(stamp)
    rule = (f"fail r: '{before}' <stamp:{kind}> '{after.split('203.0.113.9')[0]}' <address>\n")
    loaded = grammar(rule, HEADER + "time stamp\n")
    match = loaded.match(line)
    assert isinstance(match, Match) and match.stamp == stamp and match.address == "203.0.113.9"
    assert loaded.stamp_time(stamp, REFERENCE) is not None
    assert re.fullmatch(PATTERNS[kind], stamp)


def test_an_iso8601_stamp_does_not_swallow_a_number_after_it() -> None:
    loaded = grammar("fail r: <stamp:iso8601> ' ' <pid:int> ' from ' <address>\n")
    match = loaded.match("2013-06-02 09:05:48 12345 from 203.0.113.9")
    assert isinstance(match, Match) and match.captures == {"pid": "12345"}


# ---- <hostname> ----

def test_hostname_stops_at_the_bracket() -> None:
    loaded = grammar('fail r: "warning: " <host:hostname> "[" <address> "]: SASL failed"\n')
    match = loaded.match("warning: mail.example.com[203.0.113.9]: SASL failed")
    assert isinstance(match, Match) and match.captures == {"host": "mail.example.com"}
    assert loaded.match("warning: unknown[2001:db8::9]: SASL failed") == Match("r", "2001:db8::9", {"host": "unknown"})
    # a name holding a bracketed address is not a host name: no match, never the planted address
    assert loaded.match("warning: x[8.8.8.8]y[203.0.113.9]: SASL failed") is None
    assert loaded.match("warning: a b[203.0.113.9]: SASL failed") is None


# ---- <endpoint> ----

ENDPOINT = grammar('fail r: "client " <endpoint> " said hello"\n')


@pytest.mark.parametrize(("text", "address", "port"), [
    ("203.0.113.9:22", "203.0.113.9", "22"),
    ("[2001:db8::1]:22", "2001:db8::1", "22"),
    ("2001:db8::1:22", "2001:db8::1", "22"),
    ("2001:db8:0:0:0:0:0:1:51386", "2001:db8::1", "51386"),
    ("::ffff:203.0.113.9:443", "203.0.113.9", "443"),
    ("2001:db8:::22", "2001:db8::", "22"),
    ("[::1]:8080", "::1", "8080"),
])
def test_endpoint_forms(text: str, address: str, port: str) -> None:
    match = ENDPOINT.match(f"client {text} said hello")
    assert match == Match("r", address, {"port": port}, None)


@pytest.mark.parametrize("text", ["2001:db8::22", "203.0.113.9", "[2001:db8::1]", "203.0.113.9:", "1.2.3.4:22.5"])
def test_endpoint_without_a_clean_port_never_gives_an_address(text: str) -> None:
    result = ENDPOINT.match(f"client {text} said hello")
    assert result is None or isinstance(result, Rejected)


def test_endpoint_never_captures_a_wrong_address() -> None:
    """Every address written the ways logs write ADDR:PORT gives back exactly that address and port."""
    samples = ["203.0.113.9", "0.0.0.0", "2001:db8::1", "2001:db8::", "::", "::1", "fe80::1:2:3:4",
               "2001:db8:1:2:3:4:5:6", "2001:db8::abcd:22", "::ffff:198.51.100.7", "64:ff9b::203.0.113.9"]
    for sample in samples:
        ip = ipaddress.ip_address(sample)
        expected = str(ip.ipv4_mapped) if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped else str(ip)
        forms = [sample, ip.exploded] if ip.version == 6 else [sample]
        for form in forms:
            for port in ("0", "22", "65535"):
                for written in (f"{form}:{port}", f"[{form}]:{port}") if ip.version == 6 else (f"{form}:{port}",):
                    match = ENDPOINT.match(f"client {written} said hello")
                    assert match == Match("r", expected, {"port": port}, None), written


def test_endpoint_takes_the_port_capture() -> None:
    with pytest.raises(GrammarError, match="capture 'port' appears twice"):
        grammar('fail r: <endpoint> " port " <port:int>\n')
    with pytest.raises(GrammarError, match="exactly one <address> or <endpoint>"):
        grammar('fail r: <endpoint> " " <address>\n')


# ---- i"..." ----

def test_case_insensitive_literals() -> None:
    loaded = grammar('fail r: i"failed login from " <address> \' (\' i\'Auth\' ")"\n')
    for line in ("failed login from 203.0.113.9 (Auth)", "FAILED Login FROM 203.0.113.9 (aUTH)"):
        assert loaded.match(line) == Match("r", "203.0.113.9", {}, None)
    assert loaded.match("failed login from 203.0.113.9 (auth]") is None
    # the ordinary literal stays exact, and only exact literals serve as the prefilter
    assert loaded.rules[0].prefilter == " ("


def test_case_insensitive_literal_with_escapes_and_examples(tmp_path: Path) -> None:
    path = tmp_path / "t.grammar"
    path.write_text(HEADER + 'fail r: i"say \\"hi\\" " <address>\n'
                    'example "SAY \\"HI\\" 203.0.113.9" => r address=203.0.113.9\n')
    assert load_grammar(path).match('Say "Hi" 203.0.113.9') is not None


# ---- refusals, each at file:line:column ----

ERRORS = [
    pytest.param('fail r: "for " <user:any> " (" <why:any> ") from " <address>\n', 3, 32,
                 "second free-text slot", id="two-any"),
    pytest.param('fail r: "a " <address> " (" <why:any> ") x" [ " y" <more:any> " z" ]\n', 3, 52,
                 "second free-text slot", id="two-any-after-address"),
    pytest.param('fail r: "a " <x:any> " b " /(?P<y>.*) c/ " " <address>\n', 3, 28,
                 "second free-text slot", id="any-and-regex"),
    # with the address inside a /regex/, a final <any> is no rest-of-line: the address guard after it
    # could fail and send the match back into the first
    pytest.param('fail r: "a " /(?:v(?P<address>[0-9.]++))?/ " b " <x:any> " c " <y:any>\n', 3, 64,
                 "second free-text slot", id="two-any-address-in-regex"),
    pytest.param('fail r: "x " <a:any> <n:int> " from " <address>\n', 3, 22,
                 "must be followed by literal text", id="any-then-token"),
    pytest.param('fail r: "x " <a:any> [ <n:int> " y" ] " from " <address>\n', 3, 24,
                 "must be followed by literal text", id="any-then-optional-token"),
    pytest.param('fail r: "from " <address> ":" <port:int>\n', 3, 27, "ambiguous for IPv6", id="address-colon"),
    pytest.param('fail r: "from " <address> [ ":" <port:int> ] " x"\n', 3, 29, "ambiguous for IPv6",
                 id="address-optional-port"),
    pytest.param('fail r: "from " <address> ( ":22" | " " ) "x"\n', 3, 29, "ambiguous for IPv6",
                 id="address-alternative-port"),
    pytest.param('fail r: [ <endpoint> ] "x"\n', 3, 11, "must not be inside", id="nested-endpoint"),
    pytest.param('fail r: <p:endpoint> "x"\n', 3, 9, "takes no capture name", id="named-endpoint"),
    pytest.param('fail r: <stamp:rfc850> " " <address>\n', 3, 10, "unknown stamp format 'rfc850'", id="stamp"),
    pytest.param('fail r: i"abc <address>\n', 3, 9, "expected element", id="unterminated-i-string"),
    pytest.param('fail r: i"a\\q" <address>\n', 3, 12, "unknown escape", id="i-string-escape"),
]


@pytest.mark.parametrize(("rules", "line", "column", "message"), ERRORS)
def test_errors_name_file_line_column(tmp_path: Path, rules: str, line: int, column: int, message: str) -> None:
    path = tmp_path / "t.grammar"
    path.write_text(HEADER + rules)
    with pytest.raises(GrammarError) as caught:
        load_grammar(path)
    error = caught.value
    assert (error.path, error.line, error.column) == (path, line, column), str(error)
    assert message in error.message
    assert str(error).startswith(f"{path}:{line}:{column}: ")


@pytest.mark.parametrize("rules", [
    'fail r: "for " <user:any> " from " <address> " said " <rest:any>\n',  # refused for injection, not here
])
def test_injection_check_still_comes_first(rules: str) -> None:
    with pytest.raises(GrammarError, match="attacker"):
        grammar(rules)


def test_free_text_at_the_end_does_not_count_and_takes_the_rest_of_the_line() -> None:
    loaded = grammar('fail r: "from " <address> " (" <why:any> ")" [ " says " <said:any> ]\n')
    match = loaded.match("from 203.0.113.9 (a (b) c) says x) says y")
    assert match == Match("r", "203.0.113.9", {"why": "a (b) c", "said": "x) says y"}, None)
    assert loaded.match("from 203.0.113.9 (a)") == Match("r", "203.0.113.9", {"why": "a"}, None)
    assert loaded.rules[0].pattern.pattern.endswith("(?P<g2>.*+))?")


def test_an_address_followed_by_colon_space_still_matches() -> None:
    loaded = grammar('fail r: "from " <address> ": bad"\n')
    for written, address in [("2001:db8::1", "2001:db8::1"), ("2001:db8::", "2001:db8::"),
                             ("203.0.113.9", "203.0.113.9")]:
        assert loaded.match(f"from {written}: bad") == Match("r", address, {})
