"""The fail2ban filter importer, on small filters written here."""

from pathlib import Path

import pytest

from journalban.grammar import Match, build_grammar
from journalban.grammar.fail2ban import (
    FilterImportError,
    import_filter,
    main_import,
    strip_date,
)
from journalban.grammar.fail2ban.ini import include_order

COMMON = """
[INCLUDES]
after = common.local

[DEFAULT]
_daemon = \\S*
__prefix_line = \\s*(?:\\S+\\s+)?<_daemon>(?:\\[\\d+\\])?:\\s+
"""


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(text, encoding="utf-8")
    return path


def grammar_of(path: Path, mode: str | None = None, **options: str):  # type: ignore[no-untyped-def]
    imported = import_filter(path, mode, options or None)
    return imported, build_grammar(imported.text, Path("t.grammar"))


def test_includes_local_and_interpolation(tmp_path: Path) -> None:
    write(tmp_path, "common.conf", COMMON)
    write(tmp_path, "common.local", "[DEFAULT]\n_extra = x\n")
    path = write(
        tmp_path,
        "app.conf",
        "[INCLUDES]\nbefore = common.conf\n[DEFAULT]\n_daemon = app\n"
        "[Definition]\nfailregex = ^%(__prefix_line)sbad login from <HOST>$\n",
    )
    write(
        tmp_path,
        "app.local",
        "[Definition]\nfailregex = %(known/failregex)s\n            ^%(__prefix_line)sdenied <HOST>$\n",
    )
    names = [p.name for p in include_order(path)]
    assert names == ["common.conf", "common.local", "app.conf", "app.local"]
    _, g = grammar_of(path)
    assert isinstance(g.match(" host app[12]: bad login from 203.0.113.9"), Match)
    assert isinstance(g.match(" host app[12]: denied 203.0.113.9"), Match)
    assert g.match(" host other[12]: denied 203.0.113.9") is None


def test_host_tags_and_named_captures(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "f.conf",
        "[Definition]\nfailregex = ^user <F-USER>\\S+</F-USER> from <HOST> port <F-PORT>\\d+</F-PORT>$\n"
        "            ^v6 <IP6>$\n            ^v4 <IP4>$\n            ^any <ADDR>$\n"
        "            ^net <SUBNET>$\n            ^id <F-ID/> at <ADDR>$\n",
    )
    imported, g = grammar_of(path)
    result = g.match("user root from 203.0.113.9 port 22")
    assert isinstance(result, Match) and result.captures == {"user": "root", "port": "22"}
    assert isinstance(result := g.match("v6 2001:DB8::1"), Match) and result.address == "2001:db8::1"
    assert isinstance(g.match("v4 203.0.113.9"), Match)
    assert isinstance(result := g.match("any [::ffff:203.0.113.9]"), Match)
    assert result.address == "203.0.113.9"
    assert isinstance(result := g.match("net 203.0.113.0/24"), Match)
    assert result.captures == {"cidr": "24"}
    assert isinstance(result := g.match("id abc at 203.0.113.9"), Match)
    assert result.captures == {"fid": "abc"}
    # <HOST> never matches a host name: journalban does not resolve
    assert g.match("user root from host.example.org port 22") is None
    assert any("host name" in warning for warning in imported.warnings)


def test_dns_tag_warns(tmp_path: Path) -> None:
    path = write(tmp_path, "f.conf", "[Definition]\nfailregex = ^name <DNS>$\n")
    imported, g = grammar_of(path)
    assert any("<DNS>" in warning for warning in imported.warnings)
    assert isinstance(g.match("name 203.0.113.9"), Match)


def test_prefregex_content(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "f.conf",
        "[Definition]\nprefregex = ^srv app\\[\\d+\\]: <F-CONTENT>.+</F-CONTENT>$\n"
        "failregex = ^auth failed for <F-USER>\\S+</F-USER> from <HOST>$\n"
        "            from <HOST> refused\n"
        "ignoreregex = ^auth failed for trusted\n",
    )
    _, g = grammar_of(path)
    result = g.match("srv app[1]: auth failed for bob from 203.0.113.9")
    assert isinstance(result, Match) and result.captures == {"user": "bob"}
    # the failregex is anchored at the start of the content, not of the line
    assert g.match("srv app[1]: x auth failed for bob from 203.0.113.9") is None
    # an unanchored failregex is searched inside the content
    assert isinstance(g.match("srv app[1]: conn from 203.0.113.9 refused now"), Match)
    # the prefix must match
    assert g.match("srv other[1]: auth failed for bob from 203.0.113.9") is None
    assert g.match("srv app[1]: auth failed for trusted from 203.0.113.9") is None


