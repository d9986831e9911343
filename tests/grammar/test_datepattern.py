"""``applies file format=fail2ban`` and the ``datepattern`` declaration: the date that the
file source cuts out of each line before the rules run, as fail2ban does."""

import re
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from journalban.grammar import GrammarError, Match, load_grammar
from journalban.grammar.fail2ban import import_filter
from journalban.replay_fail2ban import datepattern_of, fail2ban_line_event
from journalban.sources.lines import line_event

HEADER = "grammar f2b\napplies file format=fail2ban\n"
RULE = r"fail f: /^ sshd\[\d+\]: Invalid user \S+ from (?P<address>\S+)$/" + "\n"
READ = datetime(2026, 11, 26, 12, tzinfo=UTC)
FILTERS = Path("/etc/fail2ban/filter.d")

Write = Callable[[str, str], Path]


def test_a_datepattern_of_several_formats_is_declared_over_continuation_lines(write_grammar: Write) -> None:
    grammar = load_grammar(write_grammar(
        HEADER + "datepattern '^\\[%d/%b/%Y:%H:%M:%S %z\\]'   # the access log's own\n"
                 "            \"{^LN-BEG}\"\n" + RULE, "f2b"))
    assert grammar.file_format == "fail2ban" and grammar.source_kind == "file"
    assert datepattern_of(grammar) == "^\\[%d/%b/%Y:%H:%M:%S %z\\]\n{^LN-BEG}"
    line = "[26/Nov/2026:10:00:00 +0000] sshd[7]: Invalid user bob from 203.0.113.9"
    event = line_event("file:/x", line, grammar.file_format, READ, True, datepattern_of(grammar))
    assert event is not None and event.message == " sshd[7]: Invalid user bob from 203.0.113.9"
    assert event.time == datetime(2026, 11, 26, 10, tzinfo=UTC)  # 'time stamp' would trust it
    found = grammar.match(event.message)
    assert found is not None and str(found) == "f address=203.0.113.9"


def test_without_a_datepattern_fail2bans_default_dates_are_cut_anywhere(write_grammar: Write) -> None:
    grammar = load_grammar(write_grammar(HEADER + RULE, "f2b"))
    assert grammar.file_format == "fail2ban" and datepattern_of(grammar) is None
    event = fail2ban_line_event("file:/x", "Nov 26 10:00:00 sshd[7]: Invalid user bob from 203.0.113.9\n",
                                None, READ, trust_stamp=False)
    assert event.message == " sshd[7]: Invalid user bob from 203.0.113.9"
    assert event.time == READ  # 'time read': the moment the line was read, whatever its date


def test_a_trusted_date_never_counts_later_than_the_line_was_read() -> None:
    event = fail2ban_line_event("file:/x", "2027-01-01 00:00:00 x", None, READ, trust_stamp=True)
    assert (event.time, event.message) == (READ, " x")


def test_file_events_reach_a_fail2ban_format_grammar(write_grammar: Write) -> None:
    grammar = load_grammar(write_grammar(HEADER + RULE, "f2b"))
    event = fail2ban_line_event("file:/var/log/auth.log", "x", None, READ, trust_stamp=False)
    assert grammar.applies_to(event)


