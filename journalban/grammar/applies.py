"""``applies`` statements to a selector: which events a grammar is allowed to see.

Selecting events is a security decision, not a convenience: a journal entry is
only as trustworthy as the fields that chose it. Any local user can set
``SYSLOG_IDENTIFIER`` (``logger -t sshd``) and any process can rename itself
(``_COMM``), so a journal selector must name a field journald itself records
from the sender's credentials. All checks happen here, at load.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from .errors import GrammarError
from .model import Setting, Word

Fail = Callable[[int, str], GrammarError]
JournalMatches = tuple[tuple[tuple[str, str], ...], ...]

# Fields journald fills in from the sender's credentials; a sender cannot forge them.
TRUSTED_FIELDS = frozenset({"_SYSTEMD_UNIT", "_EXE", "_UID", "_SYSTEMD_USER_UNIT"})
# Fields any sender chooses; naming one needs a trusted field strong enough to pin the sender.
FORGEABLE_NAMES = frozenset({"SYSLOG_IDENTIFIER", "_COMM"})
_JOURNAL_FIELD = re.compile(r"[A-Z_][A-Z0-9_]*")
_APP_NAME = re.compile(r"[^\s\[\]:]+")
LEDGER_SOURCE = "ledger"  # Event.source of a ban fed from the ledger
KINDS = ("file", "syslog", "journal", "ledger")
FILE_FORMATS = ("raw", "fail2ban")  # ``applies file format=...``: what the file source hands the rules


@dataclass(frozen=True, slots=True)
class Selector:
    """What the ``applies`` lines of one grammar select, ready for ``selects``.

    ``source_kind`` names the kinds joined by ``+`` in the order file, syslog,
    journal, ledger ("file", "syslog+journal", "file+syslog", "ledger", ...);
    ``file_format`` is "raw", "fail2ban" (file lines with their date cut out, as
    fail2ban's regexes see them; ``datepattern`` says where the date is), "syslog"
    (file lines whose syslog header the file source strips) or "none" (no file
    feeds this grammar).
    """

    source_kind: str
    file_format: str
    journal_matches: JournalMatches = ()
    syslog_apps: frozenset[str] = frozenset()
    reads_ledger: bool = False  # the bans the ledger records (journalban.sources.ledger_bans)
    datepattern: str | None = None  # fail2ban's, one format a line; None: its default dates

    def selects(self, source: str, app: str | None, fields: Mapping[str, str]) -> bool:
        """Journal events only through a journal group, ledger bans only through
        ``applies ledger``; others by file origin (raw) or app name."""
        if source == "journal":
            return any(
                all(fields.get(name) == value for name, value in group)
                for group in self.journal_matches
            )
        if source == LEDGER_SOURCE:
            return self.reads_ledger
        if self.file_format in FILE_FORMATS and source.startswith("file:"):
            return True
        return app is not None and app in self.syslog_apps


def _file(setting: Setting, fail: Fail) -> str:
    file_format = "raw"
    for key, value in setting.options:
        if key.text != "format":
            raise fail(key.offset, f"unknown option {key.text!r} for 'applies file'; expected format")
        if value.text == "syslog":
            raise fail(
                value.offset,
                "'applies file format=syslog' is replaced by 'applies syslog app=NAME': "
                "name the apps whose lines this grammar reads",
            )
        if value.text not in FILE_FORMATS:
            raise fail(value.offset, f"unknown format {value.text!r}; expected {' or '.join(FILE_FORMATS)}")
        file_format = value.text
    if not setting.options:
        raise fail(setting.keyword.offset, "'applies file' needs format=raw or format=fail2ban")
    return file_format


def _syslog(setting: Setting, fail: Fail) -> frozenset[str]:
    apps: set[str] = set()
    for key, value in setting.options:
        if key.text != "app":
            raise fail(key.offset, f"unknown option {key.text!r} for 'applies syslog'; expected app")
        if not _APP_NAME.fullmatch(value.text):
            raise fail(value.offset, f"bad app name {value.text!r}: no spaces, '[', ']' or ':'")
        apps.add(value.text)
    if not apps:
        raise fail(setting.keyword.offset, "'applies syslog' needs at least one app=NAME")
    return frozenset(apps)


def _journal(setting: Setting, fail: Fail) -> tuple[tuple[str, str], ...]:
    source = setting.values[0]
    pairs: dict[str, Word] = {}
    for key, value in setting.options:
        if not _JOURNAL_FIELD.fullmatch(key.text):
            raise fail(key.offset, f"{key.text!r} is not a journald field name (A-Z, 0-9, _)")
        if key.text in pairs:
            raise fail(
                key.offset,
                f"{key.text} named twice on one line, which can never match; "
                "write one 'applies journal' line per value to accept either",
            )
        pairs[key.text] = value
    if not pairs:
        raise fail(setting.keyword.offset, "'applies journal' needs at least one FIELD=VALUE")
    if not TRUSTED_FIELDS & pairs.keys():
        raise fail(
            source.offset,
            "a journal selector must name a field journald sets itself "
            f"({', '.join(sorted(TRUSTED_FIELDS))}): any other field the sender chooses",
        )
    uid = pairs.get("_UID")
    pinned = "_SYSTEMD_UNIT" in pairs or "_EXE" in pairs or (uid is not None and uid.text == "0")
    for key, _ in setting.options:
        if key.text in FORGEABLE_NAMES and not pinned:
            raise fail(
                key.offset,
                f"{key.text} can be set by any local user (logger -t, renaming a process); "
                "also name _SYSTEMD_UNIT, _EXE or _UID=0 on this line",
            )
    return tuple((name, value.text) for name, value in pairs.items())


def build_selector(settings: Sequence[Setting], fail: Fail) -> Selector:
    """Check every ``applies`` line of a grammar and combine them into one selector."""
    kinds: dict[str, Setting] = {}
    groups: list[tuple[tuple[str, str], ...]] = []
    apps: frozenset[str] = frozenset()
    file_format = "syslog"
    for setting in settings:
        source = setting.values[0]
        if source.text not in KINDS:
            raise fail(source.offset, f"unknown source {source.text!r}; expected {', '.join(KINDS)}")
        if source.text != "journal" and source.text in kinds:
            raise fail(setting.keyword.offset, f"a second 'applies {source.text}' line")
        if source.text == "file":
            file_format = _file(setting, fail)
        elif source.text == "syslog":
            apps = _syslog(setting, fail)
        elif source.text == "journal":
            groups.append(_journal(setting, fail))
        elif setting.options:
            raise fail(setting.options[0][0].offset, "'applies ledger' takes no options")
        kinds.setdefault(source.text, setting)
    kind = "+".join(name for name in KINDS if name in kinds)
    if "file" not in kinds:
        file_format = "syslog" if apps else "none"
    return Selector(kind, file_format, tuple(groups), apps, "ledger" in kinds)
