"""The Strawberry ASGI view: builds the context and authenticates WebSocket connections at connection_init."""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import AsyncGenerator
from importlib import resources
from typing import Any

import orjson
from cross_web import AsyncHTTPRequestAdapter
from cross_web import HTTPException as ViewRefusal
from graphql import GraphQLError
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState
from strawberry.asgi import ASGIWebSocketAdapter, GraphQL
from strawberry.exceptions import ConnectionRejectionError, MissingQueryError
from strawberry.http import GraphQLHTTPResponse, GraphQLRequestData
from strawberry.http.exceptions import NonTextMessageReceived
from strawberry.schema.exceptions import CannotGetOperationTypeError, InvalidOperationTypeError
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import BaseGraphQLTransportWSHandler
from strawberry.types import ExecutionResult
from strawberry.types.graphql import OperationType

from graphql_api.context import Context
from graphql_api.errors import operation_problem
from resolvers.auth import bearer_token
from resolvers.platform.errors import InvalidInput, ResponseBudget, ResponseTooLarge, Unauthenticated
from resolvers.platform.periods import utcnow
from resolvers.service.runtime import Runtime
from webhook.rest import MAX_BODY_BYTES, error_response, parse_json

#: The GraphiQL page, its assets served by spendplane itself (see graphql_api/static/graphiql/VERSIONS.md).
GRAPHIQL_HTML = resources.files("graphql_api").joinpath("static/graphiql.html").read_text(encoding="utf-8")
#: Where the app mounts them (graphql_api/app.py); the page refers to them relative to /graphql.
GRAPHIQL_ASSETS_PATH = "/graphiql-assets"
GRAPHIQL_ASSETS_PACKAGE = ("graphql_api", "static/graphiql")


#: graphql-transport-ws's close code for an invalid message, and WebSocket's for one too big (RFC 6455).
INVALID_MESSAGE_CLOSE_CODE = 4400
MESSAGE_TOO_BIG_CLOSE_CODE = 1009


class StrictWebSocketAdapter(ASGIWebSocketAdapter):
    """graphql-transport-ws messages are read like POST /graphql bodies: by the same strict reader (`parse_json`:
    valid UTF-8, no lone surrogates, at most 1024 levels of nesting) and within the same size (MAX_BODY_BYTES),
    and each is a JSON object. Anything else closes the connection, 4400 (1009 past the size) with the reason naming
    it, instead of an exception escaping Strawberry's handler (it only catches a JSONDecodeError)."""

    async def iter_json(self, *, ignore_parsing_errors: bool = False) -> AsyncGenerator[object, None]:
        try:
            while self.ws.application_state != WebSocketState.DISCONNECTED:
                text = await self.ws.receive_text()
                try:
                    # (A character takes at most 4 bytes: short messages are not encoded to be measured.)
                    if len(text) > MAX_BODY_BYTES // 4 and len(text.encode("utf-8", "surrogatepass")) > MAX_BODY_BYTES:
                        await self._refuse(MESSAGE_TOO_BIG_CLOSE_CODE, f"message: larger than {MAX_BODY_BYTES} bytes")
                        return
                    message = parse_json(text)
                    if not isinstance(message, dict):
                        raise InvalidInput("message", "must be a JSON object")
                except InvalidInput as exc:
                    if ignore_parsing_errors:
                        continue
                    await self._refuse(INVALID_MESSAGE_CLOSE_CODE, exc.message)
                    return
                yield message
        except KeyError as exc:  # a binary frame: Strawberry closes 4400 "WebSocket message type must be text"
            raise NonTextMessageReceived from exc
        except WebSocketDisconnect:
            pass

    async def _refuse(self, code: int, reason: str) -> None:
        # A close frame's reason holds at most 123 bytes.
        await self.close(code, reason.encode()[:123].decode(errors="ignore"))


