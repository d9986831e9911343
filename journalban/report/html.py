"""The report as one self-contained HTML file: inline CSS, inline SVG, nothing fetched.

It opens from disk on a host with no network, and can be mailed as it is.
"""

from collections import defaultdict
from html import escape

from journalban.report.data import NUMBER_TYPES, ReportData, Table, format_cell
from journalban.report.svg import bar_chart, hbar_chart, line_chart

STYLE = """
body { font-family: sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.15em; margin-top: 2em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: .5em 0; font-size: .9em; }
th, td { padding: .2em .7em; border-bottom: 1px solid #eee; text-align: left; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
.summary td { font-size: 1.1em; } svg { display: block; margin: 1em 0; }
"""


def text(value: str) -> str:
    """Escaped for HTML, colons too: a logged URL stays text, never something to fetch or follow."""
    return escape(value).replace(":", "&#58;")


def render_html(data: ReportData) -> str:
    heading = data.heading
    title = f"journalban report: {heading['since']} to {heading['until']} UTC"
    parts = ['<!DOCTYPE html>', '<html lang="en"><head><meta charset="utf-8">',
             f"<title>{escape(title)}</title>", f"<style>{STYLE}</style></head><body>",
             f"<h1>{escape(title)}</h1>",
             f"<p>Jail: {escape(heading['jail'])}; host: {escape(heading['host'])}; "
             f"generated {escape(heading['generated_at'])} UTC.</p>",
             _table(Table("summary", "Summary", ("figure", "count"), data.summary), "summary")]
    parts += _charts(data)
    for table in data.tables:
        parts.append(_table(table))
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _charts(data: ReportData) -> list[str]:
    timeline = data.table("timeline")
    buckets = list(dict.fromkeys(str(b) for b in timeline.column("bucket")))
    charts = ['<h2>Charts</h2>']
    for column in ("failures", "bans"):
        series: dict[str, list[int]] = defaultdict(lambda: [0] * len(buckets))
        for record in timeline.records():
            series[str(record["jail"])][buckets.index(str(record["bucket"]))] = int(record[column] or 0)
        if buckets:
            charts.append(line_chart(f"{column.capitalize()} per {data.bucket}, by jail", buckets, series))
    charts += _host_charts(data)
    hours = data.table("hours")
    charts.append(bar_chart("Failures by hour of day (UTC)", [str(h) for h in hours.column("hour")],
                            [int(v or 0) for v in hours.column("failures")]))
    for name, label, value in (("top_addresses", "address", "failures"), ("top_networks", "network", "failures"),
                               ("rules", "rule", "failures")):
        table = data.table(name)
        if table.rows:
            charts.append(hbar_chart(table.title, [str(c) for c in table.column(label)],
                                     [int(v or 0) for v in table.column(value)]))
    durations = data.table("ban_durations")
    charts.append(bar_chart("Bans by ban time", [str(c) for c in durations.column("ban_time")],
                            [int(v or 0) for v in durations.column("bans")]))
    return charts


def _host_charts(data: ReportData) -> list[str]:
    """Failures and bans per bucket, one line per host ([node] name): which host saw what."""
    timeline = data.table("host_timeline")
    buckets = list(dict.fromkeys(str(b) for b in timeline.column("bucket")))
    if not buckets:
        return []
    charts = []
    for column in ("failures", "bans"):
        series: dict[str, list[int]] = defaultdict(lambda: [0] * len(buckets))
        for record in timeline.records():
            series[str(record["host"])][buckets.index(str(record["bucket"]))] = int(record[column] or 0)
        charts.append(line_chart(f"{column.capitalize()} per {data.bucket}, by host", buckets, series))
    return charts


def _table(table: Table, css_class: str = "") -> str:
    numeric = [bool(table.rows) and all(isinstance(row[i], NUMBER_TYPES) for row in table.rows)
               for i in range(len(table.columns))]
    head = "".join(f"<th>{escape(c)}</th>" for c in table.columns)
    rows = []
    for row in table.rows:
        cells = "".join(f'<td class="n">{text(format_cell(c))}</td>' if n else f"<td>{text(format_cell(c))}</td>"
                        for c, n in zip(row, numeric, strict=True))
        rows.append(f"<tr>{cells}</tr>")
    body = "\n".join(rows) or f'<tr><td colspan="{len(table.columns)}">(none)</td></tr>'
    attribute = f' class="{css_class}"' if css_class else ""
    return (f'<h2>{escape(table.title)}</h2>\n<table id="{escape(table.name)}"{attribute}>\n'
            f"<thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody></table>")
