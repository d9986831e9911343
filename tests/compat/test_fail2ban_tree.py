"""A copy of the real Debian /etc/fail2ban tree, imported whole, against fail2ban's own reading of it.

fail2ban-client -c DIR -d prints the commands fail2ban would send its server for
the tree: the values it computed per jail. The imported config must pass
`journalban check` (run as a subprocess) and hold the same values.
"""

import ast
import functools
import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from journalban.durations import parse_duration
from journalban.grammar import Match, load_grammar
from journalban.grammar.fail2ban import strip_date
from journalban.grammar.fail2ban.values import seconds

SYSTEM_TREE = Path("/etc/fail2ban")
JAILS = ("sshd", "nginx-http-auth", "postfix", "recidive")
FILTER_JAILS = JAILS[:3]  # recidive reads the ledger's bans instead of fail2ban's log

JAIL_LOCAL = """\
[DEFAULT]
bantime = 1h
ignoreip = 127.0.0.1/8 ::1 192.0.2.0/24

[sshd]
mode = aggressive
maxretry = 3

[nginx-http-auth]
enabled = true

[postfix]
enabled = true
mode = rbl

[recidive]
enabled = true
"""

JAIL_D_LOCAL = """\
[nginx-http-auth]
findtime = 30m
bantime = -1
port = %(known/port)s,8080

[postfix]
backend = systemd
banaction = nftables-multiport
action = %(action_mw)s

[recidive]
logpath = {logs}/fail2ban.log
bantime.increment = true
bantime.factor = 2
bantime.maxtime = 5w
"""

# resolved through %(sshd_log)s etc. of paths-common.conf/paths-debian.conf
PATHS_OVERRIDES = """\
[DEFAULT]
syslog_authpriv = {logs}/auth.log
syslog_mail = {logs}/mail.log
nginx_error_log = {logs}/nginx/*error.log
"""


def journalban(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "journalban", *args], capture_output=True, text=True, timeout=120,
                          check=False)


@functools.cache  # each tree is written once, before it is read
def fail2ban_view(tree: Path) -> dict[str, dict[str, Any]]:
    """Per jail, what fail2ban-client computed: backend, scalar options, log paths, failregexes, actions."""
    out = subprocess.run(["fail2ban-client", "-c", str(tree), "-d"], capture_output=True, text=True,
                         timeout=120, check=True)
    jails: dict[str, dict[str, Any]] = {}
    for line in out.stdout.splitlines():
        if not line.startswith("["):
            continue
        command = ast.literal_eval(line)
        if command[0] == "add":
            jails[command[1]] = {"backend": command[2], "logpath": [], "failregex": [], "actions": []}
        elif command[0] in ("set", "multi-set") and command[1] in jails:
            jail, key, rest = jails[command[1]], command[2], command[3:]
            if key == "addlogpath":
                jail["logpath"].append(rest[0])
            elif key == "addfailregex":
                jail["failregex"].extend(rest[0] if isinstance(rest[0], list) else rest)
            elif key == "addaction":
                jail["actions"].append(rest[0])
            elif key == "addignoreip":
                jail["ignoreip"] = list(rest)
            elif len(rest) == 1:
                jail[key] = rest[0]
    return jails


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    base = tmp_path_factory.mktemp("f2b")
    tree = base / "fail2ban"
    shutil.copytree(SYSTEM_TREE, tree)
    logs = base / "log"
    (logs / "nginx").mkdir(parents=True)
    for name in ("auth.log", "mail.log", "fail2ban.log", "nginx/error.log"):
        (logs / name).touch()
    (tree / "jail.local").write_text(JAIL_LOCAL, encoding="utf-8")
    (tree / "jail.d" / "50-custom.local").write_text(JAIL_D_LOCAL.format(logs=logs), encoding="utf-8")
    (tree / "paths-overrides.local").write_text(PATHS_OVERRIDES.format(logs=logs), encoding="utf-8")
    yield tree
    shutil.rmtree(base)


@pytest.fixture(scope="module")
def imported(tree: Path) -> tuple[subprocess.CompletedProcess[str], Path]:
    out = tree.parent / "journalban"
    return journalban("grammar", "import-fail2ban", "--tree", str(tree), "-o", str(out)), out


@pytest.fixture(scope="module")
def config(imported: tuple[subprocess.CompletedProcess[str], Path]) -> dict[str, Any]:
    result, out = imported
    assert result.returncode == 0, result.stderr
    return tomllib.loads((out / "journalban.toml").read_text(encoding="utf-8"))


def test_the_written_config_passes_journalban_check(imported: tuple[subprocess.CompletedProcess[str], Path]) -> None:
    result, out = imported
    assert result.returncode == 0, result.stderr
    check = journalban("check", "-c", str(out / "journalban.toml"))
    assert check.returncode == 0, check.stderr
    assert f"jails: {', '.join(JAILS)};" in check.stdout