#: What an HTTP request may run: queries and mutations, by POST. Subscriptions run over graphql-transport-ws (on
#: HTTP, Strawberry would run one as a query and fail inside: an INTERNAL_SERVER_ERROR); GET serves GraphiQL only.
HTTP_OPERATIONS = {"POST": frozenset({OperationType.QUERY, OperationType.MUTATION}), "GET": frozenset()}
#: Where /graphql answers a method it does not take (GET for GraphiQL, POST for operations).
GRAPHQL_METHODS = "GET, POST"


def refusal_response(refused: ViewRefusal) -> Response:
    """Strawberry's own refusals of an HTTP request (before any operation runs), in the REST error shape with a
    4xx naming the part at fault, instead of its plain-text reason."""
    reason, status = refused.reason, refused.status_code
    if status == 405:
        return error_response(
            405, "METHOD_NOT_ALLOWED", f"/graphql takes {GRAPHQL_METHODS}", headers={"allow": GRAPHQL_METHODS}
        )
    if status == 404:
        return error_response(404, "NOT_FOUND", "nothing is served on GET here: POST GraphQL operations as JSON")
    if reason == "Unsupported content type":
        return error_response(
            415,
            "UNSUPPORTED_MEDIA_TYPE",
            "content-type: send the operation as application/json",
            "content-type",
        )
    field = next((name for name in ("query", "variables", "extensions") if f"`{name}`" in reason), "body")
    return error_response(400, InvalidInput.code, f"{field}: {reason}", field)


class SocketHandler(BaseGraphQLTransportWSHandler[Context, None]):
    """Strawberry's graphql-transport-ws handler, but an operation that cannot be chosen (an operationName naming
    none, or several operations and none named) is an `error` message for that operation, in the shape of every
    other refusal (BAD_USER_INPUT naming operationName), instead of closing the whole connection 4400."""

    @staticmethod
    def _get_pre_execution_close_reason(error: GraphQLError) -> str | None:
        if isinstance(error.original_error, CannotGetOperationTypeError):
            return None
        return BaseGraphQLTransportWSHandler._get_pre_execution_close_reason(error)