def test_modes(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "f.conf",
        "[Definition]\nfailregex = ^bad password from <HOST>$\n            <mdre-<mode>>\n"
        "mdre-normal =\nmdre-aggressive = ^probe from <HOST>$\n"
        "[Init]\nmode = normal\n",
    )
    _, normal = grammar_of(path)
    _, aggressive = grammar_of(path, "aggressive")
    assert normal.match("probe from 203.0.113.9") is None
    assert isinstance(aggressive.match("probe from 203.0.113.9"), Match)
    assert isinstance(normal.match("bad password from 203.0.113.9"), Match)


def test_mode_in_percent_interpolation(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "f.conf",
        "[Definition]\nmode = normal\nfailregex = ^%(mode)s <HOST>$\n",
    )
    _, extra = grammar_of(path, "extra")
    assert isinstance(extra.match("extra 203.0.113.9"), Match)
    assert extra.match("normal 203.0.113.9") is None


def test_nofail_part_becomes_ignore(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "f.conf",
        "[Definition]\nfailregex = ^Failed (?:<F-NOFAIL>publickey</F-NOFAIL>|\\S+) from <HOST>$\n",
    )
    _, g = grammar_of(path)
    assert isinstance(g.match("Failed password from 203.0.113.9"), Match)
    assert g.decide("Failed publickey from 203.0.113.9") == ("nofail-1", None)


def test_journalmatch(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "f.conf",
        "[Definition]\nfailregex = ^x <HOST>$\njournalmatch = _SYSTEMD_UNIT=app.service + _COMM=app\n",
    )
    imported, g = grammar_of(path)
    assert g.journal_matches == ((("_SYSTEMD_UNIT", "app.service"),),)
    assert any("_COMM=app" in warning for warning in imported.warnings)


def test_untrusted_journalmatch_falls_back_to_file(tmp_path: Path) -> None:
    path = write(tmp_path, "f.conf", "[Definition]\nfailregex = ^x <HOST>$\njournalmatch = SYSLOG_IDENTIFIER=x\n")
    imported, g = grammar_of(path)
    assert g.source_kind == "file"
    assert any("no trusted journalmatch" in warning for warning in imported.warnings)


def test_backtracking_regex_is_flagged(tmp_path: Path) -> None:
    path = write(tmp_path, "f.conf", "[Definition]\nfailregex = ^(?!ok)\\w+ from <HOST>$\n")
    _, g = grammar_of(path)
    assert g.rules[0].backtracking


def test_multiline_filter(tmp_path: Path) -> None:
    path = write(tmp_path, "f.conf", "[Definition]\nfailregex = ^a\\nb <HOST>$\nmaxlines = 2\n")
    with pytest.raises(FilterImportError) as error:
        import_filter(path)
    assert error.value.multiline


def test_errors_name_file_and_key(tmp_path: Path) -> None:
    path = write(tmp_path, "f.conf", "[Definition]\nfailregex = ^%(missing)s <HOST>$\n")
    with pytest.raises(FilterImportError) as error:
        import_filter(path)
    assert "f.conf" in str(error.value) and "failregex" in str(error.value)
    with pytest.raises(FilterImportError):
        import_filter(tmp_path / "absent.conf")


@pytest.mark.parametrize(
    ("line", "pattern", "expected"),
    [
        ("Apr  3 01:11:12 host sshd[1]: msg", None, " host sshd[1]: msg"),
        ("Apr  3 01:11:12 host sshd[1]: msg", "{^LN-BEG}", " host sshd[1]: msg"),
        ("2013-01-02 03:04:05 host x: msg", None, " host x: msg"),
        ('1.2.3.4 - - [01/Apr/2013:16:59:57 +0000] "GET /"', None, '1.2.3.4 - - [] "GET /"'),
        ("[Sun Jul 23 21:41:32.266436 2017] [error] x", None, "[] [error] x"),
        ("x Apr  3 01:11:12 y", "{^LN-BEG}", "x Apr  3 01:11:12 y"),
        ("t=2020-01-02T03:04:05+0000 msg", "^t=%Y-%m-%dT%H:%M:%S%z", " msg"),
        ("1600000000.123 msg", "EPOCH", " msg"),
        ("no date here", None, "no date here"),
    ],
)
def test_strip_date(line: str, pattern: str | None, expected: str) -> None:
    assert strip_date(line, pattern) == expected


def test_main_import(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "f.conf", "[Definition]\nfailregex = ^x <DNS>$\n")
    out = tmp_path / "f.grammar"
    assert main_import(path, None, out) == 0
    assert "grammar f" in out.read_text()
    assert "<DNS>" in capsys.readouterr().err
    assert main_import(path, None, None) == 0
    assert "fail fail-1" in capsys.readouterr().out
    assert main_import(tmp_path / "absent.conf", None, None) == 1
    assert "absent.conf" in capsys.readouterr().err
