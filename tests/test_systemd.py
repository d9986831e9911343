"""The daemon as a systemd service: sd_notify, and the shipped unit."""

import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_ready_status_and_watchdog_reach_the_notify_socket(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text(f'[control]\nsocket = "{tmp_path}/control.sock"\n'
                      f'[ledger]\nurl = "sqlite:///{tmp_path}/l.db"\n[sources.files]\npoll_interval = 0.05\n'
                      f'[jails.web]\ngrammar = "wp-limit-login"\nfiles = ["{tmp_path}/wp.log"]\nfirewall = "dry-run"\n')
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify:
        notify.bind(str(tmp_path / "notify"))
        notify.settimeout(10)
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "NOTIFY_SOCKET": str(tmp_path / "notify"),
               "WATCHDOG_USEC": "200000"}
        daemon = subprocess.Popen([sys.executable, "-m", "journalban", "run", "-c", str(config)], env=env,
                                  stderr=subprocess.DEVNULL)
        try:
            messages = []
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline and not any("WATCHDOG=1" in m for m in messages):
                messages.append(notify.recv(4096).decode())
            assert "READY=1" in messages[0] and "STATUS=0 events, 0 failures, 0 bans" in messages[0]
            assert any("WATCHDOG=1" in m for m in messages)
            daemon.terminate()
            assert daemon.wait(timeout=10) == 0
            assert "STOPPING=1" in notify.recv(4096).decode()
        finally:
            daemon.kill()
            daemon.wait()


def test_the_unit_passes_systemd_analyze_verify() -> None:
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed")
    if shutil.which("journalban") is None:
        pytest.skip("journalban is not on PATH (scripts/install links it to /usr/local/bin)")
    unit = ROOT / "packaging/systemd/journalban.service"
    out = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    text = unit.read_text()
    for line in ("Type=notify", "ProtectSystem=strict", "NoNewPrivileges=yes",
                 "CapabilityBoundingSet=CAP_NET_ADMIN CAP_NET_RAW CAP_DAC_READ_SEARCH"):
        assert line in text
