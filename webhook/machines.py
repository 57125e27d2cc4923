"""Authentication of machine callers (LiteLLM): the shared secret in `x-api-key`.

SPENDPLANE_WEBHOOK_KEY is the secret. When it is unset, the LiteLLM master key (or spendplane's generated admin
key) is accepted in its place, so a proxy configured with its master key works without one more secret.
"""

from __future__ import annotations

import hmac

from starlette.requests import Request

from resolvers.auth import bearer_token, hash_key
from resolvers.errors import Unauthenticated
from webhook.rest import runtime_of


def require_gateway(request: Request) -> None:
    presented = request.headers.get("x-api-key") or bearer_token(request.headers.get("authorization"))
    if not presented:
        raise Unauthenticated("send the shared secret (SPENDPLANE_WEBHOOK_KEY) in the x-api-key header")
    runtime = runtime_of(request)
    settings = runtime.settings
    accepted = [k for k in (settings.webhook_key,) if k]
    if not accepted:
        accepted = [k for k in (settings.litellm_master_key,) if k]
    if any(hmac.compare_digest(presented.encode(), key.encode()) for key in accepted):
        return
    if (
        not settings.webhook_key
        and runtime.admin_key_hash is not None
        and hmac.compare_digest(hash_key(presented), runtime.admin_key_hash)
    ):
        return
    raise Unauthenticated("x-api-key is not this service's webhook key")
