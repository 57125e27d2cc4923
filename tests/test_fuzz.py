"""Schemathesis fuzzes both faces on a real server over HTTP, as an admin, as a viewer and without a token: every
REST route from /openapi.json and every GraphQL query and mutation from schema.graphql. Whatever it sends, the
answer is documented (status, content type, body schema, `Allow` on a 405), never a 5xx or an
INTERNAL_SERVER_ERROR, and comes within 5 s. Bounded (`max_examples`) to about a minute; `scripts/fuzz` runs
the same checks with many more examples before a release (docs/commands.md)."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
import uvicorn
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from schemathesis import checks
from schemathesis.core.failures import Failure
from schemathesis.generation.case import Case

from graphql_api.app import create_app
from models.db import normalize_database_url, open_database
from resolvers.platform.config import Settings
from tests.conftest import MASTER_KEY
from tests.support import add_virtual_key
from webhook.openapi import build_openapi
from webhook.routes import ENDPOINTS

ROLES = ("admin", "viewer", "anonymous")
#: Examples per operation and role: small in the suite (about a minute in all), large from scripts/fuzz.
REST_EXAMPLES = int(os.environ.get("SPENDPLANE_FUZZ_REST_EXAMPLES", "4"))
GRAPHQL_EXAMPLES = int(os.environ.get("SPENDPLANE_FUZZ_GRAPHQL_EXAMPLES", "2"))
#: When set, the counts (operations, cases per face and role) are written there as JSON at the end.
COUNTS_FILE = os.environ.get("SPENDPLANE_FUZZ_COUNTS")
_cases: Counter[tuple[str, str]] = Counter()
_operations: dict[str, set[str]] = {"rest": set(), "graphql": set()}
#: Any answer slower than this fails the run (on a loaded CI machine too: it is a hang detector, not a benchmark).
SLOW_SECONDS = 5.0
VIEWER_KEY = "sk-fuzz-viewer"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _add_viewer(url: str) -> None:
    database = open_database(url)
    try:
        await add_virtual_key(database, VIEWER_KEY, user_id="fuzz-viewer", team_id="fuzz-team")
    finally:
        await database.dispose()


@pytest.fixture(scope="module", autouse=True)
def counts() -> Iterator[None]:
    yield
    if COUNTS_FILE:
        found = {
            "operations": {face: len(labels) for face, labels in _operations.items()},
            "cases": {f"{face} {role}": n for (face, role), n in sorted(_cases.items())},
        }
        Path(COUNTS_FILE).write_text(json.dumps(found, indent=2) + "\n")


@pytest.fixture(scope="module")
def live_server(migrated: str) -> Iterator[str]:
    url = normalize_database_url(migrated)
    # Its own loop in its own thread: the session's event loop belongs to the async tests.
    thread = threading.Thread(target=lambda: asyncio.run(_add_viewer(migrated)))
    thread.start()
    thread.join(30)
    app = create_app(Settings(database_url=url, litellm_master_key=MASTER_KEY, embedded=True, jobs_enabled=False))
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    runner = threading.Thread(target=server.run, daemon=True)
    runner.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    runner.join(10)


@pytest.fixture(scope="module")
def tokens(live_server: str) -> dict[str, str]:
    found = {}
    for role, key in (("admin", MASTER_KEY), ("viewer", VIEWER_KEY)):
        response = httpx.post(f"{live_server}/auth/login", json={"api_key": key}, timeout=30)
        assert response.status_code == 200, response.text
        found[role] = str(response.json()["access_token"])
    return found


def _headers(role: str, tokens: dict[str, str]) -> dict[str, str]:
    if role == "anonymous":
        return {}
    # The gateway's routes take the webhook key; the anonymous caller has none.
    headers = {"authorization": f"Bearer {tokens[role]}"}
    if role == "admin":
        headers["x-api-key"] = MASTER_KEY
    return headers


class SlowResponse(Failure):
    """An answer slower than SLOW_SECONDS."""

    code = "SPENDPLANE_SLOW"
    kind_title = "Slow response"


class GraphQLInternalError(Failure):
    """A GraphQL answer that is not a coded answer: a 5xx, a body that is no GraphQL response, an error without
    `extensions.code`, or INTERNAL_SERVER_ERROR (a bug, whatever the input)."""

    code = "SPENDPLANE_GRAPHQL"
    kind_title = "GraphQL internal error"


def answered_in_time(ctx: Any, response: Any, case: Case) -> bool | None:
    if response.elapsed > SLOW_SECONDS:
        raise SlowResponse(operation=case.operation.label, message=f"answered in {response.elapsed:.2f} s")
    return None


def graphql_answer_is_coded(ctx: Any, response: Any, case: Case) -> bool | None:
    """Refusals (NOT_FOUND, FORBIDDEN, BAD_USER_INPUT, UNAUTHENTICATED ...) are answers; schemathesis's own
    GraphQL check counts every error as a server error, so this one replaces it."""

    def fail(problem: str) -> None:
        raise GraphQLInternalError(operation=case.operation.label, message=problem[:2000])

    if response.status_code != 200:
        fail(f"HTTP {response.status_code}: {response.text[:500]}")
    body = response.json()
    if not isinstance(body, dict) or not ({"data", "errors"} & body.keys()):
        fail(f"not a GraphQL response: {response.text[:500]}")
    for error in body.get("errors") or []:
        code = (error.get("extensions") or {}).get("code")
        if code is None or code == "INTERNAL_SERVER_ERROR":
            fail(f"{code or 'uncoded'} error: {error}")
    return None


@schemathesis.serializer("application/x-ndjson")
def _ndjson(ctx: Any, value: Any) -> bytes:
    """The spend route's NDJSON body: text as it is, anything else one JSON document per line."""
    if isinstance(value, str):
        return value.encode()
    lines = value if isinstance(value, list) else [value]
    return b"\n".join(json.dumps(line).encode() for line in lines)


