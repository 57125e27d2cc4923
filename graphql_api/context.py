"""The per-request (or per-WebSocket-connection) GraphQL context."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import strawberry
from starlette.requests import Request
from starlette.responses import Response
from starlette.websockets import WebSocket

from resolvers.auth import Principal
from resolvers.platform.errors import ResponseBudget, Unauthenticated
from resolvers.service.runtime import Runtime


@dataclass
class Context:
    request: Request | WebSocket
    response: Response | WebSocket | None
    runtime: Runtime
    principal: Principal | None = None
    #: Set by Strawberry from the graphql-transport-ws connection_init payload.
    connection_params: dict[str, Any] | None = field(default=None)
    #: What this operation may still answer, in bytes (SPENDPLANE_MAX_RESPONSE_BYTES); set per HTTP request.
    response_budget: ResponseBudget | None = None

    def caller(self) -> Principal:
        if self.principal is None:
            raise Unauthenticated("a valid token is required: POST /auth/login, then send Authorization: Bearer")
        return self.principal


Info = strawberry.Info[Context, None]
