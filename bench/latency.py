"""Detection latency: one failure written to a file, journald or TCP syslog, until its DROP is in the kernel.

Run through ``python -m bench.daemon`` (``--skip`` everything but ``latency``/``kernel``/``f2b-latency``).

journalban: ``journalban run`` inside a network namespace, one jail (maxretry 1) reading
a followed file, a journald namespace instance and a TCP syslog listener at once, with
the ``nftables`` or ``iptables`` backend (or ``dry-run``, timed to the ban row in the
ledger). Meanwhile a writer process sends ``--background-rate`` (50,000) non-failure
lines a second, which the daemon reads as it reads every line of its jail: up to
``--background-journal-rate`` (20,000) of them as entries to that journald instance
(rate limiting off), the rest appended to a second file the jail follows. One
journald takes no more than about 29,000 entries a second on this 2-CPU machine (a
core of its own; measured with nothing else running), so the whole 50,000 through it
would measure journald, not the daemon. For each ban one failure line with a new address is
written through one intake (file append, a native journald datagram, an octet-counted
RFC 5424 frame on an open TCP connection into the namespace), then a random pause of
0-50 ms. The kernel moment is when ``nft monitor``, running in the namespace, prints the
element (nftables set) or the rule (iptables-nft chain): netlink reports a change when
its transaction commits, so the watcher costs nothing while it waits, unlike polling
``iptables-save`` (a process start each time, ~5 ms of a core).

fail2ban 1.0 (Debian's package) runs in a namespace of its own with a private copy of
``/etc/fail2ban``: one jail on a file (a one-line filter, ``iptables-allports``,
``maxretry = 1``), with ``backend = polling`` and then ``backend = pyinotify``
(``python3-pyinotify``); the same line is appended and the same watcher waits for the
``f2b-<jail>`` rule. No background load there: fail2ban's polling reads the whole file
each second, so a second file at 50,000 lines/s would be fail2ban's bottleneck, not its
latency.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import random
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from bench.replay import PYTHON

ROOT = Path(__file__).resolve().parents[1]
MONTHS = "Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split()
KINDS = ("file", "journald", "syslog")
WAIT = 10.0  # seconds for one ban before the run is given up
GRAMMAR = "sshd-native"
SYSLOG_PORT = 5514
CLONE_NEWNET = 0x40000000
BACKGROUND_JOURNAL_RATE = 20_000  # of the background's lines, at most these a second to journald


def failed(address: str) -> str:
    return f"Failed password for root from {address} port 22 ssh2"


def syslog_line(address: str) -> str:
    now = datetime.now(UTC)
    return f"{MONTHS[now.month - 1]} {now.day:2d} {now:%H:%M:%S} web1 sshd[4242]: {failed(address)}\n"


def address_of(kind: int, i: int) -> str:
    """Distinct addresses per run part (``kind``) and ban."""
    return f"198.{18 + kind}.{i // 250 % 256}.{i % 250 + 1}"


def percentile(values: Sequence[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


@dataclass
class Latencies:
    """Milliseconds per ban for one intake and backend (or fail2ban backend)."""

    what: str
    values: list[float] = field(default_factory=list)
    note: str = ""

    @property
    def p50(self) -> float:
        return percentile(self.values, 0.5)

    @property
    def p99(self) -> float:
        return percentile(self.values, 0.99)

    def summary(self) -> str:
        return (f"p50 {self.p50:.1f} ms, p99 {self.p99:.1f} ms, max {max(self.values):.1f} ms "
                f"over {len(self.values)} bans")


# --- the grammar, the config ---------------------------------------------------------------------


def native_grammar(directory: Path) -> None:
    """The shipped sshd rules selecting root-written entries tagged sshd, which is what a
    native-protocol writer gets (``_SYSTEMD_UNIT=ssh.service`` needs a real unit)."""
    text = (ROOT / "grammars" / "sshd.grammar").read_text()
    text = re.sub(r"^grammar sshd$", f"grammar {GRAMMAR}", text, count=1, flags=re.M)
    text = re.sub(r"^applies journal .*\n", "", text, flags=re.M)
    text = text.replace("time stamp\n", "applies journal SYSLOG_IDENTIFIER=sshd _UID=0\ntime stamp\n", 1)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{GRAMMAR}.grammar").write_text(text)


def config(tmp: Path, logs: Sequence[Path], journal_dir: Path, firewall: str, poll: float) -> Path:
    native_grammar(tmp / "grammars")
    path = tmp / "journalban.toml"
    path.write_text(f"""
