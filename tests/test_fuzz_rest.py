"""Schemathesis fuzzes every REST route from the OpenAPI document, on a real server over HTTP: whatever it
sends, the answer is a documented status with a JSON body that matches the document — never a 500."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
import schemathesis
import uvicorn
from hypothesis import HealthCheck, settings
from schemathesis import checks
from schemathesis.generation.case import Case

from graphql_api.app import create_app
from models.db import normalize_database_url
from resolvers.config import Settings
from tests.conftest import MASTER_KEY
from webhook.openapi import build_openapi
from webhook.routes import ENDPOINTS


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def live_server(migrated: str) -> Iterator[str]:
    app = create_app(
        Settings(database_url=normalize_database_url(migrated), litellm_master_key=MASTER_KEY, embedded=True)
    )
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


@pytest.fixture(scope="module")
def admin_token(live_server: str) -> str:
    response = httpx.post(f"{live_server}/auth/login", json={"api_key": MASTER_KEY})
    return str(response.json()["access_token"])


# The document the server publishes at /openapi.json, loaded without a server so pytest can collect one test
# per operation.
schema = schemathesis.openapi.from_dict(build_openapi(ENDPOINTS))


@schema.parametrize()
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
def test_the_rest_shim_answers_every_input_with_a_documented_4xx_or_success(
    case: Case, live_server: str, admin_token: str
) -> None:
    headers = {"authorization": f"Bearer {admin_token}", "x-api-key": MASTER_KEY}
    case.call_and_validate(
        base_url=live_server,
        headers=headers,
        checks=[
            checks.not_a_server_error,
            checks.status_code_conformance,
            checks.content_type_conformance,
            checks.response_schema_conformance,
        ],
    )
