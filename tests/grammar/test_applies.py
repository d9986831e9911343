"""``applies`` lines: what they select, what they refuse (and where), and ``applies_to``."""

from datetime import UTC, datetime
from pathlib import Path

import pytest

from journalban.events import Event
from journalban.grammar import GrammarError, build_grammar
from journalban.grammar.grammar import Grammar

RULE = 'fail r: "x " <address>\n'
NOW = datetime(2024, 1, 1, tzinfo=UTC)


def _grammar(applies: str, extra: str = "") -> Grammar:
    return build_grammar(f"grammar t\n{applies}{extra}{RULE}", Path("t.grammar"))


def _journal(**fields: str) -> Event:
    return Event(NOW, "journal", "x 203.0.113.9", app=fields.get("SYSLOG_IDENTIFIER"), fields=fields)


def test_raw_file() -> None:
    grammar = _grammar("applies file format=raw\n")
    assert (grammar.source_kind, grammar.file_format) == ("file", "raw")
    assert grammar.journal_matches == () and grammar.syslog_apps == frozenset()
    assert grammar.stamp_format is None


def test_journal_lines_are_ored_and_their_pairs_anded() -> None:
    grammar = _grammar(
        "applies journal _SYSTEMD_UNIT=ssh.service\n"
        "applies journal _EXE=/usr/sbin/sshd _UID=0\n"
        'applies journal _SYSTEMD_UNIT="my unit.service" SYSLOG_IDENTIFIER=sshd\n'
    )
    assert grammar.source_kind == "journal"
    assert grammar.file_format == "none"
    assert grammar.journal_matches == (
        (("_SYSTEMD_UNIT", "ssh.service"),),
        (("_EXE", "/usr/sbin/sshd"), ("_UID", "0")),
        (("_SYSTEMD_UNIT", "my unit.service"), ("SYSLOG_IDENTIFIER", "sshd")),
    )
    assert grammar.stamp_format is None


def test_syslog_and_journal_combined() -> None:
    grammar = _grammar(
        "applies journal _SYSTEMD_UNIT=ssh.service\napplies syslog app=sshd app=sshd-session\n",
        "time stamp\n",
    )
    assert (grammar.source_kind, grammar.file_format) == ("syslog+journal", "syslog")
    assert grammar.syslog_apps == frozenset({"sshd", "sshd-session"})
    assert grammar.trusts_stamp  # no <stamp:...> needed: the header's stamp is the event time
    assert grammar.stamp_format == "syslog"


def test_raw_files_and_syslog_combined() -> None:
    """nginx writing error.log on one host and to the syslog listener on another: one grammar."""
    grammar = _grammar("applies file format=raw\napplies syslog app=nginx\n")
    assert (grammar.source_kind, grammar.file_format) == ("file+syslog", "raw")
    assert grammar.applies_to(Event(NOW, "file:/var/log/nginx/error.log", "x 203.0.113.9"))
    assert grammar.applies_to(Event(NOW, "syslog:udp://127.0.0.1:514", "x 203.0.113.9", app="nginx"))
    assert not grammar.applies_to(Event(NOW, "syslog:udp://127.0.0.1:514", "x 203.0.113.9", app="sshd"))
    assert not grammar.applies_to(_journal(_SYSTEMD_UNIT="nginx.service", SYSLOG_IDENTIFIER="nginx"))


def test_raw_files_and_journal_combined() -> None:
    grammar = _grammar("applies journal _SYSTEMD_UNIT=nginx.service\napplies file format=raw\n")
    assert (grammar.source_kind, grammar.file_format) == ("file+journal", "raw")
    assert grammar.applies_to(_journal(_SYSTEMD_UNIT="nginx.service"))
    assert grammar.applies_to(Event(NOW, "file:/var/log/nginx/error.log", "x 203.0.113.9"))
    assert not grammar.applies_to(Event(NOW, "syslog:udp://127.0.0.1:514", "x 203.0.113.9", app="nginx"))


def test_ledger_alone_takes_only_ledger_events() -> None:
    grammar = _grammar("applies ledger\n")
    assert (grammar.source_kind, grammar.file_format) == ("ledger", "none")
    assert grammar.applies_to(Event(NOW, "ledger", "x 203.0.113.9"))
    assert not grammar.applies_to(Event(NOW, "file:/var/log/x", "x 203.0.113.9"))
    assert not grammar.applies_to(Event(NOW, "syslog:udp://127.0.0.1:514", "x 203.0.113.9", app="ledger"))
    assert not _grammar("applies syslog app=ledger\n").applies_to(Event(NOW, "ledger", "x 203.0.113.9"))


def test_syslog_alone() -> None:
    grammar = _grammar("applies syslog app=sshd\n")
    assert (grammar.source_kind, grammar.file_format) == ("syslog", "syslog")