def test_exactly_the_enabled_jails_are_written(tree: Path, config: dict[str, Any]) -> None:
    assert sorted(config["jails"]) == sorted(fail2ban_view(tree)) == sorted(JAILS)


@pytest.mark.parametrize("jail", JAILS)
def test_limits_equal_what_fail2ban_computes(tree: Path, config: dict[str, Any], jail: str) -> None:
    theirs, ours = fail2ban_view(tree)[jail], config["jails"][jail]
    assert ours["maxretry"] == theirs["maxretry"]
    assert parse_duration(ours["findtime"]) == seconds(theirs["findtime"])
    bantime = ours["bantime"]
    assert (bantime if bantime == -1 else parse_duration(bantime)) == seconds(theirs["bantime"])
    assert ours.get("ignoreip") == theirs.get("ignoreip")
    assert ours.get("bantime_increment", False) == theirs.get("bantime.increment", False)
    if "bantime.factor" in theirs:
        assert ours["bantime_factor"] == float(theirs["bantime.factor"])
        assert parse_duration(ours["bantime_maxtime"]) == seconds(theirs["bantime.maxtime"])


@pytest.mark.parametrize("jail", FILTER_JAILS)
def test_sources_equal_what_fail2ban_reads(tree: Path, config: dict[str, Any], jail: str) -> None:
    theirs, ours = fail2ban_view(tree)[jail], config["jails"][jail]
    if theirs["backend"].startswith("systemd"):
        assert ours["journal"] is True and "files" not in ours
        return
    assert ours["journal"] is False
    # fail2ban expands globs against the disk; journalban keeps the glob as written
    expanded = [p for written in ours["files"] for p in sorted(map(str, Path("/").glob(written.lstrip("/"))))]
    assert expanded == theirs["logpath"]


@pytest.mark.parametrize("jail", FILTER_JAILS)
def test_the_filter_and_its_mode_are_the_ones_fail2ban_uses(tree: Path, config: dict[str, Any],
                                                            imported: tuple[subprocess.CompletedProcess[str], Path],
                                                            jail: str) -> None:
    """Every failregex fail2ban uses is a rule of the grammar or reported as not imported, and no other."""
    result, out = imported
    theirs = fail2ban_view(tree)[jail]["failregex"]
    grammar = (out / "grammars" / f"{config['jails'][jail]['grammar']}.grammar").read_text(encoding="utf-8")
    rules = {int(n) for n in re.findall(r"^fail fail-(\d+):", grammar, re.M)}
    reported = {int(n) for n in re.findall(rf"^not carried over: {jail}: filter: .* failregex (\d+) ",
                                           result.stderr, re.M)}
    assert rules and not rules & reported
    assert rules | reported == set(range(1, len(theirs) + 1))


def test_modes_from_the_jail_reach_the_filter(tree: Path, config: dict[str, Any],
                                             imported: tuple[subprocess.CompletedProcess[str], Path]) -> None:
    view = fail2ban_view(tree)
    assert len(view["sshd"]["failregex"]) > 20  # aggressive: normal's rules plus the ddos ones
    assert all("blocked" in regex for regex in view["postfix"]["failregex"])  # rbl only
    grammars = imported[1] / "grammars"
    sshd = load_grammar(grammars / "f2b-sshd.grammar")
    probe = "Nov 26 00:10:01 host sshd[123]: Did not receive identification string from 192.0.2.9"
    assert isinstance(sshd.match(strip_date(probe, "{^LN-BEG}")), Match)  # aggressive (ddos) only
    postfix = load_grammar(grammars / "f2b-postfix.grammar")
    assert postfix.journal_matches == ((("_SYSTEMD_UNIT", "postfix.service"),),)
    rbl = ("NOQUEUE: reject: RCPT from unknown[192.0.2.25]: 554 5.7.1 Service unavailable; Client host "
           "[192.0.2.25] blocked using zen.spamhaus.org; from=<a@b> to=<c@d> proto=ESMTP helo=<x>")
    found = postfix.match(rbl)  # the journal's MESSAGE: fail2ban's short journal prefix (logtype journal)
    assert isinstance(found, Match) and found.address == "192.0.2.25"
    sasl = "warning: unknown[192.0.2.26]: SASL LOGIN authentication failed: UGFzc3dvcmQ6"
    assert postfix.match(sasl) is None  # mode rbl: not the normal mode's rules


def test_recidive_reads_the_ledger_bans_with_fail2bans_limits(
        tree: Path, config: dict[str, Any], imported: tuple[subprocess.CompletedProcess[str], Path]) -> None:
    ours = config["jails"]["recidive"]
    assert ours["grammar"] == "recidive" and ours["ledger_bans"] is True and "files" not in ours
    assert fail2ban_view(tree)["recidive"]["logpath"] == [str(tree.parent / "log" / "fail2ban.log")]
    assert "not carried over: recidive: logpath: " in imported[0].stderr


