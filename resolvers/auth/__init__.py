"""Who is calling: API-key login, JWTs, roles and what each role may see.

The LiteLLM master key (or spendplane's own admin key, generated at first start when no master key is set)
gives the admin role. A LiteLLM virtual key gives a read-only role scoped to that key's user and team.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, TypeVar

import jwt
from sqlalchemy import ColumnElement, Select, and_, false, or_, select, true
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from models.db import Database
from models.instance import InstanceSecretRow
from models.litellm import LiteLLMSchema, verification_tokens
from models.types import as_utc
from resolvers.platform.errors import Forbidden, Unauthenticated

ISSUER = "spendplane"
AUDIENCE = "spendplane-api"
ALGORITHM = "HS256"
ADMIN_KEY_PREFIX = "sp-admin-"

_JWT_SECRET = "jwt_secret"  # noqa: S105 - the name of the stored secret, not a secret
ADMIN_KEY_SHA256 = "admin_key_sha256"
#: The subject of tokens minted with the generated admin key (rotating the key ends them).
ADMIN_SUBJECT = "admin-key"
#: The subject of tokens minted with LiteLLM's master key (replacing the key ends them: see TokenService).
MASTER_SUBJECT = "master-key"
#: The claim naming which master key minted a token: the first 16 hex digits of its sha256.
_MASTER_CLAIM = "mkf"


class Role(StrEnum):
    ADMIN = "admin"
    VIEWER = "viewer"


@dataclass(frozen=True)
class Principal:
    """The authenticated caller. Viewers carry the LiteLLM identity their key belongs to."""

    role: Role
    subject: str
    user_id: str | None = None
    team_id: str | None = None
    key_hash: str | None = None
    expires_at: datetime | None = None
    issued_at: datetime | None = None
    #: Budgets seen beyond its own, as (entity type, entity id; None for the global one): what a request made with
    #: LiteLLM's master key names (enforcement's `holder`). Never carried in a token.
    scopes: frozenset[tuple[str, str | None]] = frozenset()

    def __post_init__(self) -> None:
        # LiteLLM may store a key's user or team as an empty string: that is no user or team. Kept as "", every
        # check reading it ("its own team only") would have to tell "" from None, and one that did not read every
        # team's rows (an empty filter is no filter).
        for name in ("user_id", "team_id", "key_hash"):
            value = getattr(self, name)
            if value is not None and not value.strip():
                object.__setattr__(self, name, None)

    @property
    def is_admin(self) -> bool:
        return self.role is Role.ADMIN

    def can_see(self, entity_type: str, entity_id: str | None) -> bool:
        """Admins see everything; a key's holder sees its own user, team and key, never the global figure (and
        whatever `scopes` adds). `own_entities` is the same rule for a query."""
        if self.is_admin or (entity_type, entity_id) in self.scopes:
            return True
        owned = {"user": self.user_id, "team": self.team_id, "key": self.key_hash}
        return entity_id is not None and owned.get(entity_type) == entity_id

    def entities(self) -> list[tuple[str, str | None]]:
        """The (entity type, entity id) pairs a non-admin may see: its user, team and key, and `scopes`."""
        owned = [("user", self.user_id), ("team", self.team_id), ("key", self.key_hash)]
        return [(kind, id_) for kind, id_ in owned if id_ is not None] + sorted(self.scopes, key=str)


_Row = TypeVar("_Row")


def own_rows(query: Select[_Row], principal: Principal, team_id: Any, user_id: Any) -> Select[_Row] | None:
    """`query` narrowed to the rows `principal` may read by their `team_id` and `user_id` columns: every row for
    the admin, a viewer's team's and its own user's otherwise; None when a viewer has neither (it sees no row)."""
    if principal.is_admin:
        return query
    mine = [team_id == principal.team_id] if principal.team_id else []
    mine += [user_id == principal.user_id] if principal.user_id else []
    return query.where(or_(*mine)) if mine else None


