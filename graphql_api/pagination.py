"""The Connection shape every growing list shares: `edges { cursor node }` and `pageInfo { hasNextPage endCursor }`.

One generic type for all of them (Strawberry names each use after its node: `AlertConnection`, `AlertEdge`); the
cursors and page slicing are the domain's (resolvers/platform/pages.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Generic, TypeVar

import strawberry

from resolvers.platform.pages import Page

N = TypeVar("N")

First = Annotated[int, strawberry.argument(description="How many rows (1 to 200).")]
After = Annotated[
    str | None, strawberry.argument(description="The endCursor of the previous page; leave out for the newest rows.")
]


@strawberry.type(description="Where a page ends and whether another follows.")
class PageInfo:
    has_next_page: bool
    end_cursor: str | None = strawberry.field(description="Pass as `after` to read the next page.")


@strawberry.type
class Edge(Generic[N]):
    cursor: str
    node: N


@strawberry.type
class Connection(Generic[N]):
    edges: list[Edge[N]]
    page_info: PageInfo


def connection(page: Page[Any], convert: Callable[[Any], N]) -> Connection[N]:
    return Connection(
        edges=[Edge(cursor=e.cursor, node=convert(e.node)) for e in page.edges],
        page_info=PageInfo(has_next_page=page.has_next_page, end_cursor=page.end_cursor),
    )