[control]
socket = "{tmp}/control.sock"

[ledger]
url = "sqlite:///{tmp}/ledger.db"

[node]
name = "bench"

[grammars]
directories = ["{tmp}/grammars"]

[sources.files]
poll_interval = {poll}

[sources.journal]
directory = "{journal_dir}"
since = "all"

[sources.syslog]
listen = ["tcp://127.0.0.1:{SYSLOG_PORT}"]

[jails.bench]
grammar = "{GRAMMAR}"
files = [{", ".join(f'"{log}"' for log in logs)}]
journal = true
syslog = true
maxretry = 1
findtime = "10m"
firewall = "{firewall}"
ignoreself = false
""")
    return path


# --- the background: 50,000 lines/s, to a journald namespace and a followed file -----------------------

BACKGROUND = """
import os, signal, socket, sys, time
path, rate, log, total = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 22)
fd = os.open(log, os.O_WRONLY | os.O_APPEND)
started, written, appended, stop = time.monotonic(), 0, 0, []
signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
while not stop:
    elapsed = time.monotonic() - started
    due = min(int(elapsed * rate) - written, 1000)
    for i in range(written, written + due):
        sock.sendto(b"SYSLOG_IDENTIFIER=sshd\\nPRIORITY=6\\nMESSAGE=Accepted publickey for deploy from 192.0.2."
                    + str(i % 250 + 1).encode() + b" port " + str(1024 + i % 60000).encode() + b" ssh2\\n", path)
    written += max(due, 0)
    lines = min(int(elapsed * total) - written - appended, 5000) if log != os.devnull else 0
    if lines > 0:
        stamp = time.strftime("%b %e %H:%M:%S").encode()
        os.write(fd, b"".join(stamp + b" web1 sshd[4242]: Accepted publickey for deploy from 192.0.2."
                              + str(i % 250 + 1).encode() + b" port " + str(1024 + i % 60000).encode() + b" ssh2\\n"
                              for i in range(appended, appended + lines)))
        appended += lines
    if due < 1000 and lines < 5000:
        time.sleep(0.005)
