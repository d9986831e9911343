"""on_ban/on_unban hooks: argument lists, attacker-chosen text stays one literal argument."""

import asyncio
import json
import logging
import sys
import time
from pathlib import Path

import pytest

from journalban.control.hooks import Hooks, JailHooks, check_hook, run_hook, substitute

RECORD_ARGV = "import json, sys; open(sys.argv[1], 'w').write(json.dumps(sys.argv[2:]))"


@pytest.mark.parametrize("reason", [
    "x; rm -rf /", "$(id)", "`id`", "a b\tc\nd", "--help", "' \" \\ {jail} {address}", "*", "",
])
def test_an_attacker_chosen_reason_stays_one_literal_argument(tmp_path: Path, reason: str) -> None:
    out, witness = tmp_path / "argv.json", tmp_path / "pwned"
    template = [sys.executable, "-c", RECORD_ARGV, str(out), "--", "{address}", "{reason}", "{jail}"]
    values = {"address": "203.0.113.9", "jail": "wplogin", "reason": reason + f"; touch {witness}"}
    assert asyncio.run(run_hook(template, values, timeout=30)) == 0
    assert json.loads(out.read_text()) == ["--", "203.0.113.9", reason + f"; touch {witness}", "wplogin"]
    assert not witness.exists()


def test_placeholders_are_replaced_only_as_whole_arguments_and_once() -> None:
    template = ["/bin/echo", "{address}", "ip={address}", "{reason}", "{jail}"]
    assert substitute(template, {"address": "::1", "jail": "j", "reason": "{address}\0"}) == [
        "/bin/echo", "::1", "ip={address}", "{address}", "j"]


def test_check_hook_names_the_problems() -> None:
    assert check_hook(["/usr/local/bin/notify", "--ip", "{address}", "--", "{reason}"]) == []
    assert check_hook([]) != []
    assert "absolute path" in check_hook(["notify", "{address}"])[0]
    assert "unknown placeholder {host}" in check_hook(["/bin/x", "{host}"])[0]
    assert "whole argument" in check_hook(["/bin/x", "--ip={address}"])[0]


def test_a_hook_that_hangs_is_killed_with_its_children(caplog: pytest.LogCaptureFixture) -> None:
    script = "import subprocess, time; subprocess.Popen(['sleep', '60']); time.sleep(60)"
    started = time.monotonic()
    assert asyncio.run(run_hook([sys.executable, "-c", script], {}, timeout=0.5)) is None
    assert time.monotonic() - started < 10
    assert "killed after" in caplog.text


def test_failures_are_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR)
    script = "import sys; print('no route to the chat server'); sys.exit(4)"
    assert asyncio.run(run_hook([sys.executable, "-c", script], {})) == 4
    assert "exited with 4: no route to the chat server" in caplog.text
    assert asyncio.run(run_hook(["/nonexistent/hook"], {})) is None
    assert "could not start" in caplog.text


def test_hooks_fire_in_the_background_from_any_thread(tmp_path: Path) -> None:
    banned, unbanned = tmp_path / "ban.json", tmp_path / "unban.json"
    hooks = Hooks({"wplogin": JailHooks(
        on_ban=(sys.executable, "-c", RECORD_ARGV, str(banned), "{jail}", "{address}", "{reason}"),
        on_unban=(sys.executable, "-c", RECORD_ARGV, str(unbanned), "{address}"))})

    async def scenario() -> None:
        hooks.start()
        await asyncio.get_running_loop().run_in_executor(None, hooks.banned, "wplogin", "203.0.113.9", "$(id)")
        hooks.unbanned("wplogin", "203.0.113.9", "expired")
        hooks.banned("sshd", "203.0.113.9", "no hooks in this jail")
        await asyncio.sleep(0.05)
        await hooks.stop()

    asyncio.run(scenario())
    assert json.loads(banned.read_text()) == ["wplogin", "203.0.113.9", "$(id)"]
    assert json.loads(unbanned.read_text()) == ["203.0.113.9"]
