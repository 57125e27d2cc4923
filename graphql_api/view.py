"""The Strawberry ASGI view: builds the context and authenticates WebSocket connections at connection_init."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.exceptions import ConnectionRejectionError

from graphql_api.context import Context
from resolvers.auth import bearer_token
from resolvers.errors import Unauthenticated
from resolvers.runtime import Runtime


class GraphQLView(GraphQL[Context, None]):
    async def get_context(self, request: Request | WebSocket, response: Response | WebSocket) -> Context:
        runtime: Runtime = request.state.runtime
        context = Context(request=request, response=response, runtime=runtime)
        if isinstance(request, Request):
            token = bearer_token(request.headers.get("authorization"))
            if token is not None:
                try:
                    context.principal = runtime.tokens.verify(token)
                except Unauthenticated:
                    context.principal = None  # the operation is refused with UNAUTHENTICATED
        return context

    async def on_ws_connect(self, context: Context) -> dict[str, Any]:
        """Browsers cannot set headers on a WebSocket: the token travels in the connection_init payload
        (`{"authorization": "Bearer <jwt>"}` or `{"token": "<jwt>"}`); an Authorization header also works."""
        params = context.connection_params if isinstance(context.connection_params, dict) else {}
        raw = params.get("authorization") or params.get("Authorization") or params.get("token")
        token = None
        if isinstance(raw, str):
            token = bearer_token(raw) if raw.lower().startswith("bearer ") else raw.strip() or None
        if token is None:
            token = bearer_token(context.request.headers.get("authorization"))
        if token is None:
            raise ConnectionRejectionError(
                {
                    "code": "UNAUTHENTICATED",
                    "message": 'send the token in connection_init: {"authorization": "Bearer <jwt>"}',
                }
            )
        try:
            context.principal = context.runtime.tokens.verify(token)
        except Unauthenticated as exc:
            raise ConnectionRejectionError({"code": "UNAUTHENTICATED", "message": exc.message}) from None
        return {"role": context.principal.role.value}
