"""Cost report exports as files: CSV, JSON and FOCUS 1.2 (CSV), streamed in chunks over a server-side cursor so
an export of any size never sits in memory whole.

CSV and JSON hold one row per day (of the report's time zone) x team x user x model group x model x provider;
FOCUS one row per day x provider x model x token meter (see `resolvers.reports.focus`).
"""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from urllib.parse import urlencode

from sqlalchemy.ext.asyncio import AsyncSession

from models.types import nanos_to_usd
from resolvers.platform.errors import InvalidInput, ResponseBudget
from resolvers.platform.spreadsheet import SafeWriter
from resolvers.reports import ReportWindow
from resolvers.reports.focus import COLUMNS as FOCUS_COLUMNS
from resolvers.reports.focus import focus_rows
from resolvers.rollups import Dim, Filters, SpendSource, Totals, stream_aggregate

CHUNK_ROWS = 1000
EXPORT_PATH = "/api/v1/reports/export"

CSV_COLUMNS = (
    "date",
    "team_id",
    "user_id",
    "model_group",
    "model",
    "provider",
    "requests",
    "failed_requests",
    "input_tokens",
    "output_tokens",
    "cost_usd",
)
_GRAIN = (Dim.DAY, Dim.TEAM, Dim.USER, Dim.MODEL_GROUP, Dim.MODEL, Dim.PROVIDER)
_FOCUS_GRAIN = (Dim.DAY, Dim.PROVIDER, Dim.MODEL)


class CostExportFormat(StrEnum):
    CSV = "csv"
    JSON = "json"
    FOCUS = "focus"


def export_format(value: str | None) -> CostExportFormat:
    try:
        return CostExportFormat((value or "csv").strip().lower())
    except ValueError:
        allowed = ", ".join(f.value for f in CostExportFormat)
        raise InvalidInput("format", f"must be one of {allowed} (got {value!r})") from None


@dataclass(frozen=True)
class CostExport:
    """What a download is: its format, window and filters; `chunks` produces the bytes."""

    format: CostExportFormat
    window: ReportWindow
    filters: Filters

    @property
    def filename(self) -> str:
        stem = "focus_cost" if self.format is CostExportFormat.FOCUS else "cost_report"
        extension = "json" if self.format is CostExportFormat.JSON else "csv"
        return f"{stem}_{self.window.start_date}_{self.window.end_date}.{extension}"

    @property
    def content_type(self) -> str:
        return "application/json" if self.format is CostExportFormat.JSON else "text/csv; charset=utf-8"

    @property
    def url(self) -> str:
        """The REST download of the same export (send the same bearer token)."""
        params = {"format": self.format.value, "period": self.window.period.value}
        if self.window.period.value == "custom":
            params |= {"start_date": str(self.window.start_date), "end_date": str(self.window.end_date)}
        params["time_zone"] = self.window.time_zone
        for name, value in (("team_id", self.filters.team_id), ("user_id", self.filters.user_id)):
            if value:
                params[name] = value
        if self.filters.model:
            params["model"] = self.filters.model
        return f"{EXPORT_PATH}?{urlencode(params)}"

    def chunks(self, session: AsyncSession, source: SpendSource) -> AsyncIterator[bytes]:
        if self.format is CostExportFormat.CSV:
            return _csv(session, source, self)
        if self.format is CostExportFormat.JSON:
            return _json(session, source, self)
        return _focus(session, source, self)


def _usd(nanos: int) -> str:
    return format(nanos_to_usd(nanos), "f")


def _cells(key: tuple[object, ...], t: Totals) -> list[str]:
    day, team, user, group, model, provider = key
    return [
        str(day),
        str(team or ""),
        str(user or ""),
        str(group or ""),
        str(model or ""),
        str(provider or ""),
        str(t.requests),
        str(t.failures),
        str(t.input_tokens),
        str(t.output_tokens),
        _usd(t.spend_nanos),
    ]


