"""The address pattern's alternatives in any order take the same text.

``ADDRESS`` tries IPv4 first because it is the common address; this holds it to the
order it had before (IPv6 forms first) on text made of the characters addresses are
written with, matched at the start and followed by anything.
"""

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from journalban.grammar.compiler import _HEX, _OCTETS, ADDRESS

IPV6_FIRST = re.compile(
    rf"(?>(?:{_HEX}{{0,4}}:){{2,6}}{_OCTETS}(?![0-9])"
    rf"|(?:{_HEX}{{1,4}}|:)(?::{_HEX}{{0,4}}){{1,7}}(?<![^:]:)(?<!:::)"
    rf"|{_OCTETS}(?![0-9]))"
)
IPV4_FIRST = re.compile(ADDRESS)
ADDRESS_TEXT = st.text(alphabet="0123456789abcdefABCDEF:.", max_size=48)
AFTER = st.text(alphabet="0123456789af:. x]", max_size=6)


def span(pattern: re.Pattern[str], text: str) -> tuple[int, int] | None:
    found = pattern.match(text)
    return None if found is None else found.span()


@settings(max_examples=3000)
@given(text=ADDRESS_TEXT, after=AFTER)
def test_ipv4_first_takes_what_ipv6_first_took(text: str, after: str) -> None:
    assert span(IPV4_FIRST, text + after) == span(IPV6_FIRST, text + after)


def test_each_kind_of_address() -> None:
    for text in ("203.0.113.9", "2001:db8::1", "::ffff:203.0.113.9", "::1", "1.2.3.4:22", "2001:db8::1: msg",
                 "1.2.3.4.5", "1:2:3:4:5:6:7:8", "fe80::1%eth0", "1234.5.6.7"):
        assert span(IPV4_FIRST, text) == span(IPV6_FIRST, text), text


PIECES = st.lists(st.sampled_from(["1", "12", "255", "1234", "ffff", "db8", ":", "::", ".", "0"]), max_size=14)


@settings(max_examples=3000)
@given(pieces=PIECES, after=AFTER)
def test_ipv4_first_takes_what_ipv6_first_took_on_address_shaped_text(pieces: list[str], after: str) -> None:
    text = "".join(pieces) + after
    assert span(IPV4_FIRST, text) == span(IPV6_FIRST, text)
