"""The LiteLLM plugin, against a real spendplane server: allow, a true 429, and both failure modes."""

from __future__ import annotations

import uuid
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from graphql_api.app import create_app
from graphql_api.cli import main
from models.db import Database
from resolvers.platform.config import Settings
from tests.conftest import MASTER_KEY, NOW, Clock
from tests.support import SpendLog, add_spend, served
from webhook.litellm_plugin import SpendplaneBudgetHook, check_payload

pytestmark = pytest.mark.litellm_tables

# What LiteLLM hands the hook: UserAPIKeyAuth (here its fields) and the request body it is about to send.
TEAM_KEY = SimpleNamespace(api_key="75e69842" + "0" * 56, user_id="carol", team_id="eng", end_user_id=None)


def request_data(**extra: Any) -> dict[str, Any]:
    return {
        "model": "gpt-4o",
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 50,
        "litellm_call_id": "7a506080-e536-414f-b82f-30d9fbd93b99",
        **extra,
    }


async def _team_budget(db: Database, spend: float) -> None:
    await _budget(db, "Eng", "team", "eng", 100)
    await add_spend(db, SpendLog(spend, NOW - timedelta(hours=1), team_id="eng"))


async def _budget(db: Database, name: str, entity_type: str, entity_id: str, limit: int) -> None:
    from sqlalchemy import insert

    from models.budgets import BudgetRow

    async with db.engine.begin() as conn:
        await conn.execute(
            insert(BudgetRow).values(
                id=str(uuid.uuid4()),
                name=name,
                entity_type=entity_type,
                entity_id=entity_id,
                spend_limit=Decimal(limit),
                soft_limit_percent=Decimal("0.8"),
                hard_limit_percent=Decimal(1),
                alert_email=None,
                created_at=NOW,
                updated_at=NOW,
            )
        )


async def test_the_plugin_allows_and_refuses_with_a_true_429(settings: Settings, clock: Clock, db: Database) -> None:
    await _team_budget(db, 100)
    async with served(create_app(settings, clock=clock), lifespan=True) as url:
        hook = SpendplaneBudgetHook(url=url, key=MASTER_KEY, timeout=5)
        other_team = SimpleNamespace(api_key=None, user_id="dave", team_id="ops", end_user_id=None)
        data = request_data()
        try:
            assert await hook.async_pre_call_hook(other_team, None, data, "acompletion") is data
            with pytest.raises(HTTPException) as refused:
                await hook.async_pre_call_hook(TEAM_KEY, None, request_data(), "acompletion")
        finally:
            await hook.aclose()
    assert refused.value.status_code == 429
    # The key's own team budget: named, with its figures.
    assert refused.value.detail["error"].startswith(
        "budget_exceeded: team budget 'Eng' (eng) is exhausted: 100.00 USD spent of a 100.00 USD limit"
    )
    assert int(refused.value.headers["retry-after"]) > 0


async def test_a_client_blocked_by_the_global_budget_reads_neither_its_name_nor_its_figures(
    settings: Settings, clock: Clock, db: Database
) -> None:
    """The 429 is the client's (the key's holder): the global budget is a budget outside its scope."""
    await _budget(db, "Global", "global", "", 7)  # stored with entity_id "" (see models/budgets.py)
    await add_spend(db, SpendLog(14.51, NOW - timedelta(hours=1), api_key="someone-else"))
    async with served(create_app(settings, clock=clock), lifespan=True) as url:
        hook = SpendplaneBudgetHook(url=url, key=MASTER_KEY, timeout=5)
        try:
            with pytest.raises(HTTPException) as refused:
                await hook.async_pre_call_hook(TEAM_KEY, None, request_data(), "acompletion")
        finally:
            await hook.aclose()
    assert refused.value.status_code == 429
    assert refused.value.detail == {"error": "budget_exceeded: a budget outside this key's scope is exhausted"}
    assert int(refused.value.headers["retry-after"]) > 0  # when to retry is the client's to know


