"""`me`: who the current token belongs to and what it may do."""

from __future__ import annotations

from datetime import datetime

import strawberry

from graphql_api.context import Info
from resolvers.auth import Role

strawberry.enum(Role, name="Role", description="ADMIN may change everything; VIEWER reads its own scope.")


@strawberry.type(name="Me")
class MeType:
    role: Role
    subject: str = strawberry.field(description="master-key, admin-key, or the LiteLLM key's alias.")
    user_id: str | None = strawberry.field(description="LiteLLM user the key belongs to (viewers).")
    team_id: str | None = strawberry.field(description="LiteLLM team the key belongs to (viewers).")
    expires_at: datetime | None


@strawberry.type
class MeQueries:
    @strawberry.field(description="The caller, as the token says.")
    def me(self, info: Info) -> MeType:
        p = info.context.caller()
        return MeType(role=p.role, subject=p.subject, user_id=p.user_id, team_id=p.team_id, expires_at=p.expires_at)
