"""How fast journalban puts bans into the kernel, against the bare tools and fail2ban.

Run as root (every firewall command runs inside network namespaces this script
creates and deletes; the host's firewall is never touched)::

    .venv/bin/python -m bench.enforce [--sizes 1000,10000,100000] [--backends iptables,ipset,nftables]
                                      [--skip-fail2ban] [--skip-packets] [--timeout 240] [--rounds 3]

1. Apply/remove: per backend and size, a fresh namespace and a SQLite ledger with N
   new active bans; one ``Reconciler.run()`` is timed until all N are in the kernel
   (counted there), then, after ``expire_bans`` with a clock past expiry, one more
   until none is. Beside it the bare tool (``iptables-restore --noflush``, ``ipset
   restore``, ``nft -f``) loads and deletes the same addresses from a prepared file
   (iptables deletes all N with ``-F``: N ``-D`` lines take minutes). The apply is the
   reconciler's first run since start, as after a reboot: the kernel holds none of the
   N, and the run records that as a heal. Each case runs in a child process killed
   after ``--timeout`` seconds per phase; ``--rounds`` rounds (bare then journalban,
   back to back) per case, medians reported, and each round's own apply ratio.
2. fail2ban 1.0 (``iptables-allports``, ``maxretry = 1``) bans 1,000 addresses
   appended to a log in one go; time until ``iptables-save`` shows all of them.
3. Packet cost: UDP flood over a veth pair for a fixed time against 10,000 bans
   (none matching the sender) in each backend's layout, versus an empty firewall.

Results go to stdout as markdown and are appended to ``bench/RESULTS-enforce.md``.
"""

import argparse
import contextlib
import ipaddress
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from tests.netns import Namespace, link, namespace

BACKENDS = ("iptables", "ipset", "nftables")
SIZES = (1_000, 10_000, 100_000)
JAIL = "bench"
RESULTS = Path(__file__).with_name("RESULTS-enforce.md")
BASE = int(ipaddress.IPv4Address("100.64.0.0"))  # bans: 100.64.0.0/10, scattered
SPREAD = 2_654_435_761  # odd, so i -> BASE + (i * SPREAD mod 2**22) is one-to-one
SERVER, ATTACKER = "10.200.0.2", "10.200.0.1"
UDP_PORT = 9999
F2B_BANS = 1_000
F2B_TIMEOUT = 300.0
SETUP_ALLOWANCE = 120.0  # seconds a child may take to fill the ledger before its first phase


def addresses(n: int) -> list[str]:
    """``n`` distinct IPv4 hosts spread over 100.64.0.0/10 (never the flood's sender)."""
    return [str(ipaddress.IPv4Address(BASE + (i * SPREAD) % 2**22)) for i in range(n)]


# --- counting what the kernel holds ------------------------------------------------

def count_rules(ns: Namespace, chain: str) -> int:
    """Source-address rules in an iptables chain (as ``iptables-save`` prints them)."""
    text = ns.run(["iptables-save", "-t", "filter"], timeout=300).stdout
    prefix = f"-A {chain} -s "
    return sum(1 for line in text.splitlines() if line.startswith(prefix))


def count_ipset(ns: Namespace, name: str) -> int:
    done = ns.run(["ipset", "list", name, "-t"], check=False)
    match = re.search(r"^Number of entries: (\d+)$", done.stdout, re.M)
    return int(match.group(1)) if match else 0


def count_nft(ns: Namespace, table: str, name: str) -> int:
    done = ns.run(["nft", "-j", "list", "set", *table.split(), name], check=False, timeout=300)
    if done.returncode != 0:
        return 0
    for obj in json.loads(done.stdout)["nftables"]:
        if "set" in obj:
            return len(obj["set"].get("elem", []))
    return 0


def kernel_count(ns: Namespace, backend: str, expected: int | None = None) -> int:
    """How many of journalban's bench-jail bans the kernel holds, counted independently.
    A count short of ``expected`` is taken again (up to 3 times, 0.2 s apart): right after a
    large apply, ``nft list`` can return part of a hash set the kernel is still resizing."""
    for _ in range(3):
        if backend == "iptables":
            count = count_rules(ns, f"jb-{JAIL}")
        elif backend == "ipset":
            count = count_ipset(ns, f"jb-{JAIL}-4")
        else:
            count = count_nft(ns, "inet journalban", f"{JAIL}-4")
        if expected is None or count >= expected:
            break
        time.sleep(0.2)
    return count


