"""A busy SQLite ledger's WAL is copied back into the database by a thread of its own
(``engine.WalCheckpointer``), not by the commit that reads the files; closing stops it."""

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import text

from journalban.events import Failure
from journalban.ledger import engine
from journalban.ledger.store import Ledger

T0 = datetime(2026, 4, 23, 10, 0, tzinfo=UTC)


def test_the_wal_is_checkpointed_in_the_background_and_close_stops_the_thread(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine, "BACKGROUND_CHECKPOINT_BYTES", 1)
    database = tmp_path / "ledger.db"
    ledger = Ledger(f"sqlite:///{database}", node="test")
    try:
        ledger.upgrade()
        with ledger.engine.connect() as connection:  # everything so far in the database file, the WAL empty
            connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        before = database.stat().st_size
        failures = [Failure(jail="sshd", address=f"10.0.{n // 256}.{n % 256}", time=T0 + timedelta(seconds=n),
                            rule="sshd/failed", text=f"failure {n} " + "x" * 200, source="file:/var/log/auth.log")
                    for n in range(5000)]
        ledger.record(failures, [], {}, T0)  # a few MB of WAL, far below the autocheckpoint
        deadline = time.monotonic() + 10
        while database.stat().st_size <= before and time.monotonic() < deadline:
            time.sleep(0.02)
        assert database.stat().st_size > before + 1_000_000  # the pages reached the database file
        assert ledger.checkpointer is not None
        thread = ledger.checkpointer._thread
        assert thread is not None and thread.is_alive()
    finally:
        ledger.close()
    assert not thread.is_alive()
    reopened = Ledger(f"sqlite:///{database}", node="test")
    with reopened.engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM failures")).scalar_one() == 5000
    reopened.close()


def test_a_small_wal_starts_no_thread(tmp_path: Path) -> None:
    ledger = Ledger(f"sqlite:///{tmp_path}/ledger.db", node="test")
    ledger.upgrade()
    ledger.record([Failure(jail="sshd", address="10.0.0.1", time=T0, rule="sshd/failed", text="failure",
                           source="file:/var/log/auth.log")], [], {}, T0)
    assert ledger.checkpointer is not None and ledger.checkpointer._thread is None
    ledger.close()
