import gc
import ipaddress
import random
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from journalban.detector import Detector, JailPolicy, Verdict
from journalban.events import FOREVER, Failure
from journalban.windows import window_key

T0 = datetime(2026, 4, 23, 10, 0, tzinfo=UTC)


def failure(address: str, at: datetime, jail: str = "ssh") -> Failure:
    return Failure(jail=jail, address=address, time=at, rule="g/r", text=f"fail from {address}", source="test")


def detector(**overrides: object) -> Detector:
    settings: dict[str, object] = {"maxretry": 3, "findtime": 600, "bantime": 3600,
                                   "ignoreip": (ipaddress.ip_network("192.0.2.0/24"),
                                                ipaddress.ip_network("2001:db8::/32"))}
    settings.update(overrides)
    return Detector({"ssh": JailPolicy("ssh", **settings)})  # type: ignore[arg-type]


def test_bans_at_maxretry_within_findtime() -> None:
    d = detector()
    assert d.observe(failure("203.0.113.9", T0), T0)[0] is Verdict.COUNTED
    later = T0 + timedelta(seconds=100)
    assert d.observe(failure("203.0.113.9", later), later)[0] is Verdict.COUNTED
    now = T0 + timedelta(seconds=200)
    verdict, ban = d.observe(failure("203.0.113.9", now), now)
    assert verdict is Verdict.BANNED and ban is not None
    assert (ban.start, ban.expiry) == (now, now + timedelta(seconds=3600))
    assert ban.reason == "3 failures in 600s: fail from 203.0.113.9"
    assert (ban.failure_count, ban.first_failure_at) == (3, T0)
    assert [f.address for f in ban.failures] == ["203.0.113.9"]  # only the last is kept: windows hold times


def test_failures_outside_the_window_do_not_add_up() -> None:
    d = detector()
    for minutes in (0, 8, 16, 24):  # each pair 8 minutes apart, no three within 10 minutes
        at = T0 + timedelta(minutes=minutes)
        assert d.observe(failure("203.0.113.9", at), at)[0] is Verdict.COUNTED


def test_too_old_events_never_ban() -> None:
    d = detector(maxretry=1)
    now = T0 + timedelta(seconds=601)
    assert d.observe(failure("203.0.113.9", T0), now)[0] is Verdict.TOO_OLD


def test_already_banned_until_expiry_then_counted_afresh() -> None:
    d = detector(maxretry=1, bantime=60)
    assert d.observe(failure("203.0.113.9", T0), T0)[0] is Verdict.BANNED
    during = T0 + timedelta(seconds=30)
    assert d.observe(failure("203.0.113.9", during), during)[0] is Verdict.ALREADY_BANNED
    later = T0 + timedelta(seconds=61)
    assert d.observe(failure("203.0.113.9", later), later)[0] is Verdict.BANNED


@pytest.mark.parametrize("address", ["192.0.2.77", "2001:db8::5", "127.0.0.0", "127.0.0.1", "127.9.9.9",
                                     "127.255.255.255", "::1"])
def test_ignoreip_cidr_and_loopback_are_never_counted(address: str) -> None:
    d = detector(maxretry=1, ignoreip=(ipaddress.ip_network("192.0.2.0/24"), ipaddress.ip_network("2001:db8::/32")))
    assert d.observe(failure(address, T0), T0)[0] is Verdict.IGNORED
    assert d.tracked == 0


def test_loopback_is_ignored_even_when_ignoreip_is_emptied() -> None:
    d = detector(maxretry=1, ignoreip=())
    assert d.observe(failure("127.0.0.1", T0), T0)[0] is Verdict.IGNORED
    assert d.observe(failure("192.0.2.77", T0), T0)[0] is Verdict.BANNED
    for beside in ("126.255.255.255", "128.0.0.0"):  # either side of 127.0.0.0/8
        assert d.observe(failure(beside, T0), T0)[0] is Verdict.BANNED