# --- the bare tools ----------------------------------------------------------------

@dataclass(frozen=True)
class Bare:
    """One tool loading and deleting a batch from a prepared file."""

    argv: list[str]
    load: str
    delete: str
    cleanup: str
    count: Callable[[Namespace], int]


def bare_for(backend: str, addrs: Sequence[str]) -> Bare:
    if backend == "iptables":
        chain = "jbbare-x"
        # Removing all N: a flush (N deletions with -D walk the chain each: 100,000 take minutes).
        return Bare(["iptables-restore", "-w", "--noflush"],
                    "".join(["*filter\n", f":{chain} - [0:0]\n",
                             *(f"-A {chain} -s {a}/32 -j DROP\n" for a in addrs), "COMMIT\n"]),
                    f"*filter\n-F {chain}\nCOMMIT\n",
                    f"*filter\n-F {chain}\n-X {chain}\nCOMMIT\n",
                    lambda ns: count_rules(ns, chain))
    if backend == "ipset":
        name = "jbbare-4"
        return Bare(["ipset", "restore"],
                    "".join([f"create {name} hash:ip family inet hashsize 1024 maxelem 1048576\n",
                             *(f"add {name} {a}\n" for a in addrs)]),
                    "".join(f"del {name} {a}\n" for a in addrs),
                    f"destroy {name}\n",
                    lambda ns: count_ipset(ns, name))
    # the same set type journalban builds for hosts: a plain set of ipv4_addr
    return Bare(["nft", "-f", "-"],
                "".join(["table inet jbbare {\n  set s {\n    type ipv4_addr;\n",
                         "    elements = { ", ", ".join(addrs), " }\n  }\n}\n"]),
                f"delete element inet jbbare s {{ {', '.join(addrs)} }}\n",
                "delete table inet jbbare\n",
                lambda ns: count_nft(ns, "inet jbbare", "s"))


def timed_tool(ns: Namespace, argv: list[str], text: str, path: Path, timeout: float) -> float:
    """Run ``argv < path`` in ``ns`` (the file written beforehand, not timed); seconds taken."""
    path.write_text(text)
    with path.open() as stdin:
        start = time.perf_counter()
        done = subprocess.run(ns.argv(argv), stdin=stdin, capture_output=True, text=True,
                              timeout=timeout, check=False)
        elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {done.returncode}: {done.stderr.strip()[:500]}")
    return elapsed


# --- one case, in a child process ---------------------------------------------------

