"""A line of a log file as an Event, by the file's format.

``raw``: the whole line is the message, stamped with the moment it was read.
``syslog``: the traditional ``Mmm dd hh:mm:ss host app[pid]: `` prefix (or its
RFC3339 form) gives time, host, app and pid, and the rest is the message.
"""

import dataclasses
from datetime import datetime

from journalban.events import Event
from journalban.sources.syslog import parse_file_line

FORMATS = ("raw", "syslog")


def line_event(source: str, line: str, file_format: str, read_time: datetime,
               trust_stamp: bool = True) -> Event | None:
    """None for a syslog-format line without a recognisable prefix; the header's
    stamp is the event time only where ``trust_stamp``, else ``read_time``."""
    if file_format == "raw":
        return Event(time=read_time, source=source, message=line)
    parsed = parse_file_line(line, read_time)
    if parsed is None:
        return None
    event = parsed.to_event(source)
    return event if trust_stamp else dataclasses.replace(event, time=read_time)
