"""A statement as a file: CSV (one row per line), JSON (the statement with its lines) or SAP (see `sap`)."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import Any

from resolvers.chargeback.sap import SapLayout, co_reposting, fi_journal
from resolvers.chargeback.statements import Statement
from resolvers.platform.config import SapSettings
from resolvers.platform.errors import InvalidInput
from resolvers.platform.spreadsheet import SafeWriter

LINE_COLUMNS = (
    "report_id",
    "period",
    "status",
    "position",
    "kind",
    "team_id",
    "allocation_type",
    "allocation_target",
    "percent",
    "cost_usd",
    "posted",
    "adjusts_period",
    "rule_id",
    "rule_name",
    "metadata",
)


class ChargebackFormat(StrEnum):
    CSV = "csv"
    JSON = "json"
    SAP = "sap"


def chargeback_format(value: str | None) -> ChargebackFormat:
    try:
        return ChargebackFormat((value or "csv").strip().lower())
    except ValueError:
        allowed = ", ".join(f.value for f in ChargebackFormat)
        raise InvalidInput("format", f"must be one of {allowed} (got {value!r})") from None


def sap_layout(value: str | None) -> SapLayout:
    try:
        return SapLayout((value or "fi").strip().lower())
    except ValueError:
        raise InvalidInput("layout", f"must be fi (FI journal) or co (CO reposting) (got {value!r})") from None


@dataclass(frozen=True)
class StatementFile:
    filename: str
    content_type: str
    chunks: Iterator[bytes]
    #: What the file posts (SAP: the cents of all documents; CSV/JSON: the statement's total with adjustments).
    control_total: Decimal
    documents: int


def _plain(value: Decimal) -> str:
    return format(value.normalize(), "f") if value else "0"


def statement_file(statement: Statement, fmt: ChargebackFormat, layout: SapLayout, sap: SapSettings) -> StatementFile:
    stem = f"chargeback_{statement.period}"
    grand_total = statement.total_cost + statement.adjustment_cost
    if fmt is ChargebackFormat.SAP:
        found = fi_journal(statement, sap) if layout is SapLayout.FI_JOURNAL else co_reposting(statement, sap)
        return StatementFile(
            f"{stem}_sap_{layout.value}.csv",
            "text/csv; charset=utf-8",
            found.chunks(),
            found.control_total,
            found.documents,
        )
    if fmt is ChargebackFormat.JSON:
        return StatementFile(f"{stem}.json", "application/json", _json(statement), grand_total, 1)
    return StatementFile(f"{stem}.csv", "text/csv; charset=utf-8", _csv(statement), grand_total, 1)


def _records(statement: Statement) -> Iterator[dict[str, Any]]:
    for position, line in enumerate(statement.lines, start=1):
        yield {
            "position": position,
            "kind": line.kind.value,
            "team_id": line.team_id,
            "allocation_type": line.allocation_type.value if line.allocation_type else None,
            "allocation_target": line.allocation_target,
            "percent": _plain(line.percent),
            "cost_usd": _plain(line.cost),
            "posted": line.posted,
            "adjusts_period": line.adjusts_period,
            "rule_id": line.rule_id,
            "rule_name": line.rule_name,
            "metadata": line.metadata,
        }


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True) if value else ""
    return str(value)


def _csv(statement: Statement) -> Iterator[bytes]:
    buffer = io.StringIO()
    writer = SafeWriter(buffer, lineterminator="\n")
    writer.writerow(LINE_COLUMNS)
    head = [statement.id, statement.period, statement.status.value]
    for n, record in enumerate(_records(statement), start=1):
        writer.writerow(head + [_cell(record[c]) for c in LINE_COLUMNS[3:]])
        if n % 500 == 0:
            yield buffer.getvalue().encode()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue().encode()


def statement_json(statement: Statement) -> dict[str, Any]:
    """The statement as the REST API shows it (snake_case; money as exact decimal strings inside files)."""
    return {
        "id": statement.id,
        "period": statement.period,
        "status": statement.status.value,
        "currency": "USD",
        "total_cost": _plain(statement.total_cost),
        "allocated_cost": _plain(statement.allocated_cost),
        "unallocated_cost": _plain(statement.unallocated_cost),
        "adjustment_cost": _plain(statement.adjustment_cost),
        "revision": statement.revision,
        "generated_at": statement.generated_at.isoformat(),
        "finalized_at": statement.finalized_at.isoformat() if statement.finalized_at else None,
        "by_type": [
            {
                "allocation_type": t.allocation_type.value,
                "allocated": _plain(t.allocated),
                "unallocated": _plain(t.unallocated),
            }
            for t in statement.by_type
        ],
        "lines": list(_records(statement)),
    }


def _json(statement: Statement) -> Iterator[bytes]:
    yield json.dumps(statement_json(statement), indent=1).encode()
