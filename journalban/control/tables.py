"""Tables for a person at a terminal: rich's boxes, bold headers, numbers to the right.

A pipe or a file gets plain aligned columns instead (``render.table``,
``report.text``), which ``grep``, ``awk`` and diffs read easily. Whether stdout is a
terminal is rich's call: a tty, or ``FORCE_COLOR`` set to anything (``TTY_COMPATIBLE=0``
says no). Cells are ``rich.text.Text``, never markup, so a logged ``[client ...]`` stays
text; control characters a client put in its log line (an escape sequence to recolour or
clear the operator's terminal) are shown as ``\x1b``, never sent (``printable``).
"""

import io
import shutil
import sys
from collections.abc import Sequence

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

FALLBACK_WIDTH = 120  # when the terminal's size cannot be read (FORCE_COLOR into a pipe)


def on_terminal() -> bool:
    """Whether stdout is a terminal (or is to be treated as one), as rich decides it."""
    return Console(file=sys.stdout).is_terminal


def printable(cell: object) -> str:
    """``cell`` as text with every control character written out as its escape (``\x1b``)."""
    text = "" if cell is None else str(cell)
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def drawn(headers: Sequence[str], rows: Sequence[Sequence[object]], *, title: str | None = None,
          numeric: Sequence[bool] | None = None) -> str:
    """``rows`` under ``headers`` as a rich table, rendered to text with its terminal codes."""
    numeric = numeric or [bool(rows) and all(isinstance(r[i], int | float) for r in rows)
                          for i in range(len(headers))]
    table = Table(box=box.SIMPLE_HEAD, title=title, title_justify="left", title_style="bold",
                  header_style="bold cyan", show_edge=False)
    for header, is_number in zip(headers, numeric, strict=True):
        table.add_column(Text(header), justify="right" if is_number else "left", overflow="fold")
    for row in rows:
        table.add_row(*(Text(printable(cell)) for cell in row))
    out = io.StringIO()
    width = shutil.get_terminal_size((FALLBACK_WIDTH, 24)).columns
    Console(file=out, force_terminal=True, width=width, highlight=False, soft_wrap=False).print(table)
    return out.getvalue().rstrip("\n")