def test_jails_count_separately() -> None:
    policies = {name: JailPolicy(name, 2, 600, 60) for name in ("ssh", "web")}
    d = Detector(policies)
    assert d.observe(failure("203.0.113.9", T0, "ssh"), T0)[0] is Verdict.COUNTED
    assert d.observe(failure("203.0.113.9", T0, "web"), T0)[0] is Verdict.COUNTED


def test_prime_restores_windows_and_bans() -> None:
    d = detector()
    d.prime([failure("203.0.113.9", T0), failure("203.0.113.9", T0)],
            [("ssh", "198.51.100.1", T0 + timedelta(hours=1))])
    assert d.observe(failure("203.0.113.9", T0), T0)[0] is Verdict.BANNED
    assert d.observe(failure("198.51.100.1", T0), T0)[0] is Verdict.ALREADY_BANNED


def test_sweep_forgets_stale_windows() -> None:
    d = detector()
    d.observe(failure("203.0.113.9", T0), T0)
    d.sweep(T0 + timedelta(seconds=599))
    assert d.tracked == 1
    d.sweep(T0 + timedelta(seconds=601))
    assert d.tracked == 0


def test_permanent_bans() -> None:
    d = detector(maxretry=1, bantime=None)
    _, ban = d.observe(failure("203.0.113.9", T0), T0)
    assert ban is not None and ban.expiry == FOREVER
    far = T0 + timedelta(days=3650)
    assert d.observe(failure("203.0.113.9", far), far)[0] is Verdict.ALREADY_BANNED


def test_growing_ban_times_count_previous_bans_including_those_before_a_restart() -> None:
    d = detector(maxretry=1, bantime=600, bantime_increment=True, bantime_factor=1.5, bantime_maxtime=3000)
    d.prime([], [], {("ssh", "203.0.113.9"): 1})  # banned once before, per the ledger
    lengths = []
    now = T0
    for _ in range(3):
        _, ban = d.observe(failure("203.0.113.9", now), now)
        assert ban is not None
        lengths.append((ban.expiry - ban.start).total_seconds())
        now = ban.expiry + timedelta(seconds=1)
    assert lengths == [1800, 3000, 3000]  # 600 x 1.5 x 2, then capped at bantime_maxtime
    _, first = d.observe(failure("198.51.100.1", now), now)
    assert first is not None and (first.expiry - first.start).total_seconds() == 600


def test_subnet_aggregation_replaces_host_bans() -> None:
    d = detector(maxretry=1, subnet_threshold=3, ignoreip=())
    for host in ("203.0.113.1", "203.0.113.2"):
        _, ban = d.observe(failure(host, T0), T0)
        assert ban is not None and ban.address == host
    _, subnet = d.observe(failure("203.0.113.3", T0), T0)
    assert subnet is not None
    assert (subnet.address, subnet.replaces) == ("203.0.113.0/24", ("203.0.113.1", "203.0.113.2"))
    assert subnet.reason.startswith("3 addresses of 203.0.113.0/24 banned")
    assert d.observe(failure("203.0.113.200", T0), T0)[0] is Verdict.ALREADY_BANNED  # a neighbour


def test_no_subnet_ban_over_an_ignored_address() -> None:
    d = detector(maxretry=1, subnet_threshold=2, ignoreip=(ipaddress.ip_network("203.0.113.50/32"),))
    for host in ("203.0.113.1", "203.0.113.2", "203.0.113.3"):
        _, ban = d.observe(failure(host, T0), T0)
        assert ban is not None and ban.address == host and not ban.replaces


def test_subnet_aggregation_v6_uses_its_own_prefix() -> None:
    d = detector(maxretry=1, subnet_threshold=2, subnet_prefix6=64, ignoreip=())
    d.observe(failure("2001:db8:1:2::1", T0), T0)
    _, subnet = d.observe(failure("2001:db8:1:2::ff", T0), T0)
    assert subnet is not None and subnet.address == "2001:db8:1:2::/64"