def own_entities(principal: Principal, entity_type: Any, entity_id: Any) -> ColumnElement[bool]:
    """`Principal.can_see` as a condition on a row's `entity_type` and `entity_id` columns: true for every row for
    the admin; for a viewer, rows about its own user, team or key (false when it has none)."""
    if principal.is_admin:
        return true()
    return or_(
        false(),
        *(
            and_(entity_type == kind, entity_id.is_(None) if id_ is None else entity_id == id_)
            for kind, id_ in principal.entities()
        ),
    )


def require_admin(principal: Principal, action: str) -> None:
    if not principal.is_admin:
        raise Forbidden(f"{action} needs the admin role; this token is read-only ({principal.role})")


def hash_key(api_key: str) -> str:
    """LiteLLM's hash of a virtual key: sha256 hex of the raw key, `sk-` prefix included."""
    return hashlib.sha256(api_key.encode()).hexdigest()


@dataclass(frozen=True)
class TokenService:
    """Issues and checks the service's JWTs (HS256 only; exp, iat, iss and aud always required)."""

    secret: str
    ttl_seconds: int
    #: LITELLM_MASTER_KEY as configured now. A master-key token names the key that minted it, and is refused once
    #: the key is replaced (a leaked key's tokens end with it, as a rotated admin key's do).
    master_key: str | None = None

    def _master_fingerprint(self) -> str | None:
        return hash_key(self.master_key)[:16] if self.master_key is not None else None

    def issue(self, principal: Principal, now: datetime) -> tuple[str, int]:
        claims: dict[str, Any] = {
            "sub": principal.subject,
            "role": principal.role.value,
            "iss": ISSUER,
            "aud": AUDIENCE,
            "iat": int(now.timestamp()),
            "exp": int((now + timedelta(seconds=self.ttl_seconds)).timestamp()),
            "jti": uuid.uuid4().hex,
        }
        for claim, value in (
            ("uid", principal.user_id),
            ("tid", principal.team_id),
            ("kh", principal.key_hash),
        ):
            if value is not None:
                claims[claim] = value
        if principal.subject == MASTER_SUBJECT and principal.is_admin:
            claims[_MASTER_CLAIM] = self._master_fingerprint()
        return jwt.encode(claims, self.secret, algorithm=ALGORITHM), self.ttl_seconds

    def verify(self, token: str) -> Principal:
        try:
            claims = jwt.decode(
                token,
                self.secret,
                algorithms=[ALGORITHM],
                audience=AUDIENCE,
                issuer=ISSUER,
                leeway=10,
                options={"require": ["exp", "iat", "iss", "aud", "sub", "role"]},
            )
            role = Role(claims["role"])
            lifetime = int(claims["exp"]) - int(claims["iat"])
        except (jwt.PyJWTError, ValueError, TypeError, OverflowError) as exc:
            raise Unauthenticated(f"invalid token: {exc}") from exc
        # A token lives as long as this service says (SPENDPLANE_JWT_TTL_SECONDS), however it was signed: one minted
        # for ten years with a leaked secret, or by an older configuration with a longer lifetime, is refused.
        if lifetime > self.ttl_seconds:
            raise Unauthenticated(
                f"invalid token: its lifetime ({lifetime} s) exceeds SPENDPLANE_JWT_TTL_SECONDS ({self.ttl_seconds} s)"
            )
        # (A token without the claim predates it: it lives out its TTL.)
        minted_by = claims.get(_MASTER_CLAIM)
        if (
            claims["sub"] == MASTER_SUBJECT
            and role is Role.ADMIN
            and minted_by is not None
            and minted_by != self._master_fingerprint()
        ):
            raise Unauthenticated("invalid token: the master key that issued it was replaced; log in again")
        return Principal(
            role=role,
            subject=str(claims["sub"]),
            user_id=claims.get("uid"),
            team_id=claims.get("tid"),
            key_hash=claims.get("kh"),
            expires_at=datetime.fromtimestamp(int(claims["exp"]), tz=UTC),
            issued_at=datetime.fromtimestamp(int(claims["iat"]), tz=UTC),
        )


