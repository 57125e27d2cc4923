"""What every REST route shares: JSON in and out, the error shape, the caller's identity."""

from __future__ import annotations

import json
import logging
from decimal import Decimal
from typing import Annotated, Any, TypeVar

import orjson
from pydantic import AfterValidator, BaseModel, ValidationError
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from models.db import DRIVER_ERRORS, database_unreachable
from resolvers.auth import Principal, bearer_token
from resolvers.platform.errors import DomainError, InvalidInput, Unauthenticated, database_unavailable
from resolvers.service.runtime import Runtime

log = logging.getLogger("spendplane.rest")

M = TypeVar("M", bound=BaseModel)


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("may not contain NUL characters")
    return value


#: A string field of a REST body: PostgreSQL cannot store NUL, so it is refused at the door (a 400).
Text = Annotated[str, AfterValidator(_no_nul)]


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        # JSON numbers, as the guide's examples show them; GraphQL carries money as exact strings.
        return int(value) if value == value.to_integral_value() else float(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


class JSON(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, default=_default, option=orjson.OPT_NON_STR_KEYS)


def error_response(
    status: int, code: str, message: str, field: str | None = None, headers: dict[str, str] | None = None
) -> JSON:
    error: dict[str, Any] = {"code": code, "message": message}
    if field is not None:
        error["field"] = field
    return JSON({"error": error}, status_code=status, headers=headers)


#: The largest request body either face reads (REST and POST /graphql): 32 MiB.
MAX_BODY_BYTES = 32 * 1024 * 1024


def body_too_large(limit: int) -> HTTPException:
    return HTTPException(413, f"the request body is larger than {limit} bytes")


class BodyLimit:
    """Requests whose body exceeds `max_bytes` are answered 413 with the JSON error body (`PAYLOAD_TOO_LARGE`), on
    every route of both faces. Starlette's own `max_body_size` answers `text/plain` whenever the route answered
    before reading the body (a refused token, a throttled caller), so this replaces it: a declared
    Content-Length over the limit is refused before the route runs; a chunked body that grows past it raises
    HTTPException(413) where the route reads it (answered by `on_http_error`), and whatever the route then
    answers instead is replaced by the same 413."""

    def __init__(self, app: ASGIApp, max_bytes: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refusal = body_too_large(self.max_bytes)
        declared = Headers(scope=scope).get("content-length", "")
        if declared.strip().isdigit() and int(declared) > self.max_bytes:
            await self._refuse(refusal, scope, receive, send)
            return
        received = 0
        over = replaced = False

        async def limited() -> Message:
            nonlocal received, over
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    over = True
                    raise refusal
            return message

        async def answer(message: Message) -> None:
            nonlocal replaced
            if replaced:
                return
            if over and message["type"] == "http.response.start" and message["status"] != 413:
                replaced = True
                await self._refuse(refusal, scope, receive, send)
                return
            await send(message)

        await self.app(scope, limited, answer)

    @staticmethod
    async def _refuse(refusal: HTTPException, scope: Scope, receive: Receive, send: Send) -> None:
        response = error_response(refusal.status_code, "PAYLOAD_TOO_LARGE", refusal.detail)
        await response(scope, receive, send)


def runtime_of(request: Request) -> Runtime:
    # The lifespan state as the ASGI scope carries it (`request.state` wraps the same dict, in one more object
    # per request: every gateway request asks).
    runtime: Runtime = request.scope["state"]["runtime"]
    return runtime


def caller(request: Request) -> Principal:
    token = bearer_token(request.headers.get("authorization"))
    if token is None:
        raise Unauthenticated("send Authorization: Bearer <token> (POST /auth/login gives one)")
    return runtime_of(request).authenticate(token)


async def read_json(request: Request) -> Any:
    body = await request.body()
    if not body.strip():
        raise InvalidInput("body", "a JSON object is required")
    return parse_json(body)


def parse_json(raw: bytes | str) -> Any:
    """orjson: fast, and strict (no NaN or Infinity, only valid UTF-8, no lone UTF-16 surrogates, at most 1024
    levels of nesting). Numbers become floats; pydantic's Decimal fields take a float through its shortest text
    (0.1 stays 0.1), so money keeps the digits the client wrote. Both faces read their JSON bodies here (GraphQL
    through its view), so a text no database can store is refused at the door, naming its field."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        if "surrogate" in str(exc):
            field = _surrogate_field(raw)
            if field is not None:
                raise InvalidInput(
                    field, "contains a lone UTF-16 surrogate (\\ud800-\\udfff), which is not text"
                ) from None
        raise InvalidInput("body", f"is not valid JSON ({exc})") from None


def _has_surrogate(text: str) -> bool:
    return any("\ud800" <= c <= "\udfff" for c in text)


def _surrogate_field(raw: bytes | str) -> str | None:
    """Where the lone surrogate orjson refused sits, as a dotted path (`name`, `variables.input.name`): the
    standard library's parser lets them through, so it finds the field (iteratively: no recursion on deep input)."""
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    stack: list[tuple[tuple[str, ...], Any]] = [((), value)]
    while stack:
        path, item = stack.pop()
        if isinstance(item, str):
            if _has_surrogate(item):
                return ".".join(path) or "body"
        elif isinstance(item, dict):
            for key, child in item.items():
                if _has_surrogate(key):
                    return ".".join(path) or "body"
                stack.append(((*path, key), child))
        elif isinstance(item, list):
            stack.extend(((*path, str(i)), child) for i, child in enumerate(item))
    return None


async def read_model(request: Request, model: type[M]) -> M:
    data = await read_json(request)
    if not isinstance(data, dict):
        raise InvalidInput("body", "must be a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        field = ".".join(str(part) for part in first["loc"]) or "body"
        raise InvalidInput(field, first["msg"].lower()) from None


async def on_domain_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, DomainError)
    headers = {"www-authenticate": "Bearer"} if exc.status == 401 else {}
    if exc.retry_after is not None:
        headers["retry-after"] = str(exc.retry_after)
    return error_response(exc.status, exc.code, exc.message, exc.field, headers or None)


async def on_http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    codes = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED", 413: "PAYLOAD_TOO_LARGE"}
    return error_response(
        exc.status_code,
        codes.get(exc.status_code, "HTTP_ERROR"),
        str(exc.detail),
        headers=dict(exc.headers or {}),
    )


async def on_driver_error(request: Request, exc: Exception) -> Response:
    """A database driver's error: 503 with Retry-After when the database cannot be reached (models/db.py
    `database_unreachable`, the one mapping both faces use), else an internal error."""
    if database_unreachable(exc):
        log.warning("database unreachable on %s %s: %s", request.method, request.url.path, exc)
        return await on_domain_error(request, database_unavailable())
    return await on_unexpected(request, exc)


async def on_unexpected(request: Request, exc: Exception) -> Response:
    if database_unreachable(exc):
        return await on_driver_error(request, exc)
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(500, "INTERNAL_SERVER_ERROR", "internal server error")


# Driver errors are handled inside the app (Starlette's ExceptionMiddleware), so an outage is a 503 and one log
# line, not a traceback; the catch-all `Exception` handler only runs for real bugs.
EXCEPTION_HANDLERS = {
    DomainError: on_domain_error,
    HTTPException: on_http_error,
    **dict.fromkeys(DRIVER_ERRORS, on_driver_error),
    Exception: on_unexpected,
}
