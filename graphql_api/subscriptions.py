"""What every subscription shares: a cap per principal across connections (a cap per connection is Strawberry's
`max_subscriptions_per_connection`), and the end of a stream when its token stops being valid."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.websockets import WebSocket

from graphql_api.context import Info
from resolvers.auth import Principal
from resolvers.errors import DomainError
from resolvers.periods import utcnow

#: The WebSocket close code for a principal over its subscription cap (4429: graphql-transport-ws's "too many").
TOO_MANY_CLOSE_CODE = 4429

_open: Counter[str] = Counter()


class TooManySubscriptions(DomainError):
    code = "TOO_MANY_SUBSCRIPTIONS"
    status = 429


def _who(principal: Principal) -> str:
    return f"{principal.role.value}:{principal.subject}:{principal.key_hash or ''}"


@asynccontextmanager
async def subscription(info: Info) -> AsyncIterator[Principal]:
    """Admit one more subscription of the caller, or refuse it: the operation gets a TOO_MANY_SUBSCRIPTIONS error
    and its connection is closed with 4429 and the reason."""
    context = info.context
    principal = context.caller()
    cap = context.runtime.settings.max_subscriptions_per_principal
    who = _who(principal)
    if _open[who] >= cap:
        message = f"at most {cap} subscriptions per token holder (SPENDPLANE_MAX_SUBSCRIPTIONS_PER_PRINCIPAL)"
        if isinstance(context.request, WebSocket):
            await context.request.close(TOO_MANY_CLOSE_CODE, message[:120])
        raise TooManySubscriptions(message)
    _open[who] += 1
    try:
        yield principal
    finally:
        _open[who] -= 1
        if _open[who] <= 0:
            del _open[who]


def still_valid(info: Info, principal: Principal) -> None:
    """Before each event: the token has not expired and was not revoked since (admin key rotated, key blocked)."""
    from resolvers.errors import Unauthenticated

    if principal.expires_at is not None and principal.expires_at <= utcnow():
        raise Unauthenticated("the token expired; reconnect with a fresh one")
    guard = info.context.runtime.guard
    if guard is not None:
        guard.check(principal)
