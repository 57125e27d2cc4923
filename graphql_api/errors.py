"""Every GraphQL error leaves with a code (`extensions.code`); unexpected ones are logged and masked.

Domain errors keep their message, with the field renamed to its GraphQL (camelCase) spelling. Operations
without a valid token are refused before execution, introspection included.

Classification happens in `Schema.process_errors`, the one hook Strawberry calls for parse, validation,
execution and subscription errors alike; it edits the errors in place and is idempotent.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

from graphql import ExecutionResult as GraphQLExecutionResult
from graphql.error import GraphQLError
from strawberry.extensions import SchemaExtension
from strawberry.utils.str_converters import to_camel_case

from models.db import database_unreachable
from resolvers.errors import DomainError, InvalidInput, Unauthenticated, database_unavailable

log = logging.getLogger("spendplane.graphql")

_INPUT_ERROR_PREFIXES = ("Variable '$", "Expected value of type", "Argument '", "Field '")


def classify(error: GraphQLError) -> None:
    extensions = dict(error.extensions or {})
    if "code" in extensions:
        return
    original = error.original_error
    if isinstance(original, DomainError):
        extensions["code"] = original.code
        if original.retry_after is not None:
            extensions["retryAfter"] = original.retry_after
        if original.field is not None:
            field = to_camel_case(original.field)
            extensions["field"] = field
            if isinstance(original, InvalidInput):
                error.message = f"{field}: {original.problem}"
    elif (
        original is None
        or isinstance(original, GraphQLError)
        # A scalar's parser refusing a literal or a variable ('' is not a decimal number): validation and
        # variable coercion carry its exception but no path, unlike a resolver's.
        or (error.path is None and isinstance(original, ValueError | TypeError))
    ):  # parse, validation, variable coercion
        message = error.message
        if message.startswith("Syntax Error"):
            extensions["code"] = "GRAPHQL_PARSE_FAILED"
        elif message.startswith(_INPUT_ERROR_PREFIXES) and any(
            hint in message for hint in ("invalid value", "Expected", "required")
        ):
            extensions["code"] = "BAD_USER_INPUT"
        else:
            extensions["code"] = "GRAPHQL_VALIDATION_FAILED"
    elif database_unreachable(original):  # models/db.py: the drivers' connection errors, mapped in one place
        log.warning("database unreachable in GraphQL: %s", original)
        unavailable = database_unavailable()
        extensions["code"] = unavailable.code
        extensions["retryAfter"] = unavailable.retry_after
        error.message = unavailable.message
    else:
        log.error("GraphQL resolver failed: %s", error.message, exc_info=original)
        extensions["code"] = "INTERNAL_SERVER_ERROR"
        error.message = "Internal server error"
    error.extensions = extensions


class RequireToken(SchemaExtension):
    """No valid token, no execution: the operation answers a single UNAUTHENTICATED error."""

    def on_execute(self) -> Iterator[None]:
        context = self.execution_context.context
        if getattr(context, "principal", None) is None:
            refusal = Unauthenticated(
                "a valid token is required: POST /auth/login, then send Authorization: Bearer <token>"
            )
            error = GraphQLError(refusal.message, original_error=refusal)
            classify(error)
            self.execution_context.result = GraphQLExecutionResult(data=None, errors=[error])
        yield