def emit(**record: Any) -> None:
    print(json.dumps(record), flush=True)


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def instrument(backend: Any, totals: dict[str, float], ledger: Any = None) -> None:
    """Time the backend's read, apply and every external command it runs (and the ledger's reads)."""
    command = "_run" if backend.name == "nftables" else "run"
    targets = [(backend, "read", "read"), (backend, "apply", "apply"), (backend, command, "tools")]
    if ledger is not None:
        # (the ledger read the reconciler makes: enforced_bans, active_bans before it existed)
        reads = "enforced_bans" if hasattr(ledger, "enforced_bans") else "active_bans"
        targets += [(ledger, reads, "ledger"), (ledger, "expire_bans", "ledger")]
    for obj, attr, key in targets:
        method = getattr(obj, attr)

        def wrapped(*args: Any, _method: Any = method, _key: str = key, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return _method(*args, **kwargs)
            finally:
                totals[_key] += time.perf_counter() - start

        setattr(obj, attr, wrapped)


def make_backend(name: str, ns: Namespace) -> Any:
    from journalban.firewall.ipset import IpsetFirewall
    from journalban.firewall.iptables import IptablesFirewall
    from journalban.firewall.nftables import NftablesFirewall

    kinds = {"iptables": IptablesFirewall, "ipset": IpsetFirewall, "nftables": NftablesFirewall}
    return kinds[name](command_prefix=ns.argv([]))


def child_bare(backend: str, n: int, ns: Namespace, tmp: Path, timeout: float) -> None:
    bare = bare_for(backend, addresses(n))
    emit(phase="setup")
    seconds = timed_tool(ns, bare.argv, bare.load, tmp / "bare-load", timeout)
    emit(phase="bare_apply", seconds=seconds, count=bare.count(ns))
    seconds = timed_tool(ns, bare.argv, bare.delete, tmp / "bare-delete", timeout)
    emit(phase="bare_remove", seconds=seconds, count=bare.count(ns))


def child_journalban(backend_name: str, n: int, ns: Namespace, tmp: Path) -> None:
    from sqlalchemy import insert

    from journalban.firewall.base import JailLayout
    from journalban.ledger.models import Ban
    from journalban.ledger.store import Ledger
    from journalban.reconcile import Enforcement, Reconciler

    now = datetime.now(UTC)
    ledger = Ledger(f"sqlite:///{tmp}/ledger.db")
    ledger.upgrade()
    with ledger.transaction() as session:  # setup, not timed
        session.execute(insert(Ban), [
            {"jail": JAIL, "address": a, "started_at": now, "expires_at": now + timedelta(hours=1),
             "reason": "bench"} for a in addresses(n)])
    emit(phase="setup")
    backend = make_backend(backend_name, ns)
    totals = dict.fromkeys(("ledger", "read", "apply", "tools"), 0.0)
    instrument(backend, totals, ledger)
    clock = Clock(now)
    reconciler = Reconciler(ledger, [Enforcement(backend, (JailLayout(JAIL),))], clock)

    start = time.perf_counter()
    result = reconciler.run()
    seconds = time.perf_counter() - start
    added = sum(len(d.add) for d in result.applied)
    emit(phase="jb_apply", seconds=seconds, count=kernel_count(ns, backend_name, n), failed=result.failed,
         added=added, **totals)

    clock.now = now + timedelta(hours=2)
    start = time.perf_counter()
    expired = ledger.expire_bans(clock.now)
    emit(phase="ledger_expire", seconds=time.perf_counter() - start, expired=len(expired))
    totals.update(dict.fromkeys(totals, 0.0))
    start = time.perf_counter()
    result = reconciler.run()
    seconds = time.perf_counter() - start
    removed = sum(len(d.remove) for d in result.applied)
    emit(phase="jb_remove", seconds=seconds, count=kernel_count(ns, backend_name), failed=result.failed,
         removed=removed, **totals)
    ledger.close()


def child_main(args: argparse.Namespace) -> None:
    ns, tmp = Namespace(args.ns), Path(args.tmp)
    if args.child == "bare":
        child_bare(args.backend, args.n, ns, tmp, args.timeout)
    else:
        child_journalban(args.backend, args.n, ns, tmp)


def run_child(kind: str, backend: str, n: int, ns: Namespace, tmp: Path, timeout: float) -> tuple[dict[str, Any], str]:
    """Run one case in a child (own process group); it is killed when a phase (the time since its
    last record) exceeds ``timeout``. Its records by phase, and how it ended ("" if cleanly)."""
    out = tmp / f"{kind}.out"
    err = tmp / f"{kind}.err"
    argv = [sys.executable, "-m", "bench.enforce", "--child", kind, "--backend", backend, "--n", str(n),
            "--ns", ns.name, "--tmp", str(tmp), "--timeout", str(timeout)]
    ended = ""
    with out.open("w") as stdout, err.open("w") as stderr:
        child = subprocess.Popen(argv, stdout=stdout, stderr=stderr, start_new_session=True,
                                 cwd=Path(__file__).resolve().parent.parent)
        try:
            seen, deadline = 0, time.monotonic() + timeout + SETUP_ALLOWANCE
            while (code := child.poll()) is None:
                lines = out.read_text().count("\n")
                if lines != seen:
                    seen, deadline = lines, time.monotonic() + timeout
                if time.monotonic() > deadline:
                    ended = f"killed after {timeout:.0f} s"
                    break
                time.sleep(0.2)
            else:
                if code != 0:
                    tail = err.read_text().strip().splitlines()
                    ended = f"exited {code}" + (f": {tail[-1][:300]}" if tail else "")
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.pid, signal.SIGKILL)
            child.wait()
    records = {}
    for line in out.read_text().splitlines():
        with contextlib.suppress(ValueError):
            record = json.loads(line)
            records[record["phase"]] = record
    return records, ended


