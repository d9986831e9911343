"""Per-jail ``on_ban``/``on_unban`` commands: argument lists, never shell strings.

A placeholder (``{address}``, ``{jail}``, ``{reason}``) is replaced only when it is a
whole argument, and its value stays that one argument whatever it holds: a reason
copied from a log line (attacker-chosen text) cannot add arguments, run a command or
expand anything, since no shell ever sees it. Hooks run as asyncio subprocesses
with a timeout; the event loop never waits for them and a failure is only logged.
"""

import asyncio
import logging
import os
import re
import signal
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

log = logging.getLogger(__name__)

PLACEHOLDERS = ("address", "jail", "reason")
HOOK_TIMEOUT = 30.0  # seconds before a hook (and its process group) is killed
_WHOLE = re.compile(r"\{([a-z_]+)\}")
_OUTPUT_LOGGED = 500  # characters of a failing hook's output in the log


def check_hook(argv: Sequence[str]) -> list[str]:
    """Problems with a hook's argument list, for the config loader (empty: fine)."""
    if not argv:
        return ["a hook is a non-empty list: the program's absolute path, then its arguments"]
    problems = [] if argv[0].startswith("/") else [f"the program {argv[0]!r} must be an absolute path"]
    for arg in argv:
        whole = _WHOLE.fullmatch(arg)
        if whole and whole[1] not in PLACEHOLDERS:
            problems.append(f"unknown placeholder {arg}; known: " + ", ".join(f"{{{p}}}" for p in PLACEHOLDERS))
        elif not whole and any(f"{{{p}}}" in arg for p in PLACEHOLDERS):
            problems.append(f"{arg!r}: a placeholder must be a whole argument, e.g. [..., \"--ip\", \"{{address}}\"]")
    return problems


def substitute(argv: Sequence[str], values: Mapping[str, str]) -> list[str]:
    """``argv`` with each whole-argument placeholder replaced by its value, in one pass."""
    out = []
    for arg in argv:
        whole = _WHOLE.fullmatch(arg)
        out.append(values.get(whole[1], "").replace("\0", "") if whole else arg)
    return out


async def run_hook(argv_template: Sequence[str], values: Mapping[str, str],
                   timeout: float = HOOK_TIMEOUT) -> int | None:
    """Run one hook to its end; its exit status, or None if it could not start or timed out."""
    argv = substitute(argv_template, values)
    try:
        process = await asyncio.create_subprocess_exec(
            *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT, start_new_session=True)
    except OSError as exc:
        log.error("hook %s could not start: %s", argv[0], exc)
        return None
    try:
        output, _ = await asyncio.wait_for(process.communicate(), timeout)
    except TimeoutError:
        try:
            os.killpg(process.pid, signal.SIGKILL)  # its children too: it leads its own session
        except ProcessLookupError:
            pass
        await process.wait()
        log.error("hook %s killed after %.0fs", argv[0], timeout)
        return None
    if process.returncode != 0:
        text = output.decode("utf-8", "replace")[:_OUTPUT_LOGGED].strip()
        log.error("hook %s exited with %s%s", argv[0], process.returncode, f": {text}" if text else "")
    return process.returncode


@dataclass(frozen=True, slots=True)
class JailHooks:
    on_ban: tuple[str, ...] = ()  # empty: none
    on_unban: tuple[str, ...] = ()


class Hooks:
    """Fires the jails' hooks in the background; ``banned``/``unbanned`` may be called from
    any thread once ``start`` has run in the event loop."""

    def __init__(self, jails: Mapping[str, JailHooks], timeout: float = HOOK_TIMEOUT) -> None:
        self.jails = dict(jails)
        self.timeout = timeout
        self._loop: asyncio.AbstractEventLoop | None = None
        self._running: set[asyncio.Task[int | None]] = set()

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()

    async def stop(self) -> None:
        """Let running hooks finish (each is bounded by the timeout)."""
        if self._running:
            await asyncio.wait(list(self._running))
        self._loop = None

    def banned(self, jail: str, address: str, reason: str) -> None:
        self._fire(self.jails.get(jail, JailHooks()).on_ban, jail, address, reason)

    def unbanned(self, jail: str, address: str, reason: str) -> None:
        self._fire(self.jails.get(jail, JailHooks()).on_unban, jail, address, reason)

    def _fire(self, argv: tuple[str, ...], jail: str, address: str, reason: str) -> None:
        if not argv:
            return
        if self._loop is None:
            log.warning("hook %s not run: hooks are not started", argv[0])
            return
        values = {"address": address, "jail": jail, "reason": reason}
        self._loop.call_soon_threadsafe(self._spawn, argv, values)

    def _spawn(self, argv: tuple[str, ...], values: dict[str, str]) -> None:
        task = asyncio.get_running_loop().create_task(run_hook(argv, values, self.timeout))
        self._running.add(task)
        task.add_done_callback(self._running.discard)