def test_actions_map_to_firewall_ports_and_a_comment(tree: Path, config: dict[str, Any],
                                                     imported: tuple[subprocess.CompletedProcess[str], Path]) -> None:
    view, jails = fail2ban_view(tree), config["jails"]
    assert view["sshd"]["actions"] == ["iptables-multiport"]
    assert jails["sshd"]["firewall"] == "iptables" and jails["sshd"]["ports"] == [22]
    assert jails["sshd"]["blocktype"] == "reject"  # fail2ban's iptables actions reject
    assert jails["nginx-http-auth"]["ports"] == [80, 443, 8080]
    assert view["recidive"]["actions"] == ["iptables-allports"] and jails["recidive"]["ports"] == "all"
    assert view["postfix"]["actions"][0] == "nftables-multiport" and jails["postfix"]["firewall"] == "nftables"
    assert jails["postfix"]["ports"] == [25, 465, 587]
    text = (imported[1] / "journalban.toml").read_text(encoding="utf-8")
    assert re.search(r"^# not carried over: action sendmail-whois\[", text, re.M)
    assert "not carried over: postfix: action sendmail-whois: a mail/chat/report action" in imported[0].stderr


def test_what_is_not_carried_over_is_reported(imported: tuple[subprocess.CompletedProcess[str], Path]) -> None:
    stderr = imported[0].stderr
    assert "not carried over: nginx-http-auth: logpath: " not in stderr  # its glob is followed as written
    assert "datepattern" not in stderr  # the file source cuts the date out (applies file format=fail2ban)
    assert "4 jails imported (sshd, nginx-http-auth, postfix, recidive), 0 not" in stderr


def write_tree(base: Path, jail_local: str) -> Path:
    tree = base / "fail2ban"
    shutil.copytree(SYSTEM_TREE, tree)
    (tree / "jail.local").write_text(jail_local, encoding="utf-8")
    return tree


def test_a_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    tree = write_tree(tmp_path, "[sshd]\nenabled = true\nthis line is no option\n")
    result = journalban("grammar", "import-fail2ban", "--tree", str(tree), "-o", str(tmp_path / "out"))
    assert result.returncode == 1
    assert f"error: {tree}/jail.local:3:1: cannot parse 'this line is no option': expected a [section], " \
           "NAME = VALUE, or an indented continuation line" in result.stderr
    assert not (tmp_path / "out" / "journalban.toml").exists()


def test_a_missing_filter_is_reported_and_the_other_jails_still_written(tmp_path: Path) -> None:
    tree = write_tree(tmp_path, "[custom]\nenabled = true\nfilter = no-such-filter\nlogpath = /var/log/x.log\n")
    out = tmp_path / "out"
    result = journalban("grammar", "import-fail2ban", "--tree", str(tree), "-o", str(out))
    assert result.returncode == 1
    assert f"jail custom not imported: [custom] filter 'no-such-filter' does not exist: no {tree}/filter.d/" \
           "no-such-filter.conf or .local" in result.stderr
    check = journalban("check", "-c", str(out / "journalban.toml"))
    assert check.returncode == 0, check.stderr
    assert "jails: sshd;" in check.stdout


def test_a_directory_that_is_no_fail2ban_tree_is_refused(tmp_path: Path) -> None:
    result = journalban("grammar", "import-fail2ban", "--tree", str(tmp_path), "-o", str(tmp_path / "out"))
    assert result.returncode == 1
    assert "no jail.conf or jail.local" in result.stderr


def test_tree_and_filter_are_exclusive_and_tree_needs_a_directory(tmp_path: Path) -> None:
    assert "give a FILTER.conf, or --tree DIR" in journalban("grammar", "import-fail2ban").stderr
    result = journalban("grammar", "import-fail2ban", "--tree", str(SYSTEM_TREE))
    assert result.returncode == 1 and "give -o DIR" in result.stderr


def test_every_jail_of_the_debian_tree_is_imported_or_named(tmp_path: Path) -> None:
    tree = write_tree(tmp_path, "[DEFAULT]\nenabled = true\n")
    out = tmp_path / "out"
    result = journalban("grammar", "import-fail2ban", "--tree", str(tree), "-o", str(out))
    not_imported = re.findall(r"^error: jail (\S+) not imported: (.*)$", result.stderr, re.M)
    assert dict(not_imported).keys() == {"3proxy", "guacamole", "mongodb-auth", "slapd", "pass2allow-ftp"}
    assert "lets the matched addresses in" in dict(not_imported)["pass2allow-ftp"]  # an allow list
    assert "no single-line rule with an address" in dict(not_imported)["slapd"]  # multi-line only
    check = journalban("check", "-c", str(out / "journalban.toml"))
    assert check.returncode == 0, check.stderr
    written = tomllib.loads((out / "journalban.toml").read_text(encoding="utf-8"))["jails"]
    assert sorted([*written, *dict(not_imported)]) == sorted(fail2ban_view(tree))  # each jail fail2ban runs
