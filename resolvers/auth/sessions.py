"""Who may still use a token: what a signature cannot say.

A JWT stays valid until it expires, so this keeps what changed since it was minted, refreshed from the database
every SPEND_REFRESH_SECONDS on every instance: the generated admin key's rotation (tokens minted with the old key
are refused, and the gateway's shared secret follows the new key), and LiteLLM virtual keys blocked, expired,
deleted or moved to another team or user after their holder logged in (their tokens lose access: a token's scope
is the key's team and user at login). Checking a token stays a memory lookup.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import select

from models.db import Database
from models.instance import InstanceSecretRow
from models.litellm import LiteLLMSchema, verification_tokens
from models.types import as_utc
from resolvers.auth import ADMIN_KEY_SHA256, ADMIN_SUBJECT, Principal, Role, TokenService
from resolvers.platform.errors import Unauthenticated
from resolvers.spend import chunks

log = logging.getLogger("spendplane.sessions")

#: Virtual keys whose tokens were seen recently, re-checked on each refresh (the oldest forgotten first).
WATCHED_KEYS = 10_000


@dataclass
class TokenGuard:
    tokens: TokenService
    #: sha256 of the generated admin key, and since when it is the key (tokens minted before are refused).
    admin_key_hash: str | None = None
    admin_key_since: datetime | None = None
    revoked: dict[str, str] = field(default_factory=dict)  # key hash -> why
    #: Each watched key's (user, team) in LiteLLM now: a token claiming another was minted before the key moved.
    owners: dict[str, tuple[str | None, str | None]] = field(default_factory=dict)
    _watched: OrderedDict[str, None] = field(default_factory=OrderedDict)

    def principal(self, token: str) -> Principal:
        """Verify a token (signature, expiry, lifetime) and what changed since it was minted."""
        principal = self.tokens.verify(token)
        self.check(principal)
        return principal

    def check(self, principal: Principal) -> None:
        if (
            principal.subject == ADMIN_SUBJECT
            and self.admin_key_since is not None
            and principal.issued_at is not None
            and principal.issued_at < self.admin_key_since.replace(microsecond=0)
        ):
            raise Unauthenticated("the admin key was rotated after this token was issued: log in again")
        key = principal.key_hash
        if key is None:
            return
        if key in self._watched:
            self._watched.move_to_end(key)
        else:
            self._watched[key] = None
            while len(self._watched) > WATCHED_KEYS:
                self._watched.popitem(last=False)
        why = self.revoked.get(key)
        if why is not None:
            raise Unauthenticated(f"this token's LiteLLM key {why}: log in with a valid key")
        owner = self.owners.get(key)
        if owner is not None and owner != (principal.user_id, principal.team_id):
            raise Unauthenticated("this token's LiteLLM key moved to another team or user: log in again")

    async def refresh(self, db: Database, schema: LiteLLMSchema, now: datetime) -> None:
        async with db.reader() as session:
            row = await session.get(InstanceSecretRow, ADMIN_KEY_SHA256)
            if row is not None and row.value != self.admin_key_hash:
                if self.admin_key_hash is not None:
                    log.warning("the admin key was rotated: tokens issued before %s are refused", row.created_at)
                self.admin_key_hash, self.admin_key_since = row.value, row.created_at
            elif row is not None and self.admin_key_since is None:
                self.admin_key_since = row.created_at
            if not self._watched or not schema.has_table(verification_tokens):
                return
            t = verification_tokens.c
            columns = [t.token, t.user_id, t.team_id]
            columns += [t[c] for c in ("blocked", "expires") if schema.has(verification_tokens, c)]
            revoked: dict[str, str] = {}
            owners: dict[str, tuple[str | None, str | None]] = {}
            watched = list(self._watched)
            found: set[str] = set()
            for chunk in chunks(watched):
                for record in (await session.execute(select(*columns).where(t.token.in_(chunk)))).mappings():
                    found.add(record["token"])
                    owner = Principal(Role.VIEWER, "", user_id=record["user_id"], team_id=record["team_id"])
                    owners[record["token"]] = (owner.user_id, owner.team_id)  # blanks as none, as at login
                    if record.get("blocked"):
                        revoked[record["token"]] = "is blocked in LiteLLM"
                    elif record.get("expires") is not None and as_utc(record["expires"]) <= now:
                        revoked[record["token"]] = "has expired in LiteLLM"
            revoked.update({k: "no longer exists in LiteLLM" for k in watched if k not in found})
        self.revoked, self.owners = revoked, owners