class GraphQLView(GraphQL[Context, None]):
    websocket_adapter_class = StrictWebSocketAdapter
    graphql_transport_ws_handler_class = SocketHandler

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        request = Request(scope=scope, receive=receive)
        try:
            response = await self.run(request)
        except ViewRefusal as refused:
            response = refusal_response(refused)
        await response(scope, receive, send)

    async def execute_single(
        self,
        request: Request,
        request_adapter: AsyncHTTPRequestAdapter,
        sub_response: Response,
        context: Context,
        root_value: None,
        request_data: GraphQLRequestData,
    ) -> ExecutionResult:
        """Strawberry's, with HTTP held to `HTTP_OPERATIONS`, and each refusal naming the part of the request at
        fault (answered 400 in the REST error shape by the app's handlers)."""
        try:
            return await self.schema.execute(
                request_data.query,
                root_value=root_value,
                variable_values=request_data.variables,
                context_value=context,
                operation_name=request_data.operation_name,
                allowed_operation_types=HTTP_OPERATIONS.get(request_adapter.method, frozenset()),
                operation_extensions=request_data.extensions,
            )
        except MissingQueryError:
            raise InvalidInput("query", "is required: a GraphQL document as a string") from None
        except CannotGetOperationTypeError as exc:  # an operationName naming none, or several and none named
            raise InvalidInput(*operation_problem(exc)) from None
        except InvalidOperationTypeError as exc:
            if request_adapter.method != "POST":
                raise InvalidInput(
                    "query", "send GraphQL operations with POST as application/json (GET serves GraphiQL only)"
                ) from None
            kind = exc.operation_type.value  # over POST, only a subscription is refused
            raise InvalidInput(
                "query", f"a {kind} runs over WebSocket (graphql-transport-ws on /graphql), not over HTTP"
            ) from None

    def __init__(self, *args: Any, max_response_bytes: int | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: SPENDPLANE_MAX_RESPONSE_BYTES: no HTTP answer leaves larger (see create_response).
        self._max_response_bytes = max_response_bytes

    async def render_graphql_ide(self, request: Request) -> Response:
        """Strawberry's GraphiQL page, but with no CDN: every script and stylesheet comes from this server."""
        return HTMLResponse(GRAPHIQL_HTML)

    def decode_json(self, data: str | bytes) -> object:
        """The REST shim's strict reader (webhook/rest.py `parse_json`): invalid UTF-8, lone surrogates and deep
        nesting are a 400 naming the field, as is a body that is not a JSON object (`null`, a number)."""
        value = parse_json(data)
        if not isinstance(value, dict):  # a list would be a batch: not taken
            raise InvalidInput("body", "must be a JSON object with a `query` (one operation per request)")
        return value

    async def get_context(self, request: Request | WebSocket, response: Response | WebSocket) -> Context:
        runtime: Runtime = request.state.runtime
        context = Context(request=request, response=response, runtime=runtime)
        if isinstance(request, Request):
            context.response_budget = ResponseBudget(runtime.settings.max_response_bytes)
            token = bearer_token(request.headers.get("authorization"))
            if token is not None:
                try:
                    context.principal = runtime.authenticate(token)
                except Unauthenticated:
                    context.principal = None  # the operation is refused with UNAUTHENTICATED
        return context

    def create_response(
        self, response_data: GraphQLHTTPResponse | list[GraphQLHTTPResponse], sub_response: Response
    ) -> Response:
        """The backstop of SPENDPLANE_MAX_RESPONSE_BYTES: whatever produced them, an answer past the limit leaves as
        one coded RESPONSE_TOO_LARGE error instead."""
        response = super().create_response(response_data, sub_response)
        limit = self._max_response_bytes
        if limit is not None and len(response.body) > limit:
            refusal = ResponseTooLarge(
                f"the answer would pass {limit} bytes (SPENDPLANE_MAX_RESPONSE_BYTES): ask for fewer or smaller "
                "fields per operation, or download exports from their url"
            )
            error = {"message": refusal.message, "extensions": {"code": refusal.code}}
            response.body = orjson.dumps({"data": None, "errors": [error]})
            response.headers["content-length"] = str(len(response.body))
        return response

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
            context.principal = context.runtime.authenticate(token)
        except Unauthenticated as exc:
            raise ConnectionRejectionError({"code": "UNAUTHENTICATED", "message": exc.message}) from None
        task = asyncio.create_task(_close_when_invalid(context))
        _watchers.add(task)
        task.add_done_callback(_watchers.discard)
        return {"role": context.principal.role.value}


#: Close code for a connection whose token expired or was revoked (graphql-transport-ws's 4401 Unauthorized).
TOKEN_INVALID_CLOSE_CODE = 4401
_watchers: set[asyncio.Task[None]] = set()


async def _close_when_invalid(context: Context) -> None:
    """A WebSocket lives only as long as its token: closed (4401) at its expiry, or within SPEND_REFRESH_SECONDS of
    its revocation (admin key rotated, LiteLLM key blocked)."""
    websocket, principal, runtime = context.request, context.principal, context.runtime
    assert isinstance(websocket, WebSocket)
    assert principal is not None
    while websocket.client_state is not WebSocketState.DISCONNECTED:
        left = (principal.expires_at - utcnow()).total_seconds() if principal.expires_at else math.inf
        await asyncio.sleep(max(0.0, min(left, runtime.settings.spend_refresh_seconds)))
        if websocket.application_state is WebSocketState.DISCONNECTED:
            return
        try:
            if principal.expires_at is not None and principal.expires_at <= utcnow():
                raise Unauthenticated("the token expired; reconnect with a fresh one")
            if runtime.guard is not None:
                runtime.guard.check(principal)
        except Unauthenticated as exc:
            with contextlib.suppress(RuntimeError, OSError):
                await websocket.close(TOKEN_INVALID_CLOSE_CODE, exc.message[:120])
            return