ERRORS = [
    pytest.param(
        "applies journal SYSLOG_IDENTIFIER=sshd _SYSTEMD_USER_UNIT=x.service\n",
        2, 17, "SYSLOG_IDENTIFIER can be set by any local user", id="identifier-needs-pin",
    ),
    pytest.param(
        "applies journal _UID=1000 _COMM=sshd\n", 2, 27, "_COMM can be set", id="comm-uid-1000"
    ),
    pytest.param(
        "applies journal SYSLOG_IDENTIFIER=sshd\n", 2, 9, "field journald sets itself", id="untrusted"
    ),
    pytest.param("applies journal PRIORITY=3\n", 2, 9, "field journald sets itself", id="priority"),
    pytest.param("applies journal _uid=0\n", 2, 17, "not a journald field", id="lower-case"),
    pytest.param(
        "applies journal _UID=0 _UID=1\n", 2, 24, "named twice on one line", id="field-twice"
    ),
    pytest.param("applies journal\n", 2, 1, "at least one FIELD=VALUE", id="journal-empty"),
    pytest.param("applies syslog\n", 2, 1, "at least one app=NAME", id="syslog-empty"),
    pytest.param("applies syslog name=sshd\n", 2, 16, "expected app", id="syslog-option"),
    pytest.param("applies syslog app=sshd[1]\n", 2, 20, "bad app name", id="app-pid"),
    pytest.param(
        "applies syslog app=a\napplies syslog app=b\n", 3, 1, "a second 'applies syslog'", id="syslog-twice"
    ),
    pytest.param(
        "applies file format=raw\napplies file format=raw\n", 3, 1, "a second 'applies file'", id="file-twice"
    ),
    pytest.param("applies ledger\napplies ledger\n", 3, 1, "a second 'applies ledger'", id="ledger-twice"),
    pytest.param("applies ledger jail=sshd\n", 2, 16, "'applies ledger' takes no options", id="ledger-option"),
    pytest.param(
        "applies file format=syslog\n", 2, 21, "replaced by 'applies syslog app=NAME'", id="old-syslog"
    ),
    pytest.param("applies file format=raw mode=x\n", 2, 25, "unknown option 'mode'", id="file-option"),
    pytest.param("applies socket app=a\n", 2, 9, "unknown source 'socket'", id="source"),
]


@pytest.mark.parametrize(("applies", "line", "column", "message"), ERRORS)
def test_applies_errors(applies: str, line: int, column: int, message: str) -> None:
    with pytest.raises(GrammarError) as caught:
        _grammar(applies)
    error = caught.value
    assert (error.line, error.column) == (line, column), str(error)
    assert message in error.message


def test_forgeable_identifier_is_accepted_when_pinned() -> None:
    for pin in ("_SYSTEMD_UNIT=ssh.service", "_EXE=/usr/sbin/sshd", "_UID=0"):
        grammar = _grammar(f"applies journal SYSLOG_IDENTIFIER=sshd {pin}\n")
        assert grammar.journal_matches[0][0] == ("SYSLOG_IDENTIFIER", "sshd")


def test_time_stamp_with_a_rule_stamp_is_ambiguous_for_syslog() -> None:
    with pytest.raises(GrammarError, match="takes the event time from the source's header"):
        build_grammar(
            "grammar t\napplies syslog app=a\ntime stamp\nfail r: <stamp:syslog> ' ' <address>\n",
            Path("t.grammar"),
        )


# ---- applies_to ----

SSHD_LIKE = (
    "applies journal _SYSTEMD_UNIT=ssh.service\n"
    "applies journal _EXE=/usr/sbin/sshd _UID=0\n"
    "applies syslog app=sshd\n"
)


def test_journal_events_only_through_journal_groups() -> None:
    grammar = _grammar(SSHD_LIKE)
    assert grammar.applies_to(_journal(_SYSTEMD_UNIT="ssh.service", SYSLOG_IDENTIFIER="sshd"))
    assert grammar.applies_to(_journal(_EXE="/usr/sbin/sshd", _UID="0"))
    # `logger -t sshd` or a user's own copy of sshd: the app name alone never lets it in
    assert not grammar.applies_to(_journal(SYSLOG_IDENTIFIER="sshd", _UID="1000"))
    assert not grammar.applies_to(_journal(_EXE="/usr/sbin/sshd", _UID="65534"))
    assert not grammar.applies_to(_journal(_SYSTEMD_UNIT="sshd.service"))
    assert not grammar.applies_to(_journal())


def test_syslog_events_by_app_name() -> None:
    grammar = _grammar(SSHD_LIKE)
    assert grammar.applies_to(Event(NOW, "syslog:udp", "x", app="sshd", pid=12))
    assert grammar.applies_to(Event(NOW, "file:/var/log/auth.log", "x", app="sshd"))
    assert not grammar.applies_to(Event(NOW, "file:/var/log/auth.log", "x", app="CRON"))
    assert not grammar.applies_to(Event(NOW, "file:/var/log/auth.log", "x"))
    assert not grammar.applies_to(Event(NOW, "syslog:udp", "x", app="sshd-session"))


def test_journal_only_grammar_refuses_syslog_events() -> None:
    grammar = _grammar("applies journal _SYSTEMD_UNIT=ssh.service\n")
    assert not grammar.applies_to(Event(NOW, "syslog:udp", "x", app="sshd"))
    assert not grammar.applies_to(Event(NOW, "file:/var/log/auth.log", "x", app="sshd"))


def test_raw_grammar_takes_file_lines_only() -> None:
    grammar = _grammar("applies file format=raw\n")
    assert grammar.applies_to(Event(NOW, "file:/var/log/nginx/access.log", "x"))
    assert not grammar.applies_to(Event(NOW, "syslog:udp", "x", app="nginx"))
    assert not grammar.applies_to(_journal(_SYSTEMD_UNIT="nginx.service"))
