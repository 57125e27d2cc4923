"""POST /auth/login: an API key in, a JWT out."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field
from starlette.requests import Request
from starlette.responses import Response

from resolvers.auth import authenticate_api_key
from resolvers.platform.periods import utcnow
from webhook.rest import JSON, read_model, runtime_of
from webhook.throttle import client_address, throttle_of


class LoginRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    api_key: str = Field(
        min_length=1,
        max_length=1024,
        description="The LiteLLM master key, spendplane's admin key, or a LiteLLM virtual key (sk-...).",
    )


class LoginResponse(BaseModel):
    access_token: str
    token_type: str = "bearer"  # noqa: S105 - the OAuth token type, not a secret
    expires_in: int = Field(description="Seconds until the token expires.")


async def login(request: Request) -> Response:
    body = await read_model(request, LoginRequest)
    runtime = runtime_of(request)
    now = utcnow()  # wall time: tokens and key expiry are security, not business periods
    # Wrong keys are throttled per address and key prefix (429 + Retry-After); a right one costs nothing.
    with throttle_of(request).checking_key(client_address(request), body.api_key):
        async with runtime.read() as session:
            principal = await authenticate_api_key(
                session, runtime.litellm, runtime.settings.litellm_master_key, body.api_key, now
            )
    token, expires_in = runtime.tokens.issue(principal, now)
    return JSON(LoginResponse(access_token=token, expires_in=expires_in).model_dump())
