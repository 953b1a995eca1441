"""One way to print a table: `rich` on a terminal, plain aligned text otherwise.

Plain text is what scripts, logs and tests read (columns separated by two spaces), so it
stays stable; the terminal gets borders and colour.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from typing import TextIO


def plain(columns: Sequence[str], rows: Sequence[Mapping[str, str]]) -> str:
    widths = {c: max(len(c), *(len(r.get(c, "")) for r in rows)) for c in columns}
    lines = ["  ".join(c.ljust(widths[c]) for c in columns)]
    lines += ["  ".join(r.get(c, "").ljust(widths[c]) for c in columns) for r in rows]
    return "\n".join(line.rstrip() for line in lines)


def show(
    columns: Sequence[str],
    rows: Sequence[Mapping[str, str]],
    title: str = "",
    out: TextIO | None = None,
) -> None:
    out = out or sys.stdout
    if not out.isatty():
        print(plain(columns, rows), file=out)  # the header line first, as scripts expect
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title or None, title_justify="left")
    for column in columns:
        table.add_column(column, no_wrap=True)
    for row in rows:
        table.add_row(*(row.get(c, "") for c in columns))
    Console(file=out).print(table)