async def test_a_master_key_client_blocked_by_the_global_budget_reads_it_by_name(
    settings: Settings, clock: Clock, db: Database
) -> None:
    """What the hook receives for LiteLLM's master key (notes/litellm-observed.md §4): its holder is the proxy's
    admin, so the global budget is within its scope, named with its figures."""
    await _budget(db, "Global", "global", "", 7)
    await add_spend(db, SpendLog(14.51, NOW - timedelta(hours=1), api_key="someone-else"))
    master = SimpleNamespace(
        api_key="litellm_proxy_master_key", user_id="default_user_id", team_id=None, end_user_id=None
    )
    async with served(create_app(settings, clock=clock), lifespan=True) as url:
        hook = SpendplaneBudgetHook(url=url, key=MASTER_KEY, timeout=5)
        try:
            with pytest.raises(HTTPException) as refused:
                await hook.async_pre_call_hook(master, None, request_data(), "acompletion")
        finally:
            await hook.aclose()
    assert refused.value.status_code == 429
    assert refused.value.detail["error"].startswith(
        "budget_exceeded: global budget 'Global' is exhausted: 14.51 USD spent of a 7.00 USD limit"
    )


async def test_an_older_spendplane_without_client_message_tells_the_client_only_the_refusals_type() -> None:
    """The plugin never falls back to the operator's message, which names the budget with its figures."""

    async def refuse(request: Request) -> JSONResponse:
        error = {"type": "budget_exceeded", "message": "global budget 'Global' is exhausted: 14.51 USD spent"}
        return JSONResponse({"allowed": False, "error": error}, status_code=429, headers={"retry-after": "7"})

    app = Starlette(routes=[Route("/webhook/pre-request", refuse, methods=["POST"])])
    async with served(app) as url:
        hook = SpendplaneBudgetHook(url=url, key="k", timeout=5)
        try:
            with pytest.raises(HTTPException) as refused:
                await hook.async_pre_call_hook(TEAM_KEY, None, request_data(), "acompletion")
        finally:
            await hook.aclose()
    assert refused.value.detail == {"error": "budget_exceeded: budget exceeded"}
    assert refused.value.headers["retry-after"] == "7"


async def test_a_request_too_big_to_check_is_refused_not_waved_through(
    settings: Settings, clock: Clock, db: Database
) -> None:
    """Fail-open is for spendplane being down, not for a payload it cannot read: a client must not be able to
    switch budgets off by sending more than the webhook takes."""
    from webhook.rest import MAX_BODY_BYTES

    await _team_budget(db, 100)
    async with served(create_app(settings, clock=clock), lifespan=True) as url:
        hook = SpendplaneBudgetHook(url=url, key=MASTER_KEY, timeout=30, failure_mode="open")
        huge = request_data(messages=[{"role": "user", "content": "x" * (MAX_BODY_BYTES + 1)}])
        odd = request_data(user="u" * 5000, max_tokens=10**12)  # clipped by the webhook, so checked as usual
        try:
            with pytest.raises(HTTPException) as too_big:
                await hook.async_pre_call_hook(TEAM_KEY, None, huge, "acompletion")
            with pytest.raises(HTTPException) as over_budget:
                await hook.async_pre_call_hook(TEAM_KEY, None, odd, "acompletion")
        finally:
            await hook.aclose()
    assert too_big.value.status_code == 413
    assert too_big.value.detail["error"].startswith("budget check impossible")
    assert over_budget.value.status_code == 429


@pytest.mark.parametrize(("mode", "refuses"), [("open", False), ("closed", True)])
async def test_when_spendplane_is_down_the_plugins_failure_mode_decides(mode: str, refuses: bool) -> None:
    hook = SpendplaneBudgetHook(url="http://127.0.0.1:9", key="k", timeout=0.5, failure_mode=mode)
    try:
        if refuses:
            with pytest.raises(HTTPException) as refused:
                await hook.async_pre_call_hook(TEAM_KEY, None, request_data(), "acompletion")
            assert refused.value.status_code == 429
            assert refused.value.detail == {"error": "budget service unavailable"}  # no address, no exception
        else:
            data = request_data()
            assert await hook.async_pre_call_hook(TEAM_KEY, None, data, "acompletion") is data
    finally:
        await hook.aclose()


def test_the_payload_carries_identity_model_messages_and_call_id() -> None:
    payload = check_payload(TEAM_KEY, request_data(user="cust-1"), "acompletion")
    assert payload == {
        "litellm_call_id": "7a506080-e536-414f-b82f-30d9fbd93b99",
        "api_key_hash": TEAM_KEY.api_key,
        "user_id": "carol",
        "team_id": "eng",
        "end_user_id": "cust-1",
        "model": "gpt-4o",
        "call_type": "acompletion",
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 50,
    }


def test_the_cli_writes_the_plugin_next_to_the_config(tmp_path: Path) -> None:
    main(["litellm-plugin", "-o", str(tmp_path)])
    written = (tmp_path / "spendplane_litellm.py").read_text()
    assert "proxy_handler_instance = SpendplaneBudgetHook()" in written
