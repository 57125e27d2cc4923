"""Logging in with the master key, the generated admin key or a LiteLLM virtual key; JWT checks; scoping."""

from __future__ import annotations

import json
import time
from datetime import timedelta

import jwt
import pytest
from httpx_ws import WebSocketDisconnect

from models.db import Database
from resolvers.auth import AUDIENCE, ISSUER
from resolvers.platform.config import Settings
from tests.conftest import MASTER_KEY, NOW, Clock, started
from tests.support import Api, add_virtual_key, graphql_ws

pytestmark = pytest.mark.litellm_tables

ME = "{ me { role subject userId teamId expiresAt } }"


async def test_the_master_key_gives_the_admin_role(api: Api) -> None:
    me = (await api.data(ME))["me"]
    assert (me["role"], me["subject"], me["userId"]) == ("ADMIN", "master-key", None)


async def test_login_answers_the_contracts_shape(api: Api) -> None:
    response = await api.client.post("/auth/login", json={"api_key": MASTER_KEY})
    body = response.json()
    assert set(body) == {"access_token", "token_type", "expires_in"}
    assert (body["token_type"], body["expires_in"]) == ("bearer", 3600)
    header = jwt.get_unverified_header(body["access_token"])
    assert header["alg"] == "HS256"
    claims = jwt.decode(body["access_token"], options={"verify_signature": False})
    assert (claims["iss"], claims["aud"], claims["role"]) == (ISSUER, AUDIENCE, "admin")
    assert claims["exp"] - claims["iat"] == 3600


@pytest.mark.parametrize("key", ["sk-wrong", "", "sp-admin-guess", "x" * 2000])
async def test_a_bad_key_gets_401_or_400(api: Api, key: str) -> None:
    response = await api.client.post("/auth/login", json={"api_key": key})
    assert response.status_code in (400, 401)
    assert response.json()["error"]["code"] in ("UNAUTHENTICATED", "BAD_USER_INPUT")
    if key == "sk-wrong":
        assert response.status_code == 401


@pytest.mark.parametrize("body", [b"", b"{", b"[]", b'{"key": "x"}', b'{"api_key": 5}', b'"x"'])
async def test_malformed_logins_are_400_naming_the_problem(api: Api, body: bytes) -> None:
    response = await api.client.post("/auth/login", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "BAD_USER_INPUT"
    assert error["field"] in {"body", "api_key", "key"}


async def test_without_a_master_key_the_first_start_generates_an_admin_key(settings: Settings, clock: Clock) -> None:
    async with started(settings, clock, litellm_master_key=None) as first:
        key = first.generated_admin_key
        assert key is not None and key.startswith("sp-admin-")
    async with started(settings, clock, litellm_master_key=None) as second:
        assert second.generated_admin_key is None  # printed once only
        token = await second.login(key)
        assert (await second.data(ME, token=token))["me"]["role"] == "ADMIN"
        response = await second.client.post("/auth/login", json={"api_key": MASTER_KEY})
        assert response.status_code == 401  # no master key configured


async def test_the_admin_key_is_stored_only_as_a_hash(settings: Settings, clock: Clock, db: Database) -> None:
    from sqlalchemy import select

    from models.instance import InstanceSecretRow

    async with started(settings, clock, litellm_master_key=None) as running:
        key = running.generated_admin_key
    assert key is not None
    async with db.sessions() as session:
        values = (await session.scalars(select(InstanceSecretRow.value))).all()
    assert key not in values
    assert any(v == __import__("hashlib").sha256(key.encode()).hexdigest() for v in values)


async def test_a_virtual_key_gives_a_read_only_role_scoped_to_its_user_and_team(api: Api, db: Database) -> None:
    key_hash = await add_virtual_key(db, "sk-team-key", user_id="alice", team_id="engineering", alias="alice-main")
    token = await api.login("sk-team-key")
    me = (await api.data(ME, token=token))["me"]
    assert (me["role"], me["subject"], me["userId"], me["teamId"]) == (
        "VIEWER",
        "alice-main",
        "alice",
        "engineering",
    )
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["kh"] == key_hash
    error = await api.error(
        "mutation { updateSettings(input: {budgetEnforcementEnabled: false}) { budgetEnforcementEnabled } }",
        token=token,
    )
    assert error["extensions"]["code"] == "FORBIDDEN"


async def test_blocked_expired_and_unknown_virtual_keys_are_refused(api: Api, db: Database) -> None:
    await add_virtual_key(db, "sk-blocked", user_id="u", team_id="t", blocked=True)
    await add_virtual_key(db, "sk-expired", user_id="u", team_id="t", expires=NOW - timedelta(days=400))
    for key in ("sk-blocked", "sk-expired", "sk-unknown"):
        response = await api.client.post("/auth/login", json={"api_key": key})
        assert response.status_code == 401, key


@pytest.mark.parametrize("tamper", ["expired", "wrong-audience", "wrong-issuer", "none-alg", "wrong-secret", "no-exp"])
async def test_tampered_tokens_are_unauthenticated(api: Api, tamper: str) -> None:
    claims = jwt.decode(api.admin_token, options={"verify_signature": False})
    secret = "wrong" * 10
    algorithm = "HS256"
    if tamper == "expired":
        claims["exp"] = int(time.time()) - 3600
    elif tamper == "wrong-audience":
        claims["aud"] = "someone-else"
    elif tamper == "wrong-issuer":
        claims["iss"] = "someone-else"
    elif tamper == "no-exp":
        del claims["exp"]
    if tamper == "none-alg":
        token = jwt.encode(claims, None, algorithm="none")
    else:
        token = jwt.encode(claims, secret, algorithm=algorithm)
    error = await api.error(ME, token=token)
    assert error["extensions"]["code"] == "UNAUTHENTICATED"
    response = await api.client.get("/api/v1/budgets", headers={"authorization": f"Bearer {token}"})
    assert response.status_code == 401


async def test_tokens_signed_with_the_instance_secret_survive_a_restart(settings: Settings, clock: Clock) -> None:
    async with started(settings, clock) as first:
        token = first.admin_token
    async with started(settings, clock) as second:
        assert (await second.data(ME, token=token))["me"]["role"] == "ADMIN"


# ------------------------------------------------------------------------------------------------- WebSockets


async def test_a_websocket_without_a_token_is_closed_4403(api: Api) -> None:
    async with graphql_ws(api) as ws:
        await ws.send_json({"type": "connection_init", "payload": {}})
        with pytest.raises(WebSocketDisconnect) as closed:
            await ws.receive_json()
        assert closed.value.code == 4403


async def test_a_websocket_with_a_token_in_connection_init_is_acknowledged(api: Api) -> None:
    async with graphql_ws(api) as ws:
        await ws.send_json({"type": "connection_init", "payload": {"authorization": f"Bearer {api.admin_token}"}})
        ack = await ws.receive_json()
        assert ack == {"type": "connection_ack", "payload": {"role": "admin"}}
        await ws.send_json({"id": "1", "type": "subscribe", "payload": {"query": "{ me { role } }"}})
        message = await ws.receive_json()
        assert message["type"] == "next"
        assert json.dumps(message["payload"]["data"]) == '{"me": {"role": "ADMIN"}}'