def test_windows_keep_times_not_the_failures_themselves() -> None:
    """The botnet case: a million addresses in windows must not hold a million Failure records."""
    d = detector(maxretry=1_000_000)
    gc.collect()
    before = sum(isinstance(o, Failure) for o in gc.get_objects())
    for i in range(1000):
        d.observe(failure(f"198.18.{i // 250}.{i % 250 + 1}", T0), T0)
        d.observe(failure(f"2001:db8:1::{i:x}", T0, "ssh"), T0)
    gc.collect()
    assert sum(isinstance(o, Failure) for o in gc.get_objects()) == before
    assert d.tracked == 1000  # the 2001:db8::/32 ones are ignored
    d2 = detector(maxretry=1_000_000, ignoreip=())
    for i in range(1000):
        d2.observe(failure(f"2001:db8:1::{i:x}", T0), T0)
    assert d2.tracked == 1000


def test_a_long_window_counts_and_drops_its_old_entries() -> None:
    """Past a few entries a window is appended in place; old entries still leave it."""
    d = detector(maxretry=40, findtime=100)
    for second in range(30):  # 30 failures in 30 s
        at = T0 + timedelta(seconds=second)
        assert d.observe(failure("203.0.113.9", at), at)[0] is Verdict.COUNTED
    later = T0 + timedelta(seconds=125)  # the first 25 are out of the window now
    for _ in range(34):  # 5 old + 34 new: still below 40
        assert d.observe(failure("203.0.113.9", later), later)[0] is Verdict.COUNTED
    verdict, ban = d.observe(failure("203.0.113.9", later), later)
    assert verdict is Verdict.BANNED and ban is not None
    assert (ban.failure_count, ban.first_failure_at) == (40, T0 + timedelta(seconds=25))


@pytest.mark.parametrize("count", [2, 5, 20])
def test_sweep_drops_the_old_head_of_a_window_and_keeps_the_rest(count: int) -> None:
    d = detector(maxretry=count + 1)
    for second in range(count):
        at = T0 + timedelta(seconds=second * 10)
        d.observe(failure("203.0.113.9", at), at)
    d.sweep(T0 + timedelta(seconds=605))  # drops only the entry at T0
    assert d.tracked == 1
    last = T0 + timedelta(seconds=count * 10)
    assert d.observe(failure("203.0.113.9", last), last)[0] is Verdict.COUNTED  # count - 1 + 1 in the window
    last += timedelta(seconds=1)
    _, ban = d.observe(failure("203.0.113.9", last), last)
    assert ban is not None
    assert (ban.failure_count, ban.first_failure_at) == (count + 1, T0 + timedelta(seconds=10))


@pytest.mark.parametrize("subnet_threshold", [0, 2])
def test_count_each_decides_as_observe_does(subnet_threshold: int) -> None:
    """A replay's run through ``count_each`` gives the bans ``observe`` gives, each failure
    read at its own time, in the same places: ignored, loopback and already-banned
    addresses (and subnets) included."""
    rng = random.Random(7)
    pool = ["203.0.113.9", "203.0.113.10", "198.51.100.7", "192.0.2.5", "127.0.0.1", "2001:db8::1",
            "2001:db9::5", "198.51.100.8", "203.0.113.11", "126.255.255.255", "127.255.255.255", "128.0.0.0"]
    times, addresses = [], []
    at = T0.timestamp()
    for _ in range(3000):
        at += rng.choice([0.0, 1.0, 30.0, 200.0, 900.0])
        times.append(at)
        addresses.append(rng.choice(pool))
    keys = [window_key(address) for address in addresses]

    def bans(use_each: bool) -> list[tuple[int, str, int, datetime]]:
        d = detector(maxretry=3, subnet_threshold=subnet_threshold)
        out = []
        if use_each:
            for index, reached in d.count_each("ssh", times, addresses, keys):
                when = datetime.fromtimestamp(times[index], UTC)
                decision = d.ban(failure(addresses[index], when), *reached, when)
                out.append((index, decision.address, decision.failure_count, decision.first_failure_at))
            return out
        for index, (when, address) in enumerate(zip(times, addresses, strict=True)):
            moment = datetime.fromtimestamp(when, UTC)
            _verdict, found = d.observe(failure(address, moment), moment)
            if found is not None:
                out.append((index, found.address, found.failure_count, found.first_failure_at))
        return out

    expected = bans(use_each=False)
    assert len(expected) > 20
    assert bans(use_each=True) == expected


