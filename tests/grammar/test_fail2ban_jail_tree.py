"""Whole-tree import on small trees written here: reading order, interpolation, reports, errors."""

from pathlib import Path

import pytest

from journalban.config import parse_config
from journalban.grammar.fail2ban import Dropped, import_tree
from journalban.grammar.fail2ban.jails import read_order, read_tree

FILTER = """\
[INCLUDES]
before = common.conf

[Init]
mode = normal

[Definition]
_strict = ^Refused <HOST>$
_normal = ^(?:Refused|Denied) <HOST>$
failregex = <_<mode>>
journalmatch = _SYSTEMD_UNIT=demo.service
"""

JAIL_CONF = """\
[INCLUDES]
before = paths.conf

[DEFAULT]
enabled = false
bantime = 10m
findtime = 10m
maxretry = 5
filter = %(__name__)s[mode=%(mode)s]
mode = normal
port = 0:65535
protocol = tcp
banaction = iptables-multiport
action = %(banaction)s[port="%(port)s", protocol="%(protocol)s"]

[demo]
port = 2222
logpath = %(demo_log)s
"""


def write(base: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = base / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return base


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    return write(tmp_path / "f2b", {
        "jail.conf": JAIL_CONF,
        "paths.conf": "[DEFAULT]\ndemo_log = /var/log/demo.log\n",
        "filter.d/common.conf": "[DEFAULT]\n",
        "filter.d/demo.conf": FILTER,
    })


def imported(tree: Path, files: dict[str, str]):  # type: ignore[no-untyped-def]
    write(tree, files)
    result = import_tree(tree, tree / "grammars")
    return result, (parse_config(result.config, tree / "journalban.toml") if result.config else None)


def test_files_are_read_in_fail2bans_order(tree: Path) -> None:
    write(tree, {"jail.local": "[demo]\n", "jail.d/b.local": "", "jail.d/a.conf": "", "paths.local": ""})
    assert [p.relative_to(tree).as_posix() for p in read_order(tree)] == [
        "paths.conf", "paths.local", "jail.conf", "jail.d/a.conf", "jail.local", "jail.d/b.local"]


def test_later_files_win_and_known_gives_the_earlier_value(tree: Path) -> None:
    result, config = imported(tree, {
        "jail.d/10.conf": "[demo]\nenabled = true\nmaxretry = 9\n",
        "jail.local": "[DEFAULT]\nbantime = 1h\n[demo]\nmaxretry = 3\nport = %(known/port)s,2223\nmode = strict\n",
        "jail.d/20.local": "[demo]\nfindtime = 2h 30m\n",
    })
    assert result.errors == [] and config is not None
    jail = config.jails["demo"]
    assert (jail.maxretry, jail.bantime, jail.findtime) == (3, 3600, 9000)
    assert [spec.ports for spec in jail.ports or ()] == [("2222", "2223")]
    assert jail.files == ("/var/log/demo.log",) and jail.journal is False
    assert "(?:Denied" not in result.grammars["f2b-demo"]  # mode strict from the jail reached the filter


def test_backend_systemd_reads_the_filters_journalmatch(tree: Path) -> None:
    result, config = imported(tree, {"jail.local": "[demo]\nenabled = true\nbackend = systemd\n"})
    assert config is not None and config.jails["demo"].journal is True and config.jails["demo"].files == ()
    assert "applies journal _SYSTEMD_UNIT=demo.service" in result.grammars["f2b-demo"]
    assert Dropped("demo", "logpath", "not read with backend = systemd (as in fail2ban)") in result.dropped


def test_a_jails_own_journalmatch_overrides_the_filters(tree: Path) -> None:
    result, config = imported(tree, {"jail.local": "[demo]\nenabled = true\nbackend = systemd\n"
                                                   "journalmatch = _SYSTEMD_UNIT=other.service _UID=0\n"})
    assert config is not None and result.errors == []
    assert "applies journal _SYSTEMD_UNIT=other.service _UID=0\n" in result.grammars["f2b-demo"]


def test_what_has_no_equivalent_is_reported_with_jail_key_and_why(tree: Path) -> None:
    result, config = imported(tree, {"jail.local": (
        "[DEFAULT]\nusedns = yes\n[demo]\nenabled = true\nignoreip = 192.0.2.0/24 friend.example.org\n"
        "ignorecommand = /bin/true\nmaxmatches = 2\nfrobnicate = 1\nbantime.increment = true\n"
        "action = %(banaction)s[port=\"%(port)s\"]\n         mail-whois[dest=root]\n")})
    assert config is not None and [str(n) for n in config.jails["demo"].ignoreip] == ["192.0.2.0/24"]
    assert {(d.key, d.why) for d in result.dropped} >= {
        ("ignoreip", "'friend.example.org' is not an address or network (journalban never resolves names)"),
        ("usedns", "journalban never resolves host names"),
        ("ignorecommand", "journalban runs no command to decide whether to ignore an address"),
        ("maxmatches", "journalban keeps every failure of a ban in the ledger"),
        ("frobnicate", "no journalban equivalent"),
        ("bantime.maxtime", "not set: fail2ban has no limit, journalban's default (1w) applies"),
        ("action mail-whois", "a mail/chat/report action: journalban runs none (an on_ban hook can)"),
    }
    assert "# not carried over: action mail-whois[dest=root]" in result.config
    assert all(d.jail == "demo" for d in result.dropped)


@pytest.mark.parametrize(("jail_local", "error"), [
    ("[demo]\nenabled = true\nfilter = missing\n",
     "jail demo not imported: [demo] filter 'missing' does not exist: no {tree}/filter.d/missing.conf or .local"),
    ("[demo]\nenabled = true\nlogpath = %(nowhere)s\n",
     "jail demo not imported: [demo] logpath: unknown reference %(nowhere)s"),
    ("[demo]\nenabled = true\nbackend = systemd[journalpath=/x\n",
     "jail demo not imported: 'systemd[journalpath=/x': expected NAME or NAME[option=value, ...]"),
    ("[demo]\nenabled = true\nbackend = systemd\njournalmatch = _COMM=demo\n",
     "jail demo not imported: [demo] filter 'demo': {tree}/filter.d/demo.conf: [Definition] journalmatch "
     "'_COMM=demo' gives no trusted journal selector"),
    ("[demo]\nenabled = perhaps\n", "jail demo not imported: [demo] enabled: 'perhaps' is not a boolean"),
    ("[my.jail]\nenabled = true\nfilter = demo\n",
     "jail my.jail not imported: [my.jail] is not a journalban jail name"),
    ("[demo]\nenabled = true\nfilter = demo[mode=normal\n",
     "jail demo not imported: [demo] filter: 'demo[mode=normal': expected NAME or NAME[option=value, ...]"),
])
def test_a_jail_that_cannot_be_imported_is_named_and_the_rest_is_kept(tree: Path, jail_local: str,
                                                                      error: str) -> None:
    write(tree, {"jail.d/ok.conf": "[other]\nenabled = true\nfilter = demo\nlogpath = /var/log/o.log\n"})
    result, config = imported(tree, {"jail.local": jail_local})
    assert len(result.errors) == 1 and result.errors[0].startswith(error.format(tree=tree))
    assert [d for d in result.dropped if d.jail != "other"] == []
    assert config is not None and "other" in config.jails


EXPECTED = "expected a [section], NAME = VALUE, or an indented continuation line"


def test_syntax_errors_name_file_and_line(tree: Path) -> None:
    write(tree, {"jail.d/bad.conf": "enabled = true\n", "jail.local": "[demo]\nok = 1\n  \n[broken\nx\n"})
    assert import_tree(tree, tree / "g").errors == [
        f"{tree}/jail.d/bad.conf:1:1: expected a [section] header before 'enabled = true'"]
    (tree / "jail.d/bad.conf").unlink()
    assert import_tree(tree, tree / "g").errors == [
        f"{tree}/jail.local:4:1: cannot parse '[broken': {EXPECTED}",
        f"{tree}/jail.local:5:1: cannot parse 'x': {EXPECTED}"]


def test_read_tree_refuses_a_directory_without_jails(tmp_path: Path) -> None:
    assert import_tree(tmp_path, tmp_path).errors == [
        f"{tmp_path}: no jail.conf or jail.local: not a fail2ban configuration directory"]
    with pytest.raises(Exception, match="not a fail2ban configuration directory"):
        read_tree(tmp_path)
