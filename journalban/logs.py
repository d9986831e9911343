"""Where the daemon's own log goes: the journal, with structured fields, under systemd;
stderr otherwise.

In the journal each record is its plain message (journald stamps time, priority and
unit itself) with ``SYSLOG_IDENTIFIER=journalban``, and the lines about a ban, an
unban or a heal carry ``JOURNALBAN_EVENT`` (ban|unban|heal), ``JOURNALBAN_JAIL`` and
``JOURNALBAN_ADDRESS``, so that ``journalctl JOURNALBAN_EVENT=ban JOURNALBAN_JAIL=sshd``
finds them without parsing text. The call sites pass ``extra=event_fields(...)``; on stderr
the fields are simply not shown.

Under systemd means: ``JOURNAL_STREAM`` names the very stderr we have, that is systemd
connected it to the journal (the unit's default). ``INVOCATION_ID`` alone is not taken
as a sign: it is inherited by everything a service starts (a CI runner's test suite,
an operator's shell under a user service), whose stderr is a file or a terminal.
``journalban run --log-to journal|stderr`` overrides the guess.
"""

import logging
import os
import socket
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

EVENT, JAIL, ADDRESS = "JOURNALBAN_EVENT", "JOURNALBAN_JAIL", "JOURNALBAN_ADDRESS"
IDENTIFIER = "journalban"
JOURNAL_SOCKET = Path("/run/systemd/journal/socket")
STDERR_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
TARGETS = ("auto", "journal", "stderr")


def event_fields(kind: str, jail: str | None = None, address: str | None = None) -> dict[str, str]:
    """The ``extra=`` of a log call about a ban, an unban or a heal: its journal fields."""
    fields = {EVENT: kind}
    if jail is not None:
        fields[JAIL] = jail
    if address is not None:
        fields[ADDRESS] = address
    return fields


def under_systemd(environ: Mapping[str, str] = os.environ, stderr_fd: int = 2) -> bool:
    """Whether systemd connected our stderr to the journal, so that the journal is where our log belongs."""
    stream = environ.get("JOURNAL_STREAM", "")
    device, _, inode = stream.partition(":")
    try:
        stat = os.fstat(stderr_fd)
        return (stat.st_dev, stat.st_ino) == (int(device), int(inode))
    except (OSError, ValueError):
        return False


def native_sender(path: Path) -> Callable[..., None]:
    """A ``JournalHandler`` sender writing journald's native protocol to the socket at ``path``
    (a journal namespace's, say). Fields journald would refuse (lower case, leading ``_``) are left out."""

    def send(MESSAGE: str, **fields: object) -> None:  # MESSAGE: systemd's own name for it
        out = bytearray()
        for name, value in {"MESSAGE": MESSAGE, **fields}.items():
            if value is None or not _valid_field(name):
                continue
            raw = value if isinstance(value, bytes) else str(value).encode("utf-8", "replace")
            if b"\n" in raw:
                out += name.encode() + b"\n" + len(raw).to_bytes(8, "little") + raw + b"\n"
            else:
                out += name.encode() + b"=" + raw + b"\n"
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.sendto(bytes(out), str(path))

    return send


def _valid_field(name: str) -> bool:
    return bool(name) and not name[0].isdigit() and name[0] != "_" and len(name) <= 64 and all(
        c.isupper() or c.isdigit() or c == "_" for c in name)


def journal_handler(path: Path = JOURNAL_SOCKET) -> logging.Handler:
    """A handler sending each record to the journal at ``path``: the message, its priority,
    ``SYSLOG_IDENTIFIER=journalban`` and the record's ``JOURNALBAN_*`` fields."""
    from systemd.journal import JournalHandler

    sender = native_sender(path)

    def send(MESSAGE: str, **fields: object) -> None:
        sender(MESSAGE, **{k: v for k, v in fields.items() if k in _FORWARDED or k.startswith("JOURNALBAN_")})

    handler = JournalHandler(sender_function=send, SYSLOG_IDENTIFIER=IDENTIFIER)
    handler.setFormatter(logging.Formatter("%(message)s"))
    return handler


# what JournalHandler adds that is worth keeping; the rest of a record's attributes are left out
_FORWARDED = frozenset({"PRIORITY", "SYSLOG_IDENTIFIER", "LOGGER", "CODE_FILE", "CODE_LINE", "CODE_FUNC",
                        "THREAD_NAME", "EXCEPTION_TEXT"})


def setup(verbose: bool = False, target: str = "auto", journal_socket: Path = JOURNAL_SOCKET) -> str:
    """Send the process's log to the journal or to stderr; returns which one was chosen."""
    if target not in TARGETS:
        raise ValueError(f"log target must be one of {', '.join(TARGETS)}")
    chosen = target if target != "auto" else ("journal" if under_systemd() else "stderr")
    if chosen == "journal":
        handler = journal_handler(journal_socket)
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter(STDERR_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    return chosen
