"""What every subscription shares: a cap per principal across connections (a cap per connection is Strawberry's
`max_subscriptions_per_connection`), and the end of a stream when its token stops being valid.

A subscription over the cap is refused on its own — the operation gets an error with the code
TOO_MANY_SUBSCRIPTIONS — rather than by closing the connection, which would end the holder's other, legitimate
subscriptions on it too."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from graphql_api.context import Info
from resolvers.auth import Principal
from resolvers.platform.errors import DomainError
from resolvers.platform.periods import utcnow

_open: Counter[str] = Counter()


class TooManySubscriptions(DomainError):
    code = "TOO_MANY_SUBSCRIPTIONS"
    status = 429


def _who(principal: Principal) -> str:
    return f"{principal.role.value}:{principal.subject}:{principal.key_hash or ''}"


@asynccontextmanager
async def subscription(info: Info) -> AsyncIterator[Principal]:
    """Admit one more subscription of the caller, or refuse it with TOO_MANY_SUBSCRIPTIONS."""
    context = info.context
    principal = context.caller()
    cap = context.runtime.settings.max_subscriptions_per_principal
    who = _who(principal)
    if _open[who] >= cap:
        raise TooManySubscriptions(
            f"at most {cap} subscriptions per token holder (SPENDPLANE_MAX_SUBSCRIPTIONS_PER_PRINCIPAL); "
            "close one first"
        )
    _open[who] += 1
    try:
        yield principal
    finally:
        _open[who] -= 1
        if _open[who] <= 0:
            del _open[who]


def still_valid(info: Info, principal: Principal) -> None:
    """Before each event: the token has not expired and was not revoked since (admin key rotated, key blocked)."""
    from resolvers.platform.errors import Unauthenticated

    if principal.expires_at is not None and principal.expires_at <= utcnow():
        raise Unauthenticated("the token expired; reconnect with a fresh one")
    guard = info.context.runtime.guard
    if guard is not None:
        guard.check(principal)