print(written, appended, time.monotonic() - started, flush=True)
"""


@dataclass
class Background:
    """What the background writer sent, once it stopped."""

    sent: int = 0  # entries to journald
    appended: int = 0  # lines to the file
    seconds: float = 0.0

    @property
    def rate(self) -> float:
        return (self.sent + self.appended) / self.seconds if self.seconds else 0.0

    @property
    def journal_rate(self) -> float:
        return self.sent / self.seconds if self.seconds else 0.0


@contextlib.contextmanager
def background(socket_path: str, rate: int, log: Path | None = None, journal_rate: int | None = None
               ) -> Iterator[Background]:
    """A writer sending ``rate`` non-failure sshd lines a second (in 5 ms steps): up to
    ``journal_rate`` (all when None) as entries to journald, blocking when journald's socket
    is full, so none is lost; the rest, and what journald could not take in time, appended
    to ``log``. Filled in when it stops."""
    done = Background()
    if rate <= 0:
        yield done
        return
    to_journal = rate if journal_rate is None or log is None else min(rate, journal_rate)
    writer = subprocess.Popen([PYTHON, "-c", BACKGROUND, socket_path, str(to_journal), str(log or os.devnull),
                               str(rate)], stdout=subprocess.PIPE, text=True)
    try:
        yield done
    finally:
        writer.terminate()
        try:
            out, _ = writer.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            writer.kill()
            out, _ = writer.communicate()
        if out.split():
            sent, appended, seconds = out.split()
            done.sent, done.appended, done.seconds = int(sent), int(appended), float(seconds)


def journal_entries(directory: Path) -> int:
    """Entries the journald instance stored (all of them: background and failures)."""
    from systemd import journal

    reader = journal.Reader(path=str(directory))
    try:
        n = 0
        while reader._next():  # the bare libsystemd step, no field conversion
            n += 1
        return n
    finally:
        reader.close()


# --- writers: one failure through one intake ---------------------------------------------------------


def in_namespace(name: str, make: Callable[[], socket.socket]) -> socket.socket:
    """A socket made inside network namespace ``name`` (this thread enters it and comes back)."""
    libc = ctypes.CDLL(None, use_errno=True)
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(f"/run/netns/{name}", os.O_RDONLY)
    try:
        if libc.setns(target, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), "setns")
        try:
            return make()
        finally:
            if libc.setns(own, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns back")
    finally:
        os.close(own)
        os.close(target)


class Writers:
    """Write one failure line through each intake."""

    def __init__(self, log: Path, journal_socket: str, namespace: str | None) -> None:
        self.fd = os.open(log, os.O_WRONLY | os.O_APPEND)
        self.journal_socket = journal_socket
        self.datagram = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.namespace = namespace
        self.tcp: socket.socket | None = None

    def connect_syslog(self) -> None:
        def connect() -> socket.socket:
            return socket.create_connection(("127.0.0.1", SYSLOG_PORT), timeout=10)

        self.tcp = in_namespace(self.namespace, connect) if self.namespace else connect()
        self.tcp.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def write(self, kind: str, address: str) -> None:
        if kind == "file":
            os.write(self.fd, syslog_line(address).encode())
        elif kind == "journald":
            self.datagram.sendto(f"SYSLOG_IDENTIFIER=sshd\nPRIORITY=4\nMESSAGE={failed(address)}\n".encode(),
                                 self.journal_socket)
        else:
            if self.tcp is None:  # connected when first used: an idle connection is closed by the listener
                self.connect_syslog()
            assert self.tcp is not None
            stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            body = f"<38>1 {stamp} web1 sshd 4242 - - {failed(address)}".encode()
            self.tcp.sendall(str(len(body)).encode() + b" " + body)

    def close(self) -> None:
        os.close(self.fd)
        self.datagram.close()
        if self.tcp is not None:
            self.tcp.close()


# --- watchers: the moment a ban is there ---------------------------------------------------------------

RULE_OR_ELEMENT = re.compile(r"^(?:add|insert) (?:element|rule) .*?(?:\{ ([^}]*) \}|ip6? saddr (\S+))")


class KernelWatch:
    """``nft monitor`` in the namespace: when each address's set element or iptables-nft rule
    was committed (first time seen). Netlink tells at commit; nothing is polled."""

    def __init__(self, argv: Sequence[str]) -> None:
        self.process = subprocess.Popen([*argv, "nft", "monitor"], stdout=subprocess.PIPE,
                                        stderr=subprocess.DEVNULL, text=True, bufsize=1)
        self.seen: dict[str, float] = {}
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()
        time.sleep(0.3)  # subscribed before the first change

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            at = time.perf_counter()
            found = RULE_OR_ELEMENT.match(line)
            if not found:
                continue
            addresses = [a.strip().split("/")[0] for a in (found.group(1) or found.group(2)).split(",")]
            with self._changed:
                for address in addresses:
                    self.seen.setdefault(address, at)
                self._changed.notify_all()

    def wait(self, address: str, timeout: float) -> float | None:
        deadline = time.perf_counter() + timeout
        with self._changed:
            while address not in self.seen:
                left = deadline - time.perf_counter()
                if left <= 0:
                    return None
                self._changed.wait(left)
            return self.seen[address]

    def close(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


class LedgerWatch:
    """The dry-run case: when the ban row is in the ledger (polled every millisecond)."""

    def __init__(self, path: Path) -> None:
        self.db = sqlite3.connect(path, timeout=10)

    def wait(self, address: str, timeout: float) -> float | None:
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            if self.db.execute("SELECT 1 FROM bans WHERE address = ?", (address,)).fetchone():
                return time.perf_counter()
            time.sleep(0.001)
        return None

    def close(self) -> None:
        self.db.close()


def measure(write: Callable[[str], None], watch: KernelWatch | LedgerWatch, addresses: Sequence[str],
            rng: random.Random, on_miss: Callable[[str], str]) -> list[float]:
    out = []
    for address in addresses:
        started = time.perf_counter()
        write(address)
        at = watch.wait(address, WAIT)
        if at is None:
            raise RuntimeError(f"no ban of {address} after {WAIT:.0f} s:\n{on_miss(address)}")
        out.append((at - started) * 1000)
        time.sleep(rng.uniform(0, 0.05))
    return out


# --- journalban ------------------------------------------------------------------------------------------


def journalban(count: int, firewall: str, kinds: Sequence[str], background_rate: int,
               poll: float = 1.0, profile: Path | None = None,
               background_journal_rate: int = BACKGROUND_JOURNAL_RATE,
               in_force: int = 0) -> tuple[list[Latencies], str]:
    """``count`` bans per intake kind; returns them and a note on the background load.
    ``in_force``: that many active bans written into the ledger before the daemon starts."""
    from bench.daemon import daemon, fill_bans
    from tests.netns import namespace
    from tests.sources.journal.journald import running_journald

    rng = random.Random(7)
    results: list[Latencies] = []
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="jb-bench-latency-")))
        journald = stack.enter_context(running_journald())
        log, busy_log = tmp / "auth.log", tmp / "background.log"
        log.touch()
        busy_log.touch()
        cfg = config(tmp, (log, busy_log), journald.directory, firewall, poll)
        if in_force:
            fill_bans(tmp, cfg, in_force)
        prefix: list[str] = []
        ns_name = None
        if firewall != "dry-run":
            ns = stack.enter_context(namespace("jb-bench"))
            prefix, ns_name = ["ip", "netns", "exec", ns.name], ns.name
        watch: KernelWatch | LedgerWatch | None = KernelWatch(prefix) if firewall != "dry-run" else None
        if isinstance(watch, KernelWatch):
            stack.callback(watch.close)
        running = stack.enter_context(daemon(tmp, cfg, prefix))
        running.wait_ready()
        if profile is not None:
            spy = subprocess.Popen([str(ROOT / ".venv" / "bin" / "py-spy"), "record", "--pid", str(running.process.pid),
                                    "--rate", "250", "--format", "raw", "--threads", "--output", str(profile),
                                    "--nonblocking"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            stack.callback(spy.wait, 60)
            stack.callback(spy.send_signal, signal.SIGINT)
        if watch is None:
            watch = LedgerWatch(tmp / "ledger.db")
            stack.callback(watch.close)
        writers = Writers(log, journald.socket_path, ns_name)
        stack.callback(writers.close)
        with background(journald.socket_path, background_rate, busy_log, background_journal_rate) as sent:
            time.sleep(1.0)  # the background is flowing before the first ban
            started = time.perf_counter()
            for number, kind in enumerate(KINDS):
                if kind not in kinds:
                    continue
                addresses = [address_of(number, i) for i in range(count)]
                try:
                    values = measure(functools.partial(writers.write, kind), watch, addresses, rng,
                                     lambda a: running.log_tail())
                except RuntimeError as exc:  # the other intakes' figures still count
                    results.append(Latencies(f"{kind} -> {firewall}", note=str(exc)[:300]))
                    continue
                results.append(Latencies(f"{kind} -> {firewall}", values))
            seconds = time.perf_counter() - started
        time.sleep(0.5)  # journald has stored what it was sent
        stored = journal_entries(journald.directory) if background_rate else 0
    note = (f"background {sent.rate:,.0f} lines/s: {sent.journal_rate:,.0f} entries/s to a journald namespace "
            f"(rate limit off; {sent.sent:,} sent, {stored:,} entries in its journal with the failures) and "
            f"{sent.appended:,} lines to a second followed file, over {seconds:.0f} s of bans")
    return results, note


# --- fail2ban ---------------------------------------------------------------------------------------------

F2B_JAIL = """[DEFAULT]
ignoreip = 127.0.0.1/8 ::1
[bench]
enabled = true
filter = sshd
logpath = {log}
backend = {backend}
maxretry = 1
findtime = 1d
bantime = 1d
action = iptables-allports[name=bench, protocol=all]
"""


def fail2ban_python(server: str) -> str:
    """The interpreter ``server`` (fail2ban-server) runs under, from its #! line: Debian's, not this venv's."""
    with open(server) as script:
        first = script.readline()
    return first[2:].split()[0] if first.startswith("#!") else "/usr/bin/python3"