@given(networks=st.lists(st.tuples(st.integers(0, 2**32 - 1), st.integers(8, 32)), max_size=8),
       probes=st.lists(st.integers(0, 2**32 - 1), min_size=1, max_size=20))
def test_ignores_is_membership_of_loopback_or_an_ignoreip_network(networks: list[tuple[int, int]],
                                                                  probes: list[int]) -> None:
    """The bisection over merged ranges says what ``ipaddress`` membership says, for overlapping,
    nested and adjacent networks, at their edges too."""
    ignoreip = tuple(ipaddress.ip_network((address, prefix), strict=False) for address, prefix in networks)
    policy = JailPolicy("ssh", maxretry=1, findtime=60, bantime=60, ignoreip=ignoreip)
    edges = [int(edge) + step for net in ignoreip for edge in (net.network_address, net.broadcast_address)
             for step in (-1, 0, 1) if 0 <= int(edge) + step < 2**32]
    for number in [*probes, *edges]:
        ip = ipaddress.ip_address(number)
        expected = ip.is_loopback or any(ip in net for net in ignoreip)
        assert policy.ignores(str(ip)) == expected
        assert policy.ignores(str(ip), number) == expected


@pytest.mark.parametrize("subnet_threshold", [0, 2])
def test_a_batch_is_observed_as_its_failures_one_by_one(subnet_threshold: int) -> None:
    """``observe_batch`` (a daemon's batch, all read at one moment) keeps, bans and counts
    what ``observe`` of each failure in turn does: ignored, loopback, too old, already
    banned (within the batch too) and subnets included."""
    rng = random.Random(11)
    pool = ["203.0.113.9", "203.0.113.10", "198.51.100.7", "192.0.2.5", "127.0.0.1", "2001:db8::1",
            "2001:db9::5", "198.51.100.8", "203.0.113.11", "::1", "::ffff:0:1", "128.0.0.0"]
    now = T0 + timedelta(hours=2)
    batches = [[failure(rng.choice(pool), now - timedelta(seconds=rng.choice([0, 5, 300, 599, 601, 3000])))
                for _ in range(rng.randint(0, 60))] for _ in range(40)]

    def key(ban: object) -> tuple[object, ...]:
        return tuple(getattr(ban, name) for name in ("jail", "address", "start", "expiry", "reason", "failures",
                                                      "replaces", "failure_count", "first_failure_at"))

    one_by_one, batched = detector(subnet_threshold=subnet_threshold), detector(subnet_threshold=subnet_threshold)
    seen: set[Verdict] = set()
    for number, batch in enumerate(batches):
        at = now + timedelta(seconds=number * 40)
        verdicts = [one_by_one.observe(f, at) for f in batch]
        out = batched.observe_batch("ssh", batch, at)
        recorded = {Verdict.COUNTED, Verdict.BANNED, Verdict.ALREADY_BANNED}
        assert out.kept == [f for f, (verdict, _) in zip(batch, verdicts, strict=True) if verdict in recorded]
        assert out.too_old == [f for f, (verdict, _) in zip(batch, verdicts, strict=True) if verdict is Verdict.TOO_OLD]
        assert [key(b) for b in out.bans] == [key(b) for _, b in verdicts if b is not None]
        assert {v: n for v, n in out.counts.items() if n} == {
            v: sum(1 for w, _ in verdicts if w is v) for v in {w for w, _ in verdicts}}
        seen |= {verdict for verdict, _ in verdicts}
    assert seen == set(Verdict)
