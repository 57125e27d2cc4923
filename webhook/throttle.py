"""Throttling of the doors that test a key without a token: `POST /auth/login`, `POST /budget/check` and the budget
part of `POST /predict` (its `X-Api-Key`). One mechanism for all three, on the `limits` library (moving windows in
this process's memory):

- wrong keys are counted per client address (an IPv6 address by its /64) and per key prefix (the first
  `KEY_PREFIX_CHARS` characters, so guessing one key from many addresses is counted too);
- a client or prefix that has used up its wrong keys is refused with 429 and `Retry-After` before its key is even
  looked at (a right key then is refused as well, or the refusal would tell right from wrong); each time it runs
  out again within a day the wait doubles, up to `SPENDPLANE_THROTTLE_MAX_BACKOFF_SECONDS`;
- keys being checked right now count as spent until they prove right, so a burst of concurrent guesses cannot all
  slip in before the first one is counted;
- a right key costs nothing: a successful login is never slowed;
- `/budget/check` and `/predict` also count every call per address (`SPENDPLANE_THROTTLE_REQUESTS_PER_ADDRESS`);
- the gateway's routes (which take the master key when SPENDPLANE_WEBHOOK_KEY is unset) count wrong keys per
  address only and answer a refused client 401 (webhook/machines.py).

The counts live in one process: behind several replicas each counts its own (documented in docs/security.md).
"""

from __future__ import annotations

import ipaddress
import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache

from limits import RateLimitItem, parse_many
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter
from starlette.requests import Request

from resolvers.platform.config import Settings
from resolvers.platform.errors import TooManyRequests, Unauthenticated

#: Wrong keys sharing this many first characters are counted together.
KEY_PREFIX_CHARS = 12
#: How long a refusal is remembered for the doubling of the next wait.
STRIKE_MEMORY_SECONDS = 86_400
#: A key check that has not finished after this long no longer counts as in flight.
IN_FLIGHT_SECONDS = 60
_ADDRESS, _PREFIX, _GATEWAY = "address", "key prefix", "address (gateway)"


def client_address(request: Request) -> str:
    """The peer's address as the ASGI server gives it (behind a reverse proxy, run uvicorn with
    `--proxy-headers --forwarded-allow-ips` so this is the client's, not the proxy's); IPv6 by its /64, which one
    client usually owns whole."""
    return _canonical_address(request.client.host if request.client else "")


@lru_cache(maxsize=4096)
def _canonical_address(host: str) -> str:
    # Memoized: every gateway request passes here, mostly from the same few proxies.
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host or "unknown"
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


