"""Cursor pagination for every list that grows (requests, alerts, SLA violations, chargeback statements, spend
anomalies): one keyset implementation, reused by all of them.

A list is ordered newest first by a sort column and a unique tie-breaker (`Keyset`). A page is the next `first`
rows after a cursor: `WHERE (sort, id) < (cursor.sort, cursor.id) ORDER BY sort DESC, id DESC LIMIT first + 1`,
which an index on (sort, id) answers by a backward index scan at any depth (never OFFSET). The extra row only
says whether another page follows.

A cursor is opaque to clients (base64url of a small JSON array) but carries nothing secret: just the list's name
and the last row's position. It never carries a scope or a filter — those come from the caller's token and the
query's arguments on every request — so a forged or borrowed cursor can move the position, never widen what the
caller may see. A cursor from another list, or that does not decode, is refused as bad input naming `after`.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Generic, Literal, TypeVar

from sqlalchemy import Select, literal, tuple_
from sqlalchemy.orm import InstrumentedAttribute
from sqlalchemy.sql.elements import ColumnElement

from models.types import as_utc
from resolvers.platform.errors import InvalidInput

T = TypeVar("T")
U = TypeVar("U")
S = TypeVar("S", bound=Select[Any])

DEFAULT_PAGE = 50
MAX_PAGE = 200
#: A cursor is a few dozen bytes; anything much longer is not one of ours (and is not decoded).
MAX_CURSOR_CHARS = 512


@dataclass(frozen=True)
class Edge(Generic[T]):
    cursor: str
    node: T


@dataclass(frozen=True)
class Page(Generic[T]):
    edges: list[Edge[T]]
    has_next_page: bool

    @property
    def end_cursor(self) -> str | None:
        return self.edges[-1].cursor if self.edges else None

    def map(self, convert: Callable[[T], U]) -> Page[U]:
        return Page([Edge(e.cursor, convert(e.node)) for e in self.edges], self.has_next_page)


def empty_page() -> Page[Any]:
    return Page([], False)


SortKind = Literal["datetime", "text"]
Column = ColumnElement[Any] | InstrumentedAttribute[Any]


@dataclass(frozen=True)
class Keyset:
    """How one list is ordered: newest first by `sort`, ties broken by the unique `tiebreak` (both descending)."""

    name: str
    sort: Column
    tiebreak: Column
    sort_kind: SortKind = "datetime"

    # ------------------------------------------------------------------------------------------ cursors

    def encode(self, sort_value: Any, tiebreak_value: Any) -> str:
        if self.sort_kind == "datetime":
            assert isinstance(sort_value, datetime)
            value = as_utc(sort_value).isoformat()
        else:
            value = sort_value.isoformat() if isinstance(sort_value, date) else str(sort_value)
        raw = json.dumps([self.name, value, str(tiebreak_value)], separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    def decode(self, cursor: str) -> tuple[Any, str]:
        problem = "is not a cursor of this list (pass an endCursor this list returned, or leave it out)"
        if len(cursor) > MAX_CURSOR_CHARS:
            raise InvalidInput("after", problem)
        try:
            raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
            name, value, tiebreak = json.loads(raw)
            if name != self.name or not isinstance(value, str) or not isinstance(tiebreak, str):
                raise ValueError("another list's cursor")
            if self.sort_kind == "datetime":
                parsed = datetime.fromisoformat(value)
                if parsed.tzinfo is None:
                    raise ValueError("a cursor's time is always UTC")
                return as_utc(parsed), tiebreak
            return value, tiebreak
        except (binascii.Error, UnicodeDecodeError, ValueError, TypeError, OverflowError) as exc:
            raise InvalidInput("after", problem) from exc

    # ------------------------------------------------------------------------------------------ queries

    def apply(self, query: S, first: int, after: str | None) -> S:
        """The page's query: after the cursor, newest first, one row more than asked for."""
        first = page_size(first)
        if after is not None:
            sort_value, tiebreak_value = self.decode(after)
            position = tuple_(literal(sort_value, self.sort.type), literal(tiebreak_value, self.tiebreak.type))
            query = query.where(tuple_(self.sort, self.tiebreak) < position)
        return query.order_by(self.sort.desc(), self.tiebreak.desc()).limit(first + 1)

    def page(self, rows: Sequence[T], first: int, key: Callable[[T], tuple[Any, Any]]) -> Page[T]:
        """The page from the rows `apply`'s query returned; `key` gives a row's (sort, tiebreak) values."""
        first = page_size(first)
        shown = list(rows[:first])
        return Page([Edge(self.encode(*key(row)), row) for row in shown], len(rows) > first)


def page_size(first: int) -> int:
    if not 1 <= first <= MAX_PAGE:
        raise InvalidInput("first", f"must be from 1 to {MAX_PAGE} (got {first})")
    return first