def fail2ban(count: int, backend: str) -> Latencies:
    """fail2ban-server in a namespace with a private /etc/fail2ban, ``backend`` polling or pyinotify."""
    from tests.netns import namespace

    result = Latencies(f"fail2ban {backend}")
    server_script = shutil.which("fail2ban-server")
    if server_script is None:
        result.note = "fail2ban-server is not installed"
        return result
    if backend == "pyinotify" and subprocess.run([fail2ban_python(server_script), "-c", "import pyinotify"],
                                                 capture_output=True, check=False).returncode != 0:
        # fail2ban would fall back to another backend and the figure would carry the wrong name
        result.note = "python3-pyinotify is not installed (apt-get install python3-pyinotify): not measured"
        return result
    rng = random.Random(11)
    with contextlib.ExitStack() as stack:
        ns = stack.enter_context(namespace("jb-f2b"))
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="jb-f2b-latency-")))
        conf = tmp / "fail2ban"
        shutil.copytree("/etc/fail2ban", conf)
        shutil.rmtree(conf / "jail.d")
        (conf / "jail.d").mkdir()
        log = tmp / "auth.log"
        log.write_text("")
        (conf / "jail.local").write_text(F2B_JAIL.format(log=log, backend=backend))
        (conf / "fail2ban.local").write_text(f"[Definition]\ndbfile = {tmp}/f2b.sqlite3\n")
        watch = KernelWatch(ns.argv([]))
        stack.callback(watch.close)
        sock, pidfile = tmp / "f2b.sock", tmp / "f2b.pid"
        stderr = stack.enter_context((tmp / "server.err").open("w"))
        server = ns.popen(["fail2ban-server", "-f", "-x", "-c", str(conf), "-s", str(sock), "-p", str(pidfile),
                           "--logtarget", "STDERR", "--loglevel", "NOTICE"],
                          stdout=subprocess.DEVNULL, stderr=stderr, start_new_session=True)

        def stop() -> None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(server.pid, 15)
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(server.pid, 9)
                server.wait()

        stack.callback(stop)
        ready = time.monotonic() + 60
        while time.monotonic() < ready:
            status = subprocess.run(["fail2ban-client", "-s", str(sock), "status", "bench"],
                                    capture_output=True, text=True, check=False, timeout=30)
            if status.returncode == 0 or server.poll() is not None:
                break
            time.sleep(0.5)
        if status.returncode != 0:
            result.note = "fail2ban-server did not come up: " + (tmp / "server.err").read_text()[-500:]
            return result
        time.sleep(2)  # the backend settled on the empty file
        fd = os.open(log, os.O_WRONLY | os.O_APPEND)
        stack.callback(os.close, fd)
        addresses = [address_of(5, i) for i in range(count)]
        result.values = measure(lambda a: append_line(fd, a), watch, addresses, rng,
                                lambda a: (tmp / "server.err").read_text()[-1500:])
        result.note = f"fail2ban {version()}, backend = {backend}, iptables-allports, maxretry 1"
    return result


def append_line(fd: int, address: str) -> None:
    os.write(fd, syslog_line(address).encode())


def version() -> str:
    done = subprocess.run(["fail2ban-server", "--version"], capture_output=True, text=True, check=False)
    found = re.search(r"v?(\d+\.\d+\.\d+)", done.stdout + done.stderr)
    return found.group(1) if found else "?"
