"""Recidive fed from the ledger: the real daemon, an sshd jail banning briefly, a recidive
jail that counts the sshd jail's bans and bans for longer.

The daemon runs as a process in the host's namespace with the dry-run firewall: what
is checked here is the ledger (bans, their reasons, the count kept across a restart),
which is what the firewall is reconciled from.
"""

from datetime import datetime
from pathlib import Path

from tests.e2e.daemon import HOST, DaemonProcess, count, query, wait_for

REPEATER, OTHER = "203.0.113.9", "198.51.100.4"


def sshd_line(address: str) -> str:
    """An auth.log line stamped now (host local time, as syslog writes it)."""
    now = datetime.now().astimezone()
    return (f"{now:%b} {now.day:2d} {now:%H:%M:%S} web1 sshd[4242]: "
            f"Failed password for root from {address} port 22 ssh2\n")


def write_config(tmp: Path) -> Path:
    config = tmp / "journalban.toml"
    config.write_text(f"""
[control]
socket = "{tmp / 'control.sock'}"

[ledger]
url = "sqlite:///{tmp / 'ledger.db'}"

[sources.files]
poll_interval = 0.05

[jails.sshd]
grammar = "sshd"
files = ["{tmp / 'auth.log'}"]
maxretry = 1
bantime = 1
firewall = "dry-run"

[jails.recidive]
grammar = "recidive"
ledger_bans = true
maxretry = 3
findtime = "1d"
bantime = "1w"
firewall = "dry-run"
""")
    return config


def bans(db: Path, jail: str, address: str) -> int:
    return count(db, "SELECT count(*) FROM bans WHERE jail = ? AND address = ?", jail, address)


def ban_again(db: Path, log: Path, address: str, times: int) -> None:
    """Once the address's earlier sshd ban is over, one more failure: its ban number ``times``."""
    wait_for("the earlier sshd ban to end", lambda: count(
        db, "SELECT count(*) FROM bans WHERE jail = 'sshd' AND address = ? AND ended_at IS NULL", address) == 0)
    with log.open("a") as f:
        f.write(sshd_line(address))
    wait_for(f"sshd ban {times} of {address}", lambda: bans(db, "sshd", address) == times)


def test_three_sshd_bans_within_findtime_give_one_recidive_ban_across_a_restart(tmp_path: Path) -> None:
    db, log = tmp_path / "ledger.db", tmp_path / "auth.log"
    log.touch()
    daemon = DaemonProcess(HOST, write_config(tmp_path), tmp_path / "daemon.log")
    daemon.start()
    try:
        ban_again(db, log, REPEATER, 1)
        ban_again(db, log, OTHER, 1)  # another address's ban counts for that address only
        ban_again(db, log, REPEATER, 2)
        assert bans(db, "recidive", REPEATER) == 0
        assert daemon.stop() == 0
        daemon.start()  # the two bans counted so far are failure rows in the ledger
        ban_again(db, log, REPEATER, 3)
        wait_for("the recidive ban", lambda: bans(db, "recidive", REPEATER) == 1)
        ban_again(db, log, OTHER, 2)
    finally:
        if daemon.running:
            daemon.stop()

    (reason, started, expires), = query(
        db, "SELECT reason, started_at, expires_at FROM bans WHERE jail = 'recidive'")
    assert reason.startswith(f"3 failures in 86400s: ban sshd {REPEATER} until "), reason  # type: ignore[attr-defined]
    assert "Failed password for root from 203.0.113.9 port 22 ssh2" in reason  # type: ignore[operator]
    week = datetime.fromisoformat(str(expires)) - datetime.fromisoformat(str(started))
    assert week.days == 7
    assert bans(db, "recidive", OTHER) == 0  # two bans: below maxretry
    counted = query(db, "SELECT address, source, rule, ban_id IS NOT NULL FROM failures "
                        "WHERE jail = 'recidive' ORDER BY id")
    assert counted == [(REPEATER, "ledger", "recidive/ban", 1), (OTHER, "ledger", "recidive/ban", 0),
                       (REPEATER, "ledger", "recidive/ban", 1), (REPEATER, "ledger", "recidive/ban", 1),
                       (OTHER, "ledger", "recidive/ban", 0)]
    # the recidive jail's own ban was not fed back to it
    assert count(db, "SELECT count(*) FROM failures WHERE jail = 'recidive' AND text LIKE 'ban recidive %'") == 0
