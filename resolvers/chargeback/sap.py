"""SAP exports of a statement (CSV, one row per line item, headers = SAP technical field names):

- FI_JOURNAL: a general-ledger journal for BAPI_ACC_DOCUMENT_POST / "Upload General Journal Entries" (F2548):
  `DOC_KEY, BUKRS, BLDAT, BUDAT, BLART, WAERS, XBLNR, BKTXT, ITEMNO_ACC, HKONT, SHKZG, WRBTR, KOSTL, AUFNR,
  PS_POSID, PRCTR, SGTXT, ZUONR`. One document per company code (split at 999 items): each consuming cost
  center, WBS element or order is debited (S), the central AI/IT cost center credited (H), so every document
  balances.
- CO_REPOSTING: a manual reposting of primary costs (KB11N, BAPI_ACC_PRIMARY_COSTS_POST): `KOKRS, BLDAT, BUDAT,
  BLTXT, SEND_KOSTL, KSTAR, WTGBTR, TWAER, REC_KOSTL, REC_AUFNR, REC_POSID, SGTXT`, moving cost from the central
  cost center to the receivers without touching G/L balances.

Only posted allocation lines (and allocated adjustments) go to SAP; unallocated spend stays on the central cost
center. Amounts are cents (SAP's USD has two decimals): lines are rounded by largest remainders so they add up
to the exact total rounded once. Codes come from the rule's metadata (company_code, gl_account, cost_element,
sap_cost_center, sap_internal_order, sap_wbs_element, sap_profit_center, controlling_area), else from the
SPENDPLANE_SAP_* settings, always as text: every cell is quoted, so leading zeros survive.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from enum import StrEnum

from resolvers.chargeback.rules import SAP_KEYS, AllocationType
from resolvers.chargeback.splitting import LineKind, StatementLine
from resolvers.chargeback.statements import Statement
from resolvers.platform.config import SAP_DATE_FORMATS, SapSettings
from resolvers.platform.errors import InvalidInput
from resolvers.platform.spreadsheet import SafeWriter

NANOS_PER_CENT = 10**7
MAX_DOCUMENT_ITEMS = 999  # BSEG's line-item limit per FI document

FI_COLUMNS = (
    "DOC_KEY",
    "BUKRS",
    "BLDAT",
    "BUDAT",
    "BLART",
    "WAERS",
    "XBLNR",
    "BKTXT",
    "ITEMNO_ACC",
    "HKONT",
    "SHKZG",
    "WRBTR",
    "KOSTL",
    "AUFNR",
    "PS_POSID",
    "PRCTR",
    "SGTXT",
    "ZUONR",
)
CO_COLUMNS = (
    "KOKRS",
    "BLDAT",
    "BUDAT",
    "BLTXT",
    "SEND_KOSTL",
    "KSTAR",
    "WTGBTR",
    "TWAER",
    "REC_KOSTL",
    "REC_AUFNR",
    "REC_POSID",
    "SGTXT",
)


class SapLayout(StrEnum):
    FI_JOURNAL = "fi"
    CO_REPOSTING = "co"


@dataclass(frozen=True)
class Posting:
    """One receiving line with its amount in cents and its SAP account assignment."""

    line: StatementLine
    cents: int
    company_code: str
    controlling_area: str
    gl_account: str
    cost_element: str
    cost_center: str
    internal_order: str
    wbs_element: str
    profit_center: str

    @property
    def text(self) -> str:
        what = f"AI usage {self.line.team_id or 'no team'} {format(self.line.percent.normalize(), 'f')}%"
        if self.line.kind is LineKind.ADJUSTMENT:
            what += f" late {self.line.adjusts_period}"
        return what[:50]


@dataclass(frozen=True)
class SapFile:
    layout: SapLayout
    rows: list[list[str]]
    control_total: Decimal
    documents: int

    def chunks(self, size: int = 500) -> Iterator[bytes]:
        columns = FI_COLUMNS if self.layout is SapLayout.FI_JOURNAL else CO_COLUMNS
        for start in range(-1, len(self.rows), size):
            buffer = io.StringIO()
            writer = SafeWriter(buffer, quoting=csv.QUOTE_ALL, lineterminator="\r\n")
            if start == -1:
                writer.writerow(columns)
                start = 0
            writer.writerows(self.rows[start : start + size])
            yield buffer.getvalue().encode()
            if start + size >= len(self.rows):
                return


def to_cents(nanos: Sequence[int]) -> list[int]:
    """Each amount in cents, adding up exactly to the total rounded once (largest remainders)."""
    floors = [n // NANOS_PER_CENT for n in nanos]
    target = int((Decimal(sum(nanos)) / NANOS_PER_CENT).quantize(Decimal(1), rounding=ROUND_HALF_EVEN))
    order = sorted(range(len(nanos)), key=lambda i: (-(nanos[i] - floors[i] * NANOS_PER_CENT), i))
    for i in order[: target - sum(floors)]:
        floors[i] += 1
    return floors


def postings(statement: Statement, sap: SapSettings) -> list[Posting]:
    lines = [x for x in statement.lines if x.posted and x.allocation_target is not None]
    out = []
    for line, cents in zip(lines, to_cents([x.cost_nanos for x in lines]), strict=True):
        if cents == 0:
            continue  # SAP refuses zero amounts; the cent went to another line
        meta = {k: v.strip() for k, v in line.metadata.items() if isinstance(v, str) and k in SAP_KEYS}
        for key, value in meta.items():
            if len(value) > SAP_KEYS[key]:
                raise InvalidInput(
                    "format",
                    f"rule {line.rule_name!r} has {key} {value!r}, longer than SAP's {SAP_KEYS[key]} characters: "
                    "fix the rule's metadata and regenerate, or export CSV or JSON",
                )
        target = line.allocation_target or ""
        is_project = line.allocation_type is AllocationType.PROJECT
        out.append(
            Posting(
                line=line,
                cents=cents,
                company_code=meta.get("company_code", sap.company_code),
                controlling_area=meta.get("controlling_area", sap.controlling_area),
                gl_account=meta.get("gl_account", sap.gl_account),
                cost_element=meta.get("cost_element", sap.cost_element),
                cost_center=meta.get("sap_cost_center", "" if is_project else target),
                internal_order=meta.get("sap_internal_order", ""),
                wbs_element=meta.get("sap_wbs_element", target if is_project else ""),
                profit_center=meta.get("sap_profit_center", ""),
            )
        )
    return out


def _amount(cents: int) -> str:
    return f"{abs(cents) // 100}.{abs(cents) % 100:02d}"


def _dates(statement: Statement, sap: SapSettings) -> str:
    first = date.fromisoformat(f"{statement.period}-01")
    last = (first + timedelta(days=32)).replace(day=1) - timedelta(days=1)
    return last.strftime(SAP_DATE_FORMATS[sap.date_format])


def fi_journal(statement: Statement, sap: SapSettings) -> SapFile:
    posting_date = _dates(statement, sap)
    header = f"AI chargeback {statement.period}"[:25]
    reference = f"CB{statement.period}"[:16]
    rows: list[list[str]] = []
    documents = 0
    by_company: dict[str, list[Posting]] = {}
    for p in postings(statement, sap):
        by_company.setdefault(p.company_code, []).append(p)
    for company, items in sorted(by_company.items()):
        for start in range(0, len(items), MAX_DOCUMENT_ITEMS - 1):
            documents += 1
            key = f"{statement.period}-{documents:03d}"
            batch = items[start : start + MAX_DOCUMENT_ITEMS - 1]
            common = [key, company, posting_date, posting_date, sap.document_type, "USD", reference, header]
            for n, p in enumerate(batch, start=1):
                rows.append(
                    [
                        *common,
                        f"{n:010d}",
                        p.gl_account,
                        "S" if p.cents > 0 else "H",
                        _amount(p.cents),
                        p.cost_center,
                        p.internal_order,
                        p.wbs_element,
                        p.profit_center,
                        p.text,
                        (p.line.team_id or "")[:18],
                    ]
                )
            balance = sum(p.cents for p in batch)
            rows.append(
                [
                    *common,
                    f"{len(batch) + 1:010d}",
                    sap.gl_account,
                    "H" if balance > 0 else "S",
                    _amount(balance),
                    sap.sender_cost_center,
                    "",
                    "",
                    "",
                    f"AI chargeback {statement.period} central offset"[:50],
                    statement.period,
                ]
            )
    total = sum(p.cents for p in postings(statement, sap))
    return SapFile(SapLayout.FI_JOURNAL, rows, Decimal(total).scaleb(-2), documents)


def co_reposting(statement: Statement, sap: SapSettings) -> SapFile:
    posting_date = _dates(statement, sap)
    header = f"AI chargeback {statement.period}"[:25]
    rows = []
    items = postings(statement, sap)
    for p in items:
        rows.append(
            [
                p.controlling_area,
                posting_date,
                posting_date,
                header,
                sap.sender_cost_center,
                p.cost_element,
                ("-" if p.cents < 0 else "") + _amount(p.cents),
                "USD",
                p.cost_center,
                p.internal_order,
                p.wbs_element,
                p.text,
            ]
        )
    return SapFile(SapLayout.CO_REPOSTING, rows, Decimal(sum(p.cents for p in items)).scaleb(-2), 1 if rows else 0)