class _CsvBuffer:
    def __init__(self) -> None:
        self.buffer = io.StringIO()
        self.writer = SafeWriter(self.buffer, lineterminator="\n")
        self.rows = 0

    def write(self, row: Iterable[str]) -> bytes | None:
        self.writer.writerow(row)
        self.rows += 1
        return self.take() if self.rows % CHUNK_ROWS == 0 else None

    def take(self) -> bytes:
        data = self.buffer.getvalue().encode()
        self.buffer.seek(0)
        self.buffer.truncate()
        return data


async def _csv(session: AsyncSession, source: SpendSource, export: CostExport) -> AsyncIterator[bytes]:
    out = _CsvBuffer()
    out.write(CSV_COLUMNS)
    async for key, totals in stream_aggregate(
        session, source, export.window.days, _GRAIN, export.filters, export.window.zone
    ):
        chunk = out.write(_cells(key, totals))
        if chunk:
            yield chunk
    yield out.take()


async def _json(session: AsyncSession, source: SpendSource, export: CostExport) -> AsyncIterator[bytes]:
    """A JSON document streamed piece by piece; money as exact decimal numbers, totals after the rows."""
    head = {
        "period": export.window.period.value,
        "start_date": str(export.window.start_date),
        "end_date": str(export.window.end_date),
        "time_zone": export.window.time_zone,
        "team_id": export.filters.team_id,
        "user_id": export.filters.user_id,
        "model": export.filters.model,
        "currency": "USD",
    }
    yield (json.dumps(head)[:-1] + ', "rows": [').encode()
    total = Totals()
    pieces: list[str] = []
    separator = ""
    async for key, totals in stream_aggregate(
        session, source, export.window.days, _GRAIN, export.filters, export.window.zone
    ):
        cells = _cells(key, totals)
        record = dict(zip(CSV_COLUMNS[:6], cells[:6], strict=True))
        numbers = ", ".join(f'"{name}": {value}' for name, value in zip(CSV_COLUMNS[6:], cells[6:], strict=True))
        pieces.append(f"{separator}{json.dumps(record)[:-1]}, {numbers}}}")
        separator = ", "
        total.add(totals)
        if len(pieces) >= CHUNK_ROWS:
            yield "".join(pieces).encode()
            pieces = []
    pieces.append(
        f'], "total_cost": {_usd(total.spend_nanos)}, "total_requests": {total.requests}, '
        f'"total_failed_requests": {total.failures}, "total_input_tokens": {total.input_tokens}, '
        f'"total_output_tokens": {total.output_tokens}}}'
    )
    yield "".join(pieces).encode()


async def _focus(session: AsyncSession, source: SpendSource, export: CostExport) -> AsyncIterator[bytes]:
    out = _CsvBuffer()
    out.write(FOCUS_COLUMNS)
    async for (day, provider, model), totals in stream_aggregate(
        session, source, export.window.days, _FOCUS_GRAIN, export.filters, export.window.zone
    ):
        assert isinstance(day, date)
        for row in focus_rows(
            day, str(provider or ""), str(model or ""), totals, team_id=export.filters.team_id, zone=export.window.zone
        ):
            chunk = out.write(row[c] for c in FOCUS_COLUMNS)
            if chunk:
                yield chunk
    yield out.take()


async def export_text(
    session: AsyncSession,
    source: SpendSource,
    export: CostExport,
    *,
    max_bytes: int,
    budget: ResponseBudget | None = None,
    field: str = "content",
) -> str:
    """The whole file as text, for GraphQL callers; larger files must be downloaded from `export.url`. Each chunk
    is taken from the operation's response `budget` as it is read (ResponseTooLarge past it, naming `field`)."""
    parts: list[bytes] = []
    size = 0
    async for chunk in export.chunks(session, source):
        size += len(chunk)
        if size > max_bytes:
            raise InvalidInput(
                "format", f"the export is larger than {max_bytes} bytes: download it from {export.url} instead"
            )
        if budget is not None:
            budget.take(len(chunk), field)
        parts.append(chunk)
    return b"".join(parts).decode()
