"""The application shell: health, the OpenAPI document, JSON errors everywhere, GraphiQL, query limits."""

from __future__ import annotations

import pytest

from models.db import Database
from resolvers.platform.config import Settings
from tests.conftest import Clock, started
from tests.support import Api, on_real_litellm_schema

pytestmark = pytest.mark.litellm_tables


async def test_health_reports_database_migrations_and_litellm_tables(api: Api, db: Database) -> None:
    response = await api.client.get("/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["database"]["reachable"] is True
    assert body["migrations"]["current"] == body["migrations"]["head"]
    embedded = not on_real_litellm_schema(db.engine.url)  # beside LiteLLM, on its real schema: production mode
    assert body["litellm"] == {"spend_logs": True, "spend_logs_missing_columns": [], "embedded": embedded}


async def test_health_is_503_when_the_database_is_gone(settings: Settings, clock: Clock) -> None:
    # Jobs off: no background work (alert delivery) may hold a connection of the engine disposed under it.
    async with started(settings, clock, jobs_enabled=False) as api:
        await api.runtime().db.engine.dispose()
        runtime = api.runtime()
        runtime.db.engine.pool._pre_ping = False  # type: ignore[attr-defined]
        # Point the engine at a port where nothing listens (or a directory SQLite cannot open).
        from models.db import open_database

        broken = open_database(
            "sqlite:////nonexistent-dir/x.db"
            if runtime.db.dialect == "sqlite"
            else "postgresql://nobody@127.0.0.1:9/none"
        )
        runtime.db = broken
        try:
            response = await api.client.get("/health")
        finally:
            await broken.dispose()
    assert response.status_code == 503
    assert response.json()["status"] == "unavailable"
    assert response.json()["database"]["reachable"] is False


async def test_the_openapi_document_lists_every_rest_route(api: Api) -> None:
    document = (await api.client.get("/openapi.json")).json()
    assert document["openapi"].startswith("3.1")
    assert {"/auth/login", "/health", "/api/v1/budgets", "/api/v1/budgets/{budget_id}"} <= set(document["paths"])
    login = document["paths"]["/auth/login"]["post"]
    assert login["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/LoginRequest"
    }


async def test_unknown_paths_and_methods_answer_json(api: Api) -> None:
    missing = await api.client.get("/nope")
    assert (missing.status_code, missing.json()["error"]["code"]) == (404, "NOT_FOUND")
    wrong = await api.client.delete("/auth/login")
    assert (wrong.status_code, wrong.json()["error"]["code"]) == (405, "METHOD_NOT_ALLOWED")


async def test_graphiql_is_served_in_development_and_off_by_setting(settings: Settings, clock: Clock) -> None:
    async with started(settings, clock) as on:
        page = await on.client.get("/graphql", headers={"accept": "text/html"})
        assert page.status_code == 200 and "graphiql" in page.text.lower()
    async with started(settings, clock, graphiql=False) as off:
        page = await off.client.get("/graphql", headers={"accept": "text/html"})
        assert page.status_code == 404


async def test_deep_queries_are_refused(settings: Settings, clock: Clock) -> None:
    # Today's schema nests one level below the root, so a limit of 0 is what refuses `{ me { role } }`.
    async with started(settings, clock, max_query_depth=0) as running:
        error = await running.error("query deep { me { role } }")
    assert error["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"
    assert "exceeds maximum operation depth" in error["message"]


async def test_too_many_aliases_and_tokens_are_refused(api: Api) -> None:
    aliased = "{ " + " ".join(f"a{i}: me {{ role }}" for i in range(30)) + " }"
    error = await api.error(aliased)
    assert "aliases" in error["message"]
    huge = "{ me { " + "role " * 3000 + "} }"
    result = await api.gql(huge)
    assert result["errors"][0]["extensions"]["code"] in ("GRAPHQL_PARSE_FAILED", "GRAPHQL_VALIDATION_FAILED")


async def test_syntax_errors_are_coded(api: Api) -> None:
    error = await api.error("{ budgets { id ")
    assert error["extensions"]["code"] == "GRAPHQL_PARSE_FAILED"
    error = await api.error("{ budgets { colour } }")
    assert error["extensions"]["code"] == "GRAPHQL_VALIDATION_FAILED"


async def test_cors_answers_the_configured_dashboard_origin(settings: Settings, clock: Clock) -> None:
    async with started(settings, clock, allowed_origins=("http://localhost:5173",)) as running:
        preflight = await running.client.options(
            "/graphql",
            headers={
                "origin": "http://localhost:5173",
                "access-control-request-method": "POST",
                "access-control-request-headers": "authorization,content-type",
            },
        )
        assert preflight.headers["access-control-allow-origin"] == "http://localhost:5173"
        other = await running.client.options(
            "/graphql", headers={"origin": "http://evil.example", "access-control-request-method": "POST"}
        )
        assert "access-control-allow-origin" not in other.headers


async def test_nul_characters_are_refused_or_dropped_never_a_500(api: Api) -> None:
    # PostgreSQL cannot store or compare NUL in text: every door refuses it with a 400 naming the field.
    for path, params in (("/api/v1/budgets", {"entity_id": "\x00"}), ("/alerts", {"team_id": "a\x00b"})):
        response = await api.client.get(path, params=params, headers=api.bearer())
        assert response.status_code == 400, (path, response.text)
        assert response.json()["error"]["code"] == "BAD_USER_INPUT"
    # The gateway's webhook is the exception: what clients send is made storable (NUL dropped), never refused.
    from tests.budgets.test_budgets import create

    await create(api, entityId="eng")
    await api.runtime().enforcement().refresh()
    webhook = await api.client.post(
        "/webhook/pre-request", json={"team_id": "eng\x00"}, headers={"x-api-key": "sk-master-test"}
    )
    assert webhook.status_code == 200
    assert [b["entity_id"] for b in webhook.json()["budgets"]] == ["eng"]
    error = await api.error('{ budgets(entityId: "x\\u0000") { id } }')
    assert error["extensions"] == {"code": "BAD_USER_INPUT", "field": "entityId"}
