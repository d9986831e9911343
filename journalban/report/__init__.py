"""``journalban report``: what the ledger says, as text, JSON, CSV or self-contained HTML.

``journalban.report.collect`` is the data step (read-only queries, with SQLAlchemy: not
imported here, so the CLI starts without it); the renderers only lay its tables out.
"""

from journalban.report.data import ReportData, Table
from journalban.report.html import render_html
from journalban.report.machine import render_csv, render_json
from journalban.report.text import render_text

__all__ = ["ReportData", "Table", "render_csv", "render_html", "render_json", "render_text"]