@dataclass
class Case:
    backend: str
    n: int
    phases: dict[str, dict[str, Any]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    apply_ratios: list[float] = field(default_factory=list)  # journalban / bare, one per round


def median_case(rounds: Sequence[Case]) -> Case:
    """One case from several rounds: each phase's median record (by seconds), every problem,
    and each round's own apply ratio (bare and journalban ran back to back in that round)."""
    case = Case(rounds[0].backend, rounds[0].n)
    for phase in {phase for r in rounds for phase in r.phases}:
        records = sorted((r.phases[phase] for r in rounds if phase in r.phases), key=lambda rec: rec.get("seconds", 0))
        case.phases[phase] = records[len(records) // 2]
    case.problems = [f"round {i + 1}: {p}" for i, r in enumerate(rounds) for p in r.problems]
    case.apply_ratios = [r.phases["jb_apply"]["seconds"] / r.phases["bare_apply"]["seconds"] for r in rounds
                         if "jb_apply" in r.phases and r.phases.get("bare_apply", {}).get("seconds")]
    return case


def run_case(backend: str, n: int, timeout: float) -> Case:
    case = Case(backend, n)
    with namespace("jb-bench") as ns, tempfile.TemporaryDirectory(prefix="jb-bench-") as tmpdir:
        tmp = Path(tmpdir)
        for kind, phases in (("bare", ("bare_apply", "bare_remove")),
                             ("journalban", ("jb_apply", "ledger_expire", "jb_remove"))):
            records, ended = run_child(kind, backend, n, ns, tmp, timeout)
            case.phases.update(records)
            if kind == "bare":  # whatever the child left behind, before journalban's run
                bare = bare_for(backend, [])
                ns.run(bare.argv, input=bare.cleanup, check=False, timeout=600)
            if ended:
                missing = [p for p in phases if p not in records]
                case.problems.append(f"{kind}: {ended}" + (f" during {missing[0]}" if missing else ""))
    for phase, want in (("bare_apply", n), ("bare_remove", 0), ("jb_apply", n), ("jb_remove", 0)):
        record = case.phases.get(phase)
        if record is not None and record["count"] != want:
            case.problems.append(f"{phase}: kernel holds {record['count']}, expected {want}")
        if record is not None and record.get("failed"):
            case.problems.append(f"{phase}: the reconciler reported a firewall error (see its log)")
    return case


# --- fail2ban ----------------------------------------------------------------------

F2B_FILTER = """[Definition]
failregex = ^bench auth failure from <HOST>$
datepattern = {NONE}
"""

F2B_JAIL = """[DEFAULT]
ignoreip = 127.0.0.1/8 ::1
[bench]
enabled = true
filter = bench
logpath = {log}
backend = auto
maxretry = 1
findtime = 1d
bantime = 1d
action = iptables-allports[name=bench, protocol=all]
"""


@dataclass
class Fail2banResult:
    reached: int = 0
    seconds: float | None = None  # time until all were in the kernel
    elapsed: float = 0.0
    note: str = ""


def fail2ban(timeout: float = F2B_TIMEOUT) -> Fail2banResult:
    result = Fail2banResult()
    if shutil.which("fail2ban-server") is None:
        result.note = "fail2ban-server is not installed"
        return result
    with namespace("jb-f2b") as ns, tempfile.TemporaryDirectory(prefix="jb-f2b-") as tmpdir:
        tmp = Path(tmpdir)
        conf = tmp / "fail2ban"
        shutil.copytree("/etc/fail2ban", conf)
        shutil.rmtree(conf / "jail.d")
        (conf / "jail.d").mkdir()
        (conf / "jail.local").write_text(F2B_JAIL.format(log=tmp / "bench.log"))
        (conf / "filter.d" / "bench.conf").write_text(F2B_FILTER)
        (conf / "fail2ban.local").write_text(f"[Definition]\ndbfile = {tmp}/f2b.sqlite3\n")
        log = tmp / "bench.log"
        log.write_text("")
        sock, pidfile = tmp / "f2b.sock", tmp / "f2b.pid"
        stderr = (tmp / "server.err").open("w")
        server = ns.popen(["fail2ban-server", "-f", "-x", "-c", str(conf), "-s", str(sock), "-p", str(pidfile),
                           "--logtarget", "STDERR", "--loglevel", "NOTICE"],
                          stdout=subprocess.DEVNULL, stderr=stderr, start_new_session=True)
        try:
            ready = time.monotonic() + 60
            while time.monotonic() < ready:
                status = subprocess.run(["fail2ban-client", "-s", str(sock), "status", JAIL],
                                        capture_output=True, text=True, check=False, timeout=30)
                if status.returncode == 0:
                    break
                if server.poll() is not None:
                    break
                time.sleep(0.5)
            else:
                status = None
            if status is None or status.returncode != 0:
                result.note = "fail2ban-server did not come up: " + (tmp / "server.err").read_text()[-500:]
                return result
            time.sleep(2)  # let the polling backend settle on the empty file
            lines = "".join(f"bench auth failure from {a}\n" for a in addresses(F2B_BANS))
            pattern = re.compile(rf"^-A f2b-{JAIL} -s \S+ -j (REJECT|DROP)", re.M)
            start = time.perf_counter()
            with log.open("a") as f:
                f.write(lines)
            deadline = start + timeout
            while time.perf_counter() < deadline:
                saved = ns.run(["iptables-save", "-t", "filter"], timeout=60).stdout
                result.reached = len(pattern.findall(saved))
                result.elapsed = time.perf_counter() - start
                if result.reached >= F2B_BANS:
                    result.seconds = result.elapsed
                    break
                if server.poll() is not None:
                    result.note = "fail2ban-server exited: " + (tmp / "server.err").read_text()[-500:]
                    break
                time.sleep(0.2)
            if result.seconds is None and not result.note:
                result.note = f"reached {result.reached} of {F2B_BANS} in {timeout:.0f} s"
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(server.pid, signal.SIGKILL)
                server.wait()
            stderr.close()
    return result


# --- packet cost -------------------------------------------------------------------

RECEIVER = """
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
s.bind((sys.argv[1], int(sys.argv[2])))
print("ready", flush=True)
while True:
    s.recv(2048)
"""

SENDER = """
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.connect((sys.argv[1], int(sys.argv[2])))
payload, sent, end = b"x" * 64, 0, time.monotonic() + float(sys.argv[3])
while time.monotonic() < end:
    for _ in range(1000):
        try:
            s.send(payload)
            sent += 1
        except OSError:
            pass
print(sent)
"""


def udp_delivered(ns: Namespace) -> int:
    """Datagrams that got past netfilter to the UDP layer: delivered plus dropped for a full buffer."""
    lines = [line.split() for line in ns.run(["cat", "/proc/net/snmp"]).stdout.splitlines() if line.startswith("Udp:")]
    values = dict(zip(lines[0][1:], map(int, lines[1][1:]), strict=True))
    return values["InDatagrams"] + values["RcvbufErrors"]


def load_layout(backend: str, ns: Namespace, addrs: Sequence[str]) -> None:
    """Put ``addrs`` into the namespace exactly in the layout ``backend`` builds, with the bare tools
    (journalban's own apply of 10,000 iptables rules is what part 1 times)."""
    chain, set4 = f"jb-{JAIL}", f"jb-{JAIL}-4"
    if backend == "iptables":
        text = "".join(["*filter\n", f":{chain} - [0:0]\n", *(f"-A {chain} -s {a}/32 -j DROP\n" for a in addrs),
                        f"-A {chain} -j RETURN\n", f"-I INPUT 1 -j {chain}\n", "COMMIT\n"])
        ns.run(["iptables-restore", "-w", "--noflush"], input=text, timeout=300)
        empty6 = f"*filter\n:{chain} - [0:0]\n-A {chain} -j RETURN\n-I INPUT 1 -j {chain}\nCOMMIT\n"
        ns.run(["ip6tables-restore", "-w", "--noflush"], input=empty6)
    elif backend == "ipset":
        sets = [f"create {set4} hash:ip family inet hashsize 1024 maxelem 1048576",
                f"create jb-{JAIL}-6 hash:ip family inet6 hashsize 1024 maxelem 1048576",
                f"create jb-{JAIL}-net4 hash:net family inet hashsize 1024 maxelem 1048576",
                f"create jb-{JAIL}-net6 hash:net family inet6 hashsize 1024 maxelem 1048576",
                *(f"add {set4} {a}" for a in addrs)]
        ns.run(["ipset", "restore"], input="\n".join([*sets, ""]), timeout=300)
        for tool, version in (("iptables-restore", "4"), ("ip6tables-restore", "6")):
            text = (f"*filter\n-I INPUT 1 -m set --match-set jb-{JAIL}-{version} src -j DROP\n"
                    f"-I INPUT 2 -m set --match-set jb-{JAIL}-net{version} src -j DROP\nCOMMIT\n")
            ns.run([tool, "-w", "--noflush"], input=text)
    else:  # journalban's own apply: the layout is exactly the backend's, whatever it is today
        from journalban.firewall.base import Diff, JailLayout
        from journalban.firewall.nftables import NftablesFirewall

        firewall, jails = NftablesFirewall(tuple(ns.argv([]))), (JailLayout(JAIL),)
        firewall.read(jails)
        firewall.apply(jails, Diff(add=frozenset((JAIL, a) for a in addrs), repair_layout=True))


def flood(server: Namespace, attacker: Namespace, seconds: float) -> tuple[float, int]:
    """Datagrams per second that reach the server's UDP layer, and how many were sent."""
    before = udp_delivered(server)
    sender = attacker.run([sys.executable, "-c", SENDER, SERVER, str(UDP_PORT), str(seconds)],
                          timeout=seconds + 30)
    time.sleep(0.2)
    return (udp_delivered(server) - before) / seconds, int(sender.stdout.strip() or 0)


@dataclass
class PacketResult:
    setup: str
    rate: float  # the median round's
    sent: int
    spread: tuple[float, float]  # slowest and fastest round
    note: str = ""


def packets(backends: Sequence[str], bans: int, seconds: float, rounds: int) -> list[PacketResult]:
    """Each setup in its own pair of namespaces, all built first; the floods then take turns
    (round by round) so that drift in the machine's speed hits every setup alike."""
    from journalban.firewall.base import JailLayout

    # (label, backend, bans): besides the full sets, each set backend with a single ban, which
    # separates the fixed cost of having a hook at all from what the set's size costs
    setups: list[tuple[str, str | None, int]] = [("empty", None, 0)]
    for backend in backends:
        setups.append((f"{backend} ({bans:,} bans)", backend, bans))
        if backend != "iptables":
            setups.append((f"{backend} (1 ban)", backend, 1))
    runs: dict[str, list[tuple[float, int]]] = {label: [] for label, _, _ in setups}
    notes: dict[str, str] = {}
    with contextlib.ExitStack() as stack:
        pairs = {}
        for label, backend, count in setups:
            server, attacker = stack.enter_context(namespace("jb-srv")), stack.enter_context(namespace("jb-atk"))
            link(attacker, f"{ATTACKER}/24", server, f"{SERVER}/24")
            if backend is not None:
                load_layout(backend, server, addresses(count))
                actual = make_backend(backend, server).read((JailLayout(JAIL),))
                if len(actual.entries) != count or not actual.layout_ok:
                    notes[label] = f"backend reads {len(actual.entries)} entries, layout_ok={actual.layout_ok}"
            receiver = server.popen([sys.executable, "-c", RECEIVER, SERVER, str(UDP_PORT)],
                                    stdout=subprocess.PIPE, start_new_session=True)
            stack.callback(receiver.wait)
            stack.callback(lambda pid=receiver.pid: os.killpg(pid, signal.SIGKILL))
            assert receiver.stdout is not None
            receiver.stdout.readline()
            flood(server, attacker, 0.5)  # warm up: neighbour discovery, caches
            pairs[label] = (server, attacker)
        for _ in range(rounds):
            for label, _, _ in setups:
                runs[label].append(flood(*pairs[label], seconds))
    results = []
    for label, _, _ in setups:
        ordered = sorted(runs[label])
        rate, sent = ordered[len(ordered) // 2]
        results.append(PacketResult(label, rate, sent, (ordered[0][0], ordered[-1][0]), notes.get(label, "")))
    return results


# --- report ------------------------------------------------------------------------

def fmt_s(seconds: float | None) -> str:
    return "—" if seconds is None else f"{seconds:.2f}"


def ratio(a: float | None, b: float | None) -> str:
    return "—" if a is None or not b else f"{a / b:.2f}x"


def case_rows(cases: Sequence[Case]) -> list[str]:
    rows = ["| backend | N | journalban apply s | bare apply s | ratio | ratio per round | bans/s | "
            "jb apply: ledger / read / apply / tools s | ledger expire s | journalban remove s | bare remove s "
            "| ratio |",
            "|---|---:|---:|---:|---:|---|---:|---|---:|---:|---:|---:|"]
    for case in cases:
        p = case.phases
        ja, ba, jr, br = (p.get(k, {}).get("seconds") for k in ("jb_apply", "bare_apply", "jb_remove", "bare_remove"))
        expire = p.get("ledger_expire", {}).get("seconds")
        split = (" / ".join(f"{p['jb_apply'][k]:.2f}" for k in ("ledger", "read", "apply", "tools"))
                 if "jb_apply" in p else "—")
        rate = f"{case.n / ja:,.0f}" if ja else "—"
        rounds = " ".join(f"{r:.2f}" for r in case.apply_ratios) or "—"
        ratios = sorted(case.apply_ratios)
        apply_ratio = f"{ratios[len(ratios) // 2]:.2f}x" if ratios else ratio(ja, ba)
        rows.append(f"| {case.backend} | {case.n:,} | {fmt_s(ja)} | {fmt_s(ba)} | {apply_ratio} | {rounds} | {rate} "
                    f"| {split} "
                    f"| {fmt_s(expire)} | {fmt_s(jr)} | {fmt_s(br)} | {ratio(jr, br)} |")
    return rows


def report(args: argparse.Namespace, cases: Sequence[Case], f2b: Fail2banResult | None,
           pkts: Sequence[PacketResult] | None, command: str) -> str:
    kernel = platform.release()
    lines = [f"## {datetime.now(UTC):%Y-%m-%d %H:%M} UTC — {os.cpu_count()} CPUs (nproc {nproc()}), kernel {kernel}",
             "", f"`{command}`", ""]
    if cases:
        lines += ["### Ledger to kernel: one `Reconciler.run()` versus the bare tool", "",
                  "Times in seconds; every apply verified by counting the entries in the kernel. "
                  "\"ledger / read / apply / tools\": time in the ledger's `expire_bans` + `enforced_bans`, in the "
                  "backend's `read`, in its `apply`, and in the external commands read and apply ran (the rest of "
                  "read + apply is Python in the backend). \"ledger expire\" is `expire_bans` "
                  f"alone, before the timed removal run. Times are medians of {args.rounds} rounds; \"ratio per "
                  "round\": journalban / bare apply of each round, the two run back to back, and \"ratio\" their "
                  "median. Bare removal for iptables is a flush.", "", *case_rows(cases), ""]
        problems = [f"- {c.backend} {c.n:,}: {p}" for c in cases for p in c.problems]
        if problems:
            lines += ["Problems:", "", *problems, ""]
    if f2b is not None:
        lines += ["### fail2ban 1.0 from a log file (iptables-allports, maxretry 1)", ""]
        jb = next((c for c in cases if c.backend == "iptables" and c.n == F2B_BANS and "jb_apply" in c.phases), None)
        jb_rate = f"{F2B_BANS / jb.phases['jb_apply']['seconds']:,.0f}" if jb else "—"
        if f2b.seconds is not None:
            lines += ["| | bans | seconds | bans/s |", "|---|---:|---:|---:|",
                      f"| fail2ban (log line to iptables rule) | {F2B_BANS:,} | {f2b.seconds:.2f} | "
                      f"{F2B_BANS / f2b.seconds:,.0f} |",
                      f"| journalban iptables (ledger to kernel, part 1) | {F2B_BANS:,} | "
                      f"{fmt_s(jb.phases['jb_apply']['seconds']) if jb else '—'} | {jb_rate} |", ""]
        else:
            lines += [f"fail2ban did not finish: {f2b.note} (reached {f2b.reached} in {f2b.elapsed:.1f} s)", ""]
        if f2b.note and f2b.seconds is not None:
            lines += [f"Note: {f2b.note}", ""]
    if pkts:
        empty = next((r.rate for r in pkts if r.setup == "empty"), None)
        lines += [f"### Packet cost: UDP flood (one Python sender, 64-byte datagrams) for {args.flood_seconds:g} s, "
                  f"{args.packet_bans:,} bans none of which matches the sender", "",
                  f"Median of {args.flood_rounds} floods per setup, the setups taking turns; \"delivered\" counts "
                  "datagrams that passed netfilter to the server's UDP layer (`/proc/net/snmp` InDatagrams + "
                  "RcvbufErrors). The bans are "
                  "loaded in each backend's exact layout with the bare tools and checked with the backend's `read`.",
                  "", "| firewall | delivered pkt/s | vs empty | slowest to fastest round | sent (median round) |",
                  "|---|---:|---:|---:|---:|"]
        for r in pkts:
            lines.append(f"| {r.setup} | {r.rate:,.0f} | {ratio(r.rate, empty)} | "
                         f"{r.spread[0]:,.0f} to {r.spread[1]:,.0f} | {r.sent:,} |")
        notes = [f"- {r.setup}: {r.note}" for r in pkts if r.note]
        lines += ["", *(["Problems:", "", *notes, ""] if notes else [])]
    return "\n".join(lines)


def nproc() -> str:
    return subprocess.run(["nproc"], capture_output=True, text=True, check=False).stdout.strip()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.enforce", description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)))
    parser.add_argument("--backends", default=",".join(BACKENDS))
    parser.add_argument("--timeout", type=float, default=240.0, help="seconds allowed per timed phase")
    parser.add_argument("--rounds", type=int, default=3,
                        help="rounds per backend and size (bare then journalban, each in a fresh namespace); "
                             "medians are reported")
    parser.add_argument("--skip-fail2ban", action="store_true")
    parser.add_argument("--skip-packets", action="store_true")
    parser.add_argument("--packet-bans", type=int, default=10_000)
    parser.add_argument("--flood-seconds", type=float, default=3.0)
    parser.add_argument("--flood-rounds", type=int, default=5, help="floods per setup; the median is reported")
    parser.add_argument("--no-results-file", action="store_true", help="print only")
    parser.add_argument("--child", choices=("bare", "journalban"), help=argparse.SUPPRESS)
    parser.add_argument("--backend", help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--ns", help=argparse.SUPPRESS)
    parser.add_argument("--tmp", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child_main(args)
        return
    if os.geteuid() != 0:
        sys.exit("bench.enforce needs root (it creates network namespaces)")
    sizes = [int(s) for s in args.sizes.split(",") if s]
    backends = [b for b in args.backends.split(",") if b]
    if unknown := set(backends) - set(BACKENDS):
        sys.exit(f"unknown backend(s): {', '.join(sorted(unknown))}")
    command = " ".join([".venv/bin/python -m bench.enforce", *(argv if argv is not None else sys.argv[1:])])
    cases = []
    for backend in backends:
        for n in sizes:
            print(f"# {backend} {n:,} ...", file=sys.stderr, flush=True)
            case = median_case([run_case(backend, n, args.timeout) for _ in range(args.rounds)])
            cases.append(case)
            print("\n".join(case_rows([case])[2:]), *case.problems, sep="\n", file=sys.stderr, flush=True)
    f2b = None
    if not args.skip_fail2ban:
        print("# fail2ban ...", file=sys.stderr, flush=True)
        f2b = fail2ban()
    pkts = None
    if not args.skip_packets:
        print("# packets ...", file=sys.stderr, flush=True)
        pkts = packets(backends, args.packet_bans, args.flood_seconds, args.flood_rounds)
    text = report(args, cases, f2b, pkts, command)
    print(text)
    if not args.no_results_file:
        with RESULTS.open("a") as f:
            if f.tell() == 0:
                f.write("# bench.enforce results\n\nAppended by `python -m bench.enforce`; newest last.\n\n")
            f.write(text + "\n\n")


if __name__ == "__main__":
    main()

