"""The generated tables of the docs: settings (from `resolvers.platform.config`), REST routes (from
`webhook.routes`) and GraphQL operations (from the schema), so the reference cannot drift from the code.

A page holds a table between two marker comments naming it:

    <!-- generated: rest-endpoints -->
    ...
    <!-- end: rest-endpoints -->

`spendplane docs-tables --write docs` refreshes every such block under docs/ (scripts/docs), `--check docs`
fails when one is stale (scripts/lint, so CI).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from graphql import GraphQLObjectType, build_schema

from resolvers.platform.settings_page import cell, settings_table

_BLOCK = re.compile(r"<!-- generated: (?P<name>[a-z-]+) -->\n.*?<!-- end: (?P=name) -->", re.DOTALL)

_AUTH = {
    "none": "none",
    "gateway": "`x-api-key` (the webhook key)",
    "jwt": "`Authorization: Bearer` JWT",
}


def rest_endpoints() -> str:
    from webhook.routes import ENDPOINTS

    rows = ["| method | path | auth | what | query |", "|---|---|---|---|---|"]
    for e in ENDPOINTS:
        query = ", ".join(f"`{name}`" for q in e.query for name in q.names)
        rows.append(f"| {e.method} | `{e.path}` | {_AUTH[e.auth]} | {cell(e.summary)} | {query} |")
    return "\n".join(rows) + "\n"


def _operations(root: GraphQLObjectType | None, title: str) -> list[str]:
    if root is None:
        return []
    rows = [f"**{title}**", "", "| field | returns | what |", "|---|---|---|"]
    for name, f in root.fields.items():
        args = ", ".join(f"{arg}: {a.type}" for arg, a in f.args.items())
        signature = f"{name}({args})" if args else name
        rows.append(f"| `{cell(signature)}` | `{cell(str(f.type))}` | {cell(f.description or '')} |")
    return [*rows, ""]


def graphql_operations() -> str:
    from graphql_api.schema import sdl

    schema = build_schema(sdl())
    rows = [
        *_operations(schema.query_type, "Queries"),
        *_operations(schema.mutation_type, "Mutations"),
        *_operations(schema.subscription_type, "Subscriptions (graphql-transport-ws on `/graphql`)"),
    ]
    return "\n".join(rows)


RENDERERS: dict[str, Callable[[], str]] = {
    "settings-table": settings_table,
    "rest-endpoints": rest_endpoints,
    "graphql-operations": graphql_operations,
}


def refresh(page: str) -> str:
    """`page` with every generated block rendered afresh (ValueError naming an unknown block)."""

    def render(match: re.Match[str]) -> str:
        name = match["name"]
        if name not in RENDERERS:
            raise ValueError(f"unknown generated block {name!r} (known: {', '.join(RENDERERS)})")
        return f"<!-- generated: {name} -->\n\n{RENDERERS[name]().rstrip()}\n\n<!-- end: {name} -->"

    return _BLOCK.sub(render, page)


def stale_pages(docs: Path, *, write: bool) -> list[Path]:
    """The pages under `docs` whose generated blocks are not what the code says (rewritten when `write`)."""
    stale = []
    for page in sorted(docs.rglob("*.md")):
        current = page.read_text()
        fresh = refresh(current)
        if fresh != current:
            stale.append(page)
            if write:
                page.write_text(fresh)
    return stale