class Throttle:
    def __init__(
        self,
        *,
        failures_per_address: str,
        failures_per_key_prefix: str,
        requests_per_address: str,
        max_backoff_seconds: int,
    ) -> None:
        self._storage = MemoryStorage()
        self._window = MovingWindowRateLimiter(self._storage)
        #: No gateway address is locked out before this (time.time()): until then `gateway_locked`, asked on every
        #: gateway request, answers without a look-up.
        self._gateway_locks_until = 0.0
        self._failures: dict[str, list[RateLimitItem]] = {
            _ADDRESS: parse_many(failures_per_address),
            _PREFIX: parse_many(failures_per_key_prefix),
            _GATEWAY: parse_many(failures_per_address),
        }
        self._requests = parse_many(requests_per_address)
        self.max_backoff_seconds = max_backoff_seconds

    @classmethod
    def from_settings(cls, settings: Settings) -> Throttle:
        return cls(
            failures_per_address=settings.throttle_failures_per_address,
            failures_per_key_prefix=settings.throttle_failures_per_key_prefix,
            requests_per_address=settings.throttle_requests_per_address,
            max_backoff_seconds=settings.throttle_max_backoff_seconds,
        )

    def count_request(self, address: str) -> None:
        """One call to a throttled route, right key or not: refused with 429 past the address's request rate."""
        for item in self._requests:
            if not self._window.hit(item, "requests", address):
                wait = self._until_free(item, "requests", address)
                raise TooManyRequests(f"too many requests from this address; try again in {wait} s", retry_after=wait)

    @contextmanager
    def checking_key(self, address: str, key: str, *, by_prefix: bool = True) -> Iterator[None]:
        """Around the check of a key the caller sent: refuses (429) a client or prefix out of wrong keys, counts the
        key as in flight meanwhile, and counts it as wrong when the check raises Unauthenticated. `by_prefix=False`
        counts by address only (the gateway's shared secret: see webhook/machines.py)."""
        identities: tuple[tuple[str, str], ...] = ((_ADDRESS, address), (_PREFIX, key.strip()[:KEY_PREFIX_CHARS]))
        if not by_prefix:
            # Counted apart from the user-facing doors: wrong logins from LiteLLM's host must not lock LiteLLM out.
            identities = ((_GATEWAY, address),)
        for kind, identity in identities:
            self._admit(kind, identity)
        for kind, identity in identities:
            self._storage.incr(self._in_flight_key(kind, identity), IN_FLIGHT_SECONDS)
        try:
            yield
        except Unauthenticated:
            for kind, identity in identities:
                for item in self._failures[kind]:
                    self._window.hit(item, "failures", kind, identity)
                if kind == _GATEWAY:
                    # Locked the moment its wrong keys run out (not at its next try), so the gateway's fast path
                    # (`gateway_locked`, one look-up) refuses exactly what the full check would.
                    self._lock_if_out(kind, identity, in_flight=0)
            raise
        finally:
            for kind, identity in identities:
                self._storage.decr(self._in_flight_key(kind, identity))

    def gateway_locked(self, address: str) -> bool:
        """Whether this address is locked out of the gateway's door (too many wrong shared secrets lately)."""
        if time.time() >= self._gateway_locks_until:
            return False
        return self._storage.get(f"lock/{_GATEWAY}/{address}") > 0

    def _admit(self, kind: str, identity: str) -> None:
        lock = f"lock/{kind}/{identity}"
        if self._storage.get(lock) > 0:
            raise self._refusal(kind, math.ceil(self._storage.get_expiry(lock) - time.time()))
        wait = self._lock_if_out(kind, identity, in_flight=self._storage.get(self._in_flight_key(kind, identity)))
        if wait is not None:
            raise self._refusal(kind, wait)

    def _lock_if_out(self, kind: str, identity: str, *, in_flight: int) -> int | None:
        """Out of wrong keys: locked until a slot frees, and twice as long for each time this happened today.
        Returns the wait, or None when keys are left."""
        lock = f"lock/{kind}/{identity}"
        for item in self._failures[kind]:
            stats = self._window.get_window_stats(item, "failures", kind, identity)
            if stats.remaining - in_flight > 0:
                continue
            strikes = self._storage.incr(f"strikes/{kind}/{identity}", STRIKE_MEMORY_SECONDS)
            base = max(1, math.ceil(stats.reset_time - time.time()))
            wait: int = min(self.max_backoff_seconds, base * 2 ** min(strikes - 1, 20))
            self._storage.clear(lock)
            self._storage.incr(lock, wait)
            if kind == _GATEWAY:
                self._gateway_locks_until = max(self._gateway_locks_until, time.time() + wait + 1)
            return wait
        return None

    def _until_free(self, item: RateLimitItem, *identifiers: str) -> int:
        return max(1, math.ceil(self._window.get_window_stats(item, *identifiers).reset_time - time.time()))

    @staticmethod
    def _in_flight_key(kind: str, identity: str) -> str:
        return f"in-flight/{kind}/{identity}"

    @staticmethod
    def _refusal(kind: str, wait: int) -> TooManyRequests:
        wait = max(1, wait)
        return TooManyRequests(
            f"too many wrong keys from this {kind}; try again in {wait} s (each further run of wrong keys doubles "
            "the wait)",
            retry_after=wait,
        )


def throttle_of(request: Request) -> Throttle:
    # One per app, shared by its extra listeners (the lifespan state, read from the scope as `runtime_of` does).
    throttle: Throttle = request.scope["state"]["throttle"]
    return throttle
