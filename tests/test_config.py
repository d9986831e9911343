import ipaddress
import re
from pathlib import Path

import pytest

from journalban import paths
from journalban.config import SCHEMA, ConfigError, default_config_path, load_config, parse_config
from journalban.firewall.base import PortSpec

ROOT = Path(__file__).resolve().parent.parent

GOOD = """
[ledger]
url = "sqlite:////tmp/x.db"

[defaults]
bantime = "1h"
ignoreip = ["192.0.2.0/24", "2001:db8::/32"]

[jails.wplogin]
grammar = "wp-limit-login"
files = ["/var/log/nginx/wp-limit-login.log"]
maxretry = 1
bantime = 600
ports = [80, "443/tcp", "6000:6010/udp"]
"""


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, Path("/etc/jb.toml"))
    return [str(p) for p in caught.value.problems]


def test_values_are_typed_and_jails_inherit_defaults() -> None:
    config = parse_config(GOOD, Path("x.toml"))
    jail = config.jails["wplogin"]
    assert (jail.maxretry, jail.bantime, jail.findtime) == (1, 600, 600)
    assert config.ledger_url == "sqlite:////tmp/x.db"
    assert config.reconcile_interval == 30
    assert jail.ignoreip == (ipaddress.ip_network("192.0.2.0/24"), ipaddress.ip_network("2001:db8::/32"))
    assert jail.ports == (PortSpec("tcp", ("80", "443")), PortSpec("udp", ("6000:6010",)))
    assert config.grammar_dirs[-1] == paths.SHIPPED_GRAMMARS


def test_unknown_key_is_named_with_its_line_and_column() -> None:
    text = GOOD.replace("maxretry = 1", "  max_retry = 1")
    assert problems(text) == ["/etc/jb.toml:12:3: unknown key 'max_retry' in [jails.wplogin]"]


def test_bad_values_are_all_reported_naming_the_key() -> None:
    text = GOOD.replace('bantime = "1h"', 'bantime = "soon"').replace("maxretry = 1", "maxretry = 0")
    text += '\n[jails.x]\ngrammar = "g"\nfiles = ["/f"]\nblocktype = "explode"\n'
    found = problems(text)
    assert found[0].startswith("/etc/jb.toml:6:1: defaults.bantime: expected a duration")
    assert found[1].startswith("/etc/jb.toml:12:1: jails.wplogin.maxretry: expected a whole number")
    assert found[2].startswith("/etc/jb.toml:19:1: jails.x.blocktype: expected one of drop, reject")


def test_unknown_section_missing_keys_and_bad_jail_names() -> None:
    text = '[ledgr]\nurl = "x"\n\n[jails.this-name-is-far-too-long-for-iptables]\nfiles = []\n\n[jails.1st]\n'
    found = problems(text)
    assert found[0] == "/etc/jb.toml:1:1: unknown section [ledgr]"
    assert found[1] == "/etc/jb.toml:4:1: [jails.this-name-is-far-too-long-for-iptables] needs 'grammar'"
    assert "too long for the iptables firewall: at most 25" in found[2] and found[2].startswith("/etc/jb.toml:4:1:")
    assert "must start with a letter" in found[3] and found[3].startswith("/etc/jb.toml:7:1:")


@pytest.mark.parametrize("ports", ['"some"', "[]", '["ssh"]', "[70000]", '["80/icmp"]', "[true]"])
def test_bad_ports(ports: str) -> None:
    assert "ports" in problems(GOOD.replace('[80, "443/tcp", "6000:6010/udp"]', ports))[0]


def test_malformed_toml_reports_line_and_column() -> None:
    found = problems('[ledger]\nurl = "unterminated\n')
    assert len(found) == 1 and re.match(r"/etc/jb\.toml:2:\d+: invalid TOML", found[0])


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.toml")


def test_embedded_default_is_valid_and_used_without_etc_file() -> None:
    config = load_config(paths.DEFAULT_CONFIG)
    assert config.jails["wplogin"].maxretry == 1
    assert config.jails["wplogin"].bantime == 600
    assert paths.DEFAULT_CONFIG.read_bytes() == (ROOT / "packaging/journalban.toml").read_bytes()


def documented_keys() -> dict[str, set[str]]:
    sections: dict[str, set[str]] = {}
    current = None
    for line in (ROOT / "docs/config.md").read_text().splitlines():
        heading = re.fullmatch(r"## \[(.+)\]", line)
        if heading:
            current = sections.setdefault(heading[1], set())
        elif current is not None and (row := re.match(r"\| (`[a-z_0-9]+`(?: `[a-z_0-9]+`)*) \|", line)):
            current.update(re.findall(r"`([a-z_0-9]+)`", row[1]))
    return sections


def test_docs_name_exactly_the_keys_of_the_schema() -> None:
    assert documented_keys() == {section: set(keys) for section, keys in SCHEMA.items()}


def test_enforcement_keys() -> None:
    text = GOOD.replace("bantime = 600", 'bantime = "forever"\nsubnet_threshold = 5\nchain = "DOCKER-USER"\nlog = true')
    jail = parse_config(text, Path("x.toml")).jails["wplogin"]
    assert (jail.bantime, jail.subnet_threshold, jail.subnet_prefix4, jail.chain, jail.log) == (
        None, 5, 24, "DOCKER-USER", True)
    assert (jail.on_stop, jail.ignoreself, jail.bantime_increment) == ("keep", True, False)


@pytest.mark.parametrize(("line", "message"), [
    ("subnet_prefix4 = 8", "subnet_prefix4: expected a whole number from 16 to 32"),
    ("subnet_prefix6 = 16", "subnet_prefix6: expected a whole number from 32 to 128"),
    ('on_stop = "flush"', "on_stop: expected one of keep, remove"),
    ('chain = "IN PUT"', "chain: expected a chain name"),
])
def test_bad_enforcement_values(line: str, message: str) -> None:
    assert message in problems(GOOD.replace("maxretry = 1", line))[0]


def test_ipset_names_limit_jail_names() -> None:
    text = GOOD.replace("[jails.wplogin]", "[jails.twenty-four-characters-x]").replace(
        "maxretry = 1", 'firewall = "ipset"')
    assert "too long for the ipset firewall: at most 23 characters" in problems(text)[0]


def test_etc_config_is_used_when_present_else_the_embedded_default(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    etc = tmp_path / "journalban.toml"
    monkeypatch.setattr(paths, "SYSTEM_CONFIG", etc)
    assert default_config_path() == paths.DEFAULT_CONFIG
    etc.write_text('[ledger]\nurl = "sqlite:////tmp/etc.db"\n')
    assert default_config_path() == etc
    assert load_config().ledger_url == "sqlite:////tmp/etc.db"


@pytest.mark.parametrize(("value", "expected"),
                         [("", 0.01), ("poll_interval = 0", 0.0), ("poll_interval = 0.05", 0.05)])
def test_journal_poll_interval(value: str, expected: float) -> None:
    """journald's change notice comes up to 250 ms late: the journal is read on a short timer by default."""
    config = parse_config(GOOD + f"\n[sources.journal]\n{value}\n", Path("x.toml"))
    assert config.journal.poll_interval == expected


@pytest.mark.parametrize("value", ["-1", "61", "true", '"fast"'])
def test_bad_journal_poll_interval(value: str) -> None:
    found = problems(GOOD + f"\n[sources.journal]\npoll_interval = {value}\n")
    assert "sources.journal.poll_interval: expected a number of seconds between 0 and 60" in found[0]
