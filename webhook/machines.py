"""Authentication of machine callers (LiteLLM): the shared secret in `x-api-key`.

SPENDPLANE_WEBHOOK_KEY is the secret. When it is unset, the LiteLLM master key (or spendplane's generated admin
key) is accepted in its place, so a proxy configured with its master key works without one more secret.
"""

from __future__ import annotations

import hmac

from starlette.requests import Request

from resolvers.auth import bearer_token, hash_key
from resolvers.platform.errors import TooManyRequests, Unauthenticated
from webhook.rest import runtime_of
from webhook.throttle import client_address, throttle_of


def require_gateway(request: Request) -> None:
    """When SPENDPLANE_WEBHOOK_KEY is unset this door accepts the master (or admin) key, so wrong keys are throttled
    here too (webhook/throttle.py), per client address only: a key-prefix count would let anyone who knows the
    key's first characters lock LiteLLM out. A refused client is answered 401, never 429, which LiteLLM would read
    as a budget block."""
    presented = request.headers.get("x-api-key") or bearer_token(request.headers.get("authorization"))
    if not presented:
        raise Unauthenticated("send the shared secret (SPENDPLANE_WEBHOOK_KEY) in the x-api-key header")
    throttle, address = throttle_of(request), client_address(request)
    # Every LiteLLM request passes here: the right key from an address that is not locked out costs one look-up.
    # (The check has no await, so no burst of wrong keys can slip past the count below in the meantime; a locked
    # address is refused whatever it sends, so the lock-out tells no right key from a wrong one.)
    if not throttle.gateway_locked(address) and _is_gateway_key(request, presented):
        return
    try:
        with throttle.checking_key(address, presented, by_prefix=False):
            if not _is_gateway_key(request, presented):
                raise Unauthenticated("x-api-key is not this service's webhook key")
    except TooManyRequests as refused:
        raise Unauthenticated(refused.message) from None


def _is_gateway_key(request: Request, presented: str) -> bool:
    runtime = runtime_of(request)
    settings = runtime.settings
    accepted = settings.webhook_key or settings.litellm_master_key  # the master key only when no webhook key is set
    if accepted and hmac.compare_digest(presented.encode(), accepted.encode()):
        return True
    return bool(
        not settings.webhook_key
        and runtime.admin_key_hash is not None
        and hmac.compare_digest(hash_key(presented), runtime.admin_key_hash)
    )
