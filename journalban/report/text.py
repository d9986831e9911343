"""The report as text: bar charts, and tables drawn by rich on a terminal or plainly aligned
for a pipe or a file (``rich=False``, what ``-o FILE`` writes)."""

from collections import defaultdict
from collections.abc import Sequence

from journalban.control.tables import drawn, printable
from journalban.report.data import NUMBER_TYPES, ReportData, Table, format_cell

BAR_WIDTH = 40
CELL_WIDTH = 100  # a longer cell (a ban's reason) is cut, so rows stay one line


def render_text(data: ReportData, rich: bool = False) -> str:
    heading = data.heading
    lines = [f"journalban report: {heading['since']} to {heading['until']} UTC, jail {heading['jail']}, "
             f"host {heading['host']}", ""]
    table_lines = _rich_table if rich else _table
    lines += table_lines(Table("summary", "Summary", ("figure", "count"), data.summary))
    timeline = data.table("timeline")
    lines += _bars(f"Failures per {data.bucket}", _per_bucket(timeline, "failures"))
    lines += _bars(f"Bans per {data.bucket}", _per_bucket(timeline, "bans"))
    hosts = data.table("hosts")
    lines += _bars("Failures per host", list(zip(map(str, hosts.column("host")), _ints(hosts.column("failures")),
                                                 strict=True)))
    lines += _bars("Bans per host", list(zip(map(str, hosts.column("host")), _ints(hosts.column("bans")),
                                             strict=True)))
    hours = data.table("hours")
    lines += _bars("Failures by hour of day (UTC)", list(zip(map(str, hours.column("hour")),
                                                            _ints(hours.column("failures")), strict=True)))
    durations = data.table("ban_durations")
    lines += _bars("Bans by ban time", list(zip(map(str, durations.column("ban_time")),
                                               _ints(durations.column("bans")), strict=True)))
    for table in data.tables:
        lines += table_lines(table)
    return "\n".join(lines).rstrip() + "\n"


def _per_bucket(timeline: Table, column: str) -> list[tuple[str, int]]:
    """A column of the timeline summed over jails: one bar per bucket."""
    sums: dict[str, int] = defaultdict(int)
    for record in timeline.records():
        sums[str(record["bucket"])] += int(record[column] or 0)
    return list(sums.items())


def _ints(cells: Sequence[object]) -> list[int]:
    return [int(c) if isinstance(c, int) else 0 for c in cells]


def _table(table: Table) -> list[str]:
    """Columns padded to their widest cell; numbers right-aligned, text left."""
    cells = [list(table.columns)] + [[_cut(format_cell(c)) for c in row] for row in table.rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(table.columns))]
    numeric = [bool(table.rows) and all(isinstance(row[i], NUMBER_TYPES) for row in table.rows)
               for i in range(len(table.columns))]
    out = [table.title, "-" * len(table.title)]
    for row in cells:
        out.append("  ".join(c.rjust(w) if n else c.ljust(w)
                             for c, w, n in zip(row, widths, numeric, strict=True)).rstrip())
    if not table.rows:
        out.append("(none)")
    return [*out, ""]


def _rich_table(table: Table) -> list[str]:
    numeric = [bool(table.rows) and all(isinstance(row[i], NUMBER_TYPES) for row in table.rows)
               for i in range(len(table.columns))]
    rows = [[_cut(format_cell(c)) for c in row] for row in table.rows]
    return [drawn(table.columns, rows, title=table.title, numeric=numeric) + ("\n(none)" if not rows else ""), ""]


def _bars(title: str, values: list[tuple[str, int]]) -> list[str]:
    """One bar per label, scaled so the largest fills ``BAR_WIDTH`` characters."""
    out = [title, "-" * len(title)]
    if not values:
        return [*out, "(none)", ""]
    largest = max(v for _, v in values) or 1
    label_width = max(len(label) for label, _ in values)
    number_width = max(len(str(v)) for _, v in values)
    for label, value in values:
        bar = "#" * round(BAR_WIDTH * value / largest)
        out.append(f"{label.ljust(label_width)}  {str(value).rjust(number_width)}  {bar}".rstrip())
    return [*out, ""]


def _cut(cell: str) -> str:
    cell = printable(cell)  # a client's escape sequence, shown, never sent to the terminal
    return cell if len(cell) <= CELL_WIDTH else cell[:CELL_WIDTH - 3] + "..."
