"""The syslog source: RFC 5424/3164 parsing, RFC 6587 framing and an asyncio listener.

Parsing and framing are pure; ``listener`` is the only module that does I/O.
"""

from journalban.sources.syslog.framing import StreamDecoder
from journalban.sources.syslog.listener import SyslogListener
from journalban.sources.syslog.message import Malformed, SDElement, SyslogMessage
from journalban.sources.syslog.parse import parse_message
from journalban.sources.syslog.rfc3164 import parse_file_line

__all__ = [
    "Malformed",
    "SDElement",
    "StreamDecoder",
    "SyslogListener",
    "SyslogMessage",
    "parse_file_line",
    "parse_message",
]
