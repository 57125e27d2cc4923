"""CSV that a spreadsheet opens as data, never as formulas: the one writer every CSV-ish export uses.

Team, user, model and provider ids come from clients, so a cell could read `=HYPERLINK(...)`, `@SUM(...)` or
`+cmd|...`, which Excel, LibreOffice and Google Sheets would evaluate. OWASP's rule (CSV injection): a text cell
that begins with `=`, `+`, `-`, `@`, a tab or a carriage return gets a leading single quote, which spreadsheets
show as text. A cell that is a plain number (`-12.50`, `+3`, `1e-9`) stays as it is, so amounts remain numbers.
The cost CSV and FOCUS exports, the chargeback CSV and both SAP files are written through `SafeWriter`; the JSON
exports are not CSV and are left unchanged.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable
from typing import Any

#: What may start a formula (OWASP's list).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")


def neutralise(cell: str) -> str:
    """The cell as a spreadsheet should show it: a formula-looking text cell quoted with `'`, numbers as they are."""
    if cell.startswith(FORMULA_STARTS) and not _NUMBER.fullmatch(cell):
        return "'" + cell
    return cell


class SafeWriter:
    """`csv.writer` whose every cell goes through `neutralise` (same arguments as `csv.writer`)."""

    def __init__(self, stream: Any, **options: Any) -> None:
        self._writer = csv.writer(stream, **options)

    def writerow(self, row: Iterable[object]) -> None:
        self._writer.writerow([neutralise(cell) if isinstance(cell, str) else cell for cell in row])

    def writerows(self, rows: Iterable[Iterable[object]]) -> None:
        for row in rows:
            self.writerow(row)
