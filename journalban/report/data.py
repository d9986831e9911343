"""What a report holds: plain tables of numbers, the same for every format.

``collect`` fills a ``ReportData``; each renderer only lays it out, so text, JSON,
CSV and HTML cannot disagree on a number.
"""

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

Cell = str | int | float | None
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"  # UTC, in every format alike


@dataclass(frozen=True, slots=True)
class Table:
    """A titled table; the first ``key_columns`` columns name a row."""

    name: str
    title: str
    columns: tuple[str, ...]
    rows: tuple[tuple[Cell, ...], ...]
    key_columns: int = 1

    def key(self, row: tuple[Cell, ...]) -> str:
        return "/".join(format_cell(c) for c in row[:self.key_columns])

    def column(self, name: str) -> list[Cell]:
        index = self.columns.index(name)
        return [row[index] for row in self.rows]

    def records(self) -> Iterator[dict[str, Cell]]:
        for row in self.rows:
            yield dict(zip(self.columns, row, strict=True))


@dataclass(frozen=True, slots=True)
class ReportData:
    """A report over ``since``..``until`` (UTC), by ``bucket`` ("hour" or "day")."""

    generated_at: datetime
    since: datetime
    until: datetime
    jail: str | None
    host: str | None
    bucket: str
    summary: tuple[tuple[str, int], ...]
    tables: tuple[Table, ...]

    def table(self, name: str) -> Table:
        for table in self.tables:
            if table.name == name:
                return table
        raise KeyError(name)

    @property
    def heading(self) -> dict[str, str]:
        """What the report covers, as the line above every format's numbers."""
        return {"generated_at": self.generated_at.strftime(TIME_FORMAT), "since": self.since.strftime(TIME_FORMAT),
                "until": self.until.strftime(TIME_FORMAT), "jail": self.jail or "all", "host": self.host or "all",
                "bucket": self.bucket}


def format_cell(value: Cell) -> str:
    """A cell as text and HTML show it: the same digits JSON and CSV carry."""
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.1f}"
    return str(value)


NUMBER_TYPES = (int, float)  # cells aligned right and charted