ERRORS = [
    pytest.param(HEADER + "datepattern '^(%d'\n" + RULE, 3, 13,
                 "datepattern does not compile: missing ), unterminated subpattern", id="does-not-compile"),
    pytest.param(HEADER + "datepattern '%Y' '%d[x'\n" + RULE, 3, 18,
                 "datepattern does not compile", id="second-string"),
    pytest.param(HEADER + "datepattern\n" + RULE, 3, 12, "expected quoted datepattern, found end of text",
                 id="no-string"),
    pytest.param(HEADER + "datepattern %Y\n" + RULE, 3, 13, "expected quoted datepattern, found '%'",
                 id="unquoted"),
    pytest.param(HEADER + "datepattern ' '\n" + RULE, 3, 13, "a datepattern is one non-empty line", id="empty"),
    pytest.param(HEADER + "datepattern '%Y'\ndatepattern '%d'\n" + RULE, 4, 1, "a second 'datepattern' statement",
                 id="twice"),
    pytest.param("grammar f2b\napplies file format=raw\ndatepattern '%Y'\n" + RULE, 3, 1,
                 "'datepattern' needs 'applies file format=fail2ban'", id="raw-format"),
    pytest.param("grammar f2b\napplies journal _SYSTEMD_UNIT=ssh.service\ndatepattern '%Y'\n" + RULE, 3, 1,
                 "'datepattern' needs 'applies file format=fail2ban'", id="journal"),
    pytest.param("grammar f2b\napplies file format=fail2ben\n" + RULE, 2, 21,
                 "unknown format 'fail2ben'; expected raw or fail2ban", id="format-typo"),
    pytest.param(HEADER + "time stamp\nfail f: <stamp:syslog> ' x ' <address>\n", 4, 6,
                 "from the date it cuts out", id="stamp-rule"),
]


@pytest.mark.parametrize(("text", "line", "column", "message"), ERRORS)
def test_a_bad_declaration_is_reported_at_its_line_and_column(write_grammar: Write, text: str, line: int,
                                                              column: int, message: str) -> None:
    path = write_grammar(text, "f2b")
    with pytest.raises(GrammarError) as caught:
        load_grammar(path)
    assert str(caught.value).startswith(f"{path}:{line}:{column}: "), str(caught.value)
    assert message in caught.value.message


def test_the_importer_declares_the_filters_datepattern(tmp_path: Path) -> None:
    imported = import_filter(FILTERS / "apache-badbots.conf")
    assert "\napplies file format=fail2ban\ndatepattern '^[^\\[]*\\[({DATE})' '{^LN-BEG}'\n" in imported.text
    assert "# datepattern" not in imported.text
    path = tmp_path / "apache-badbots.grammar"
    path.write_text(imported.text, encoding="utf-8")
    grammar = load_grammar(path)
    assert datepattern_of(grammar) == "^[^\\[]*\\[({DATE})\n{^LN-BEG}"
    line = '203.0.113.9 - - [14/Nov/2023:22:13:01 +0100] "GET / HTTP/1.1" 200 5 "-" "EmailCollector"'
    event = fail2ban_line_event("file:/x", line, datepattern_of(grammar), READ, trust_stamp=False)
    assert "14/Nov/2023" not in event.message
    found = grammar.match(event.message)
    assert isinstance(found, Match) and found.address == "203.0.113.9"


def test_fail2bans_unbounded_marks_are_understood_not_compiled() -> None:
    """ejabberd-auth's second format ends in ``**`` (no word boundary there), which ``re``
    alone would refuse as a repeat of a repeat."""
    imported = import_filter(FILTERS / "ejabberd-auth.conf")
    assert re.search(r"^datepattern '.+' '\^I\\\(\(\)\*\*'$", imported.text, re.M), imported.text
    assert not any("datepattern" in warning for warning in imported.warnings)


def test_the_quick_date_search_finds_what_trying_every_format_everywhere_finds() -> None:
    """``find_date`` skips the default formats a line cannot hold and anchors those at the
    line start; on every line of fail2ban's sample logs it cuts what the plain search cuts."""
    from journalban.grammar.fail2ban.dates import date_regexes, find_date

    def plain(line: str, datepattern: str | None) -> tuple[int, int] | None:
        for regex in date_regexes(datepattern):
            found = regex.search(line)
            if found is not None:
                return found.span(1 if regex.groups else 0)
        return None

    logs = Path("/usr/lib/python3/dist-packages/fail2ban/tests/files/logs")
    lines = [line for path in sorted(logs.glob("*")) if path.is_file()
             for line in path.read_text(encoding="utf-8", errors="replace").splitlines()
             if line and not line.startswith("#")]
    assert len(lines) > 1000
    for datepattern in (None, "{^LN-BEG}"):
        assert [find_date(line, datepattern) for line in lines] == [plain(line, datepattern) for line in lines]
