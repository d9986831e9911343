"""HeldBatches: a flood's batches recorded together, in order; a sparse batch at once; nothing lost."""

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest

from journalban import held_batches
from journalban.daemon import Daemon
from journalban.events import Event
from journalban.held_batches import DENSE, MOST_EVENTS, HeldBatches
from journalban.loading import load
from tests.e2e.daemon import count, free_port, query
from tests.test_daemon import until

T0 = datetime(2026, 11, 26, tzinfo=UTC)


def events(source: str, first: int, count: int) -> list[Event]:
    return [Event(source=source, time=T0, message=f"line {n}") for n in range(first, first + count)]


class Recorded(list[tuple[str, list[str]]]):
    """What the pipeline was handed: (source, messages) per call."""

    def __call__(self, source: str, batch: list[Event]) -> None:
        self.append((source, [event.message for event in batch]))


def test_a_sparse_batch_goes_at_once() -> None:
    async def scenario() -> Recorded:
        recorded = Recorded()
        batches = HeldBatches(recorded)
        batches.add("syslog:a", events("syslog:a", 0, DENSE - 1))
        assert recorded == [("syslog:a", [f"line {n}" for n in range(DENSE - 1)])]
        return recorded

    assert len(asyncio.run(scenario())) == 1


def test_a_floods_batches_are_held_then_handed_over_together_in_order(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(held_batches, "HOLD_SECONDS", 0.02)

    async def scenario() -> Recorded:
        recorded = Recorded()
        batches = HeldBatches(recorded)
        batches.add("syslog:a", events("syslog:a", 0, DENSE))
        batches.add("syslog:b", events("syslog:b", 0, 1))  # joins the held ones: order is kept
        batches.add("syslog:a", events("syslog:a", DENSE, 3))
        assert recorded == []
        await asyncio.sleep(0.2)
        return recorded

    recorded = asyncio.run(scenario())
    assert recorded == [("syslog:a", [f"line {n}" for n in range(DENSE + 3)]), ("syslog:b", ["line 0"])]


def test_enough_held_goes_at_once_and_stop_hands_over_the_rest() -> None:
    async def scenario() -> Recorded:
        recorded = Recorded()
        batches = HeldBatches(recorded)
        for first in range(0, MOST_EVENTS, 256):
            batches.add("syslog:a", events("syslog:a", first, 256))
        assert len(recorded) == 1 and len(recorded[0][1]) == MOST_EVENTS  # no wait for the timer
        batches.add("syslog:a", events("syslog:a", MOST_EVENTS, 100))
        batches.flush()  # the daemon stops: nothing held is lost
        assert recorded[-1] == ("syslog:a", [f"line {n}" for n in range(MOST_EVENTS, MOST_EVENTS + 100)])
        await asyncio.sleep(held_batches.HOLD_SECONDS * 2)  # the cancelled timer hands over nothing twice
        return recorded

    assert len(asyncio.run(scenario())) == 2


def test_held_events_the_pipeline_refuses_are_counted_and_the_other_sources_still_go(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(held_batches, "HOLD_SECONDS", 0.02)
    recorded = Recorded()

    def process(source: str, batch: list[Event]) -> None:
        if source == "syslog:bad":
            raise RuntimeError("the ledger is gone")
        recorded(source, batch)

    async def scenario() -> HeldBatches:
        batches = HeldBatches(process)
        batches.add("syslog:bad", events("syslog:bad", 0, DENSE))
        batches.add("syslog:good", events("syslog:good", 0, 2))
        await asyncio.sleep(0.2)
        batches.add("syslog:good", events("syslog:good", 2, 1))  # the next sparse batch flows at once
        return batches

    batches = asyncio.run(scenario())
    assert batches.refused == DENSE
    assert recorded == [("syslog:good", ["line 0", "line 1"]), ("syslog:good", ["line 2"])]
    assert f"refused {DENSE} held events" in caplog.text


def flood(count: int) -> bytes:
    """``count`` sshd failures from distinct addresses, RFC 5424 over TCP (octet-counted), with noise between."""
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    frames = []
    for n in range(count):
        for message in (f"Failed password for root from 10.9.{n // 256}.{n % 256} port 22 ssh2",
                        "Connection closed by 192.0.2.1 port 22", f"Accepted publickey for deploy{n}"):
            frame = f"<38>1 {stamp} web1 sshd 4242 - - {message}".encode()
            frames.append(b"%d %s" % (len(frame), frame))
    return b"".join(frames)


@pytest.mark.parametrize("stop_at_once", [True, False], ids=["stop-hands-over", "timer-hands-over"])
def test_a_tcp_flood_reaches_the_ledger_whole_and_once(stop_at_once: bool, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """The daemon's own intake, listener and SQLite ledger: a flood's held batches are all
    recorded, by the timer or by the stop, and none twice."""
    if stop_at_once:
        monkeypatch.setattr(held_batches, "HOLD_SECONDS", 3600.0)  # only enough held, or the stop, hands over
    port = free_port()
    config = tmp_path / "journalban.toml"
    config.write_text(f"""
[control]
socket = "{tmp_path}/control.sock"
[ledger]
url = "sqlite:///{tmp_path}/ledger.db"
[sources.syslog]
listen = ["tcp://127.0.0.1:{port}"]
[jails.sshd]
grammar = "sshd"
syslog = true
maxretry = 1000000
firewall = "dry-run"
ignoreself = false
""")
    loaded = load(config)
    running = Daemon(loaded.config, loaded.grammars)
    running.ledger.prepare()
    failures = 3000
    ledger = tmp_path / "ledger.db"

    async def scenario() -> None:
        await running.intake.open()
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(flood(failures))
            await writer.drain()
            listener = running.intake.syslog
            assert listener is not None
            await until(lambda: listener.counters["received"] >= 3 * failures, timeout=30)
            if not stop_at_once:
                await until(lambda: count(ledger, "SELECT count(DISTINCT address) FROM failures") >= failures,
                            timeout=30)
            writer.close()
        finally:
            await running.intake.close()

    try:
        asyncio.run(scenario())
    finally:
        running.ledger.close()
    assert query(ledger, "SELECT count(*), count(DISTINCT address) FROM failures") == [(failures, failures)]
    assert running.intake.counters["syslog"]["held_refused"] == 0  # type: ignore[index]