# The custom scalars, as a client sends them (exact decimals as text or numbers; any text, to be refused).
schemathesis.graphql.scalar(
    "Decimal",
    st.one_of(
        st.decimals(allow_nan=False, allow_infinity=False).map(str).map(schemathesis.graphql.nodes.String),
        st.integers().map(schemathesis.graphql.nodes.Int),
        st.text(max_size=20).map(schemathesis.graphql.nodes.String),
    ),
)

REST_CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
    checks.response_headers_conformance,
    answered_in_time,
]

# The document the server publishes at /openapi.json, loaded without a server so pytest can collect one test
# per operation.
rest = schemathesis.openapi.from_dict(build_openapi(ENDPOINTS))
graphql = schemathesis.graphql.from_path(str(Path(__file__).resolve().parent.parent / "schema.graphql"))


@pytest.mark.parametrize("role", ROLES)
@rest.parametrize()
@settings(max_examples=REST_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
def test_every_rest_route_answers_any_input_as_documented(
    case: Case, role: str, live_server: str, tokens: dict[str, str]
) -> None:
    _cases["rest", role] += 1
    _operations["rest"].add(case.operation.label)
    # A forged Content-Length never reaches the app: uvicorn refuses the framing itself (a text/plain 400).
    if case.headers:
        case.headers = {k: v for k, v in case.headers.items() if k.lower() != "content-length"}
    case.call_and_validate(base_url=live_server, headers=_headers(role, tokens), checks=REST_CHECKS, timeout=30)


@pytest.mark.parametrize("role", ROLES)
@graphql.parametrize()
@settings(max_examples=GRAPHQL_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
def test_every_graphql_field_answers_any_input_without_an_internal_error(
    case: Case, role: str, live_server: str, tokens: dict[str, str]
) -> None:
    _cases["graphql", role] += 1
    _operations["graphql"].add(case.operation.label)
    case.call_and_validate(
        base_url=f"{live_server}/graphql",
        headers=_headers(role, tokens),
        checks=[graphql_answer_is_coded, answered_in_time],
        timeout=30,
    )


def test_a_wrong_method_answers_405_with_every_documented_method_in_allow(live_server: str) -> None:
    document = build_openapi(ENDPOINTS)
    for path, operations in document["paths"].items():
        concrete = path.replace("{", "x").replace("}", "")
        documented = {method.upper() for method in operations}
        wrong = next(m for m in ("PATCH", "PUT", "DELETE", "POST") if m not in documented)
        response = httpx.request(wrong, f"{live_server}{concrete}", timeout=30)
        assert response.status_code == 405, (path, response.status_code)
        allowed = {m.strip() for m in response.headers["allow"].split(",")} - {"HEAD"}
        assert allowed == documented, (path, response.headers["allow"])
        assert response.json()["error"]["code"] == "METHOD_NOT_ALLOWED"
