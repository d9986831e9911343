"""A temporary PostgreSQL server for tests, reachable only over a Unix socket.

PostgreSQL refuses to run as root, so the server runs as the ``postgres`` user in
a directory of its own under /tmp (pytest's own tmp directories are root-only).
The socket directory is readable by everyone, so tests in network namespaces, or
as other users, reach the same server. Start it once per session with the
``postgres_server`` fixture; each test takes a fresh database from it.
"""

import itertools
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

USER = "journalban"  # the superuser initdb creates; trust authentication over the socket
PORT = 5432  # names the socket file only: there is no TCP listener
START_TIMEOUT = 30  # seconds pg_ctl waits for the server
_numbers = itertools.count(1)


def postgres_bin() -> Path | None:
    """The newest installed PostgreSQL's binaries (Debian: /usr/lib/postgresql/N/bin), or None."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=lambda p: int(p.parts[-3]))
    if found:
        return found[-1].parent
    pg_ctl = shutil.which("pg_ctl")
    return Path(pg_ctl).parent if pg_ctl else None


@dataclass(frozen=True)
class PostgresServer:
    directory: Path  # holds data/ and the socket
    bin: Path

    def url(self, database: str = "postgres") -> str:
        """The SQLAlchemy URL of ``database`` over the socket (psycopg 3)."""
        return f"postgresql+psycopg://{USER}@/{database}?host={self.directory}&port={PORT}"

    def psql(self, sql: str, database: str = "postgres") -> str:
        """Run ``sql`` with psql and return its unaligned output: a way in apart from SQLAlchemy."""
        result = subprocess.run(
            [str(self.bin / "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", str(self.directory),
             "-p", str(PORT), "-U", USER, "-d", database, "-c", sql],
            capture_output=True, text=True, check=True, timeout=60)
        return result.stdout.strip()

    def stop(self) -> None:
        """Stop the server at once (``pg_ctl stop -m fast``): the ledger goes away."""
        _as_postgres([str(self.bin / "pg_ctl"), "-D", str(self.directory / "data"), "-m", "fast", "-w", "stop"],
                     self.directory)

    def start(self) -> None:
        """Start it again, as it was."""
        _as_postgres([str(self.bin / "pg_ctl"), "-D", str(self.directory / "data"), "-o", _options(self.directory),
                      "-l", str(self.directory / "log"), "-t", str(START_TIMEOUT), "-w", "start"], self.directory)

    def running(self) -> bool:
        return (self.directory / "data" / "postmaster.pid").exists()

    def create_database(self, prefix: str = "ledger") -> str:
        """A new empty database; returns its SQLAlchemy URL."""
        name = f"{prefix}_{os.getpid()}_{next(_numbers)}"
        self.psql(f'CREATE DATABASE "{name}"')
        return self.url(name)


def _as_postgres(args: list[str], cwd: Path) -> None:
    subprocess.run(args, user="postgres", group="postgres", extra_groups=[], cwd=cwd, check=True,
                   capture_output=True, timeout=START_TIMEOUT + 30)


def _options(directory: Path) -> str:
    return (f"-p {PORT} -k {directory} -c listen_addresses='' -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off")


@contextmanager
def running_postgres() -> Iterator[PostgresServer]:
    """Start a throwaway server (fsync off: its data dies with it) and stop it on the way out."""
    bin_dir = postgres_bin()
    if bin_dir is None:
        raise FileNotFoundError("PostgreSQL binaries not found (apt-get install postgresql)")
    directory = Path(tempfile.mkdtemp(prefix="jb-pg-"))
    started = False
    try:
        shutil.chown(directory, "postgres", "postgres")
        directory.chmod(0o755)
        data = directory / "data"
        _as_postgres([str(bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", USER, "-E", "UTF8",
                      "--no-sync"], directory)
        _as_postgres([str(bin_dir / "pg_ctl"), "-D", str(data), "-o", _options(directory),
                      "-l", str(directory / "log"), "-t", str(START_TIMEOUT), "-w", "start"], directory)
        started = True
        yield PostgresServer(directory, bin_dir)
    finally:
        if started and (directory / "data" / "postmaster.pid").exists():  # a test may have stopped it
            _as_postgres([str(bin_dir / "pg_ctl"), "-D", str(directory / "data"), "-m", "fast", "-w", "stop"],
                         directory)
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One server for the whole session; skipped, saying why, where PostgreSQL is not installed."""
    if postgres_bin() is None:
        reason = "PostgreSQL binaries not found (apt-get install postgresql)"
        print(f"\nskipping PostgreSQL tests: {reason}")
        pytest.skip(reason)
    with running_postgres() as server:
        yield server


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> str:
    """A fresh empty database on the session's server."""
    return postgres_server.create_database()