def bearer_token(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


async def authenticate_api_key(
    session: AsyncSession, schema: LiteLLMSchema, master_key: str | None, api_key: str, now: datetime
) -> Principal:
    """Turn an API key into a principal, or raise Unauthenticated (never saying which check failed)."""
    if not api_key:
        raise Unauthenticated("api_key is required")
    if master_key is not None and hmac.compare_digest(api_key.encode(), master_key.encode()):
        return Principal(role=Role.ADMIN, subject=MASTER_SUBJECT)
    digest = hash_key(api_key)
    stored = await session.get(InstanceSecretRow, ADMIN_KEY_SHA256)
    if stored is not None and hmac.compare_digest(digest, stored.value):
        return Principal(role=Role.ADMIN, subject=ADMIN_SUBJECT)
    if api_key.startswith("sk-") and schema.has_table(verification_tokens):
        return await _virtual_key_principal(session, schema, digest, now)
    raise Unauthenticated("invalid api key")


async def _virtual_key_principal(session: AsyncSession, schema: LiteLLMSchema, digest: str, now: datetime) -> Principal:
    t = verification_tokens
    columns = [t.c.token, t.c.user_id, t.c.team_id]
    for optional in ("key_alias", "blocked", "expires"):
        if schema.has(t, optional):
            columns.append(t.c[optional])
    row = (await session.execute(select(*columns).where(t.c.token == digest))).mappings().first()
    if row is None:
        raise Unauthenticated("invalid api key")
    if row.get("blocked"):
        raise Unauthenticated("this key is blocked in LiteLLM")
    expires = row.get("expires")
    if expires is not None and as_utc(expires) <= now:
        raise Unauthenticated("this key has expired in LiteLLM")
    return Principal(
        role=Role.VIEWER,
        subject=row.get("key_alias") or f"key:{digest[:12]}",
        user_id=row["user_id"],
        team_id=row["team_id"],
        key_hash=digest,
    )


@dataclass(frozen=True)
class InstanceSecrets:
    jwt_secret: str
    #: The admin key generated by this call (shown once), or None when one existed or a master key is set.
    new_admin_key: str | None
    admin_key_hash: str | None = None


async def ensure_instance_secrets(
    db: Database, *, jwt_secret: str | None, master_key: str | None, now: datetime
) -> InstanceSecrets:
    """Generate and persist what the first start needs. Safe when several replicas start at once."""
    secret = jwt_secret or await _get_or_create(db, _JWT_SECRET, secrets.token_urlsafe(48), now)
    new_admin_key = stored = None
    if master_key is None:
        candidate = ADMIN_KEY_PREFIX + secrets.token_urlsafe(32)
        stored = await _get_or_create(db, ADMIN_KEY_SHA256, hash_key(candidate), now)
        if stored == hash_key(candidate):
            new_admin_key = candidate
    return InstanceSecrets(jwt_secret=secret, new_admin_key=new_admin_key, admin_key_hash=stored)


async def rotate_admin_key(db: Database, now: datetime) -> str:
    key = ADMIN_KEY_PREFIX + secrets.token_urlsafe(32)
    async with db.sessions() as session, session.begin():
        row = await session.get(InstanceSecretRow, ADMIN_KEY_SHA256)
        if row is None:
            session.add(InstanceSecretRow(name=ADMIN_KEY_SHA256, value=hash_key(key), created_at=now))
        else:
            row.value = hash_key(key)
            row.created_at = now
    return key


async def _get_or_create(db: Database, name: str, value: str, now: datetime) -> str:
    async with db.sessions() as session:
        existing = await session.get(InstanceSecretRow, name)
        if existing is not None:
            return existing.value
        session.add(InstanceSecretRow(name=name, value=value, created_at=now))
        try:
            await session.commit()
        except IntegrityError:  # another replica won the race: use its value
            await session.rollback()
            winner = await session.get(InstanceSecretRow, name)
            assert winner is not None
            return winner.value
        return value
