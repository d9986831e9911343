"""The report for programs: JSON (one object) and CSV (long format, one value a row).

CSV columns are ``table,key,column,value``: ``table`` as in the JSON's ``tables``,
``key`` the row's key cells joined by ``/``, then one row per other column.
``summary`` rows hold single figures (key = figure, column = ``count``), and
``report`` rows say what the report covers.
"""

import csv
import io
import json

from journalban.report.data import Cell, ReportData, format_cell


def as_json_object(data: ReportData) -> dict[str, object]:
    return {"report": data.heading, "summary": dict(data.summary),
            "tables": {t.name: list(t.records()) for t in data.tables}}


def render_json(data: ReportData) -> str:
    return json.dumps(as_json_object(data), indent=2) + "\n"


def render_csv(data: ReportData) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(("table", "key", "column", "value"))
    for name, value in data.heading.items():
        writer.writerow(("report", name, "value", value))
    for figure, count in data.summary:
        writer.writerow(("summary", figure, "count", count))
    for table in data.tables:
        for row in table.rows:
            key = table.key(row)
            for column, cell in zip(table.columns[table.key_columns:], row[table.key_columns:], strict=True):
                writer.writerow((table.name, key, column, _csv_cell(cell)))
    return out.getvalue()


def _csv_cell(value: Cell) -> str:
    return "" if value is None else str(value) if not isinstance(value, float) else format_cell(value)
