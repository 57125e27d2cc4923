"""Every GraphQL error leaves with a code (`extensions.code`); unexpected ones are logged and masked.

Domain errors keep their message, with the field renamed to its GraphQL (camelCase) spelling. Operations
without a valid token are refused before execution, introspection included.

Classification happens in `Schema.process_errors`, the one hook Strawberry calls for parse, validation,
execution and subscription errors alike; it edits the errors in place and is idempotent.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator

from graphql import ExecutionResult as GraphQLExecutionResult
from graphql.error import GraphQLError
from graphql.language import (
    SKIP,
    ArgumentNode,
    ListValueNode,
    Node,
    ObjectFieldNode,
    ObjectValueNode,
    OperationDefinitionNode,
    ValueNode,
    VariableNode,
    VisitorAction,
    parse,
)
from graphql.type import GraphQLInputType
from graphql.utilities.validate_input_value import validate_input_literal
from graphql.validation import ValuesOfCorrectTypeRule
from strawberry.extensions import SchemaExtension
from strawberry.schema.exceptions import CannotGetOperationTypeError
from strawberry.utils.str_converters import to_camel_case

from models.db import database_unreachable
from resolvers.platform.errors import DomainError, InvalidInput, Unauthenticated, database_unavailable

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
    elif isinstance(original, CannotGetOperationTypeError):  # over the WebSocket (HTTP: the view's execute_single)
        field, problem = operation_problem(original)
        extensions["code"] = InvalidInput.code
        extensions["field"] = field
        error.message = f"{field}: {problem}"
    elif (
        original is None
        or isinstance(original, GraphQLError)
        # A scalar's parser refusing a literal or a variable ('' is not a decimal number): validation and
        # variable coercion carry its exception but no path, unlike a resolver's.
        or (error.path is None and isinstance(original, ValueError | TypeError))
    ):  # parse, validation, variable coercion
        message = error.message
        named = None if message.startswith("Syntax Error") else input_field(error)
        if message.startswith("Syntax Error"):
            extensions["code"] = "GRAPHQL_PARSE_FAILED"
        elif named is not None or (
            message.startswith(_INPUT_ERROR_PREFIXES)
            and any(hint in message for hint in ("invalid value", "Expected", "required"))
        ):
            extensions["code"] = "BAD_USER_INPUT"
            if named is not None:
                extensions["field"] = named
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


#: graphql-core's messages for a variable's value that cannot be coerced ("Variable '$i' has invalid value at
#: .limit: ..."), an argument left out ("Argument 'Query.budget(id:)' of type 'ID!' is required ...") and an
#: input object's missing or unknown field ("... to include required field 'name' ...").
_VARIABLE = re.compile(r"^Variable '\$(\w+)' has invalid value(?: at ((?:\.\w+|\[\d+\])+))?:")
_ARGUMENT = re.compile(r"^Argument '[^']*\((\w+):\)' of type '[^']*' is required")
_OBJECT_FIELD = re.compile(r"to include (?:required|unknown) field '(\w+)'")


def input_field(error: GraphQLError) -> str | None:
    """The argument or input field a bad value was given for, as the client wrote it: a variable's name and the
    path inside its value (`input.limit`, `ids[1]`), or the path of an inline literal inside the operation's
    arguments. None when the error is about no input value (an unknown field, a depth limit ...)."""
    message = error.message
    if found := _VARIABLE.match(message):
        field = found[1] + (found[2] or "")
    elif found := _ARGUMENT.match(message):
        return found[1]
    else:
        # A literal the ValuesOfCorrectType rule refused: its error's node is the value itself. (A variable in
        # the wrong position is a genuine validation error; its node is the VariableNode.)
        # An input object's unknown field is reported on that field's node.
        node = error.nodes[0] if error.nodes else None
        if isinstance(node, ObjectFieldNode):
            return _literal_path(error, node)
        if not isinstance(node, ValueNode) or isinstance(node, VariableNode):
            return None
        path = _literal_path(error, node)
        if path is None:
            return None
        field = path
    if inner := _OBJECT_FIELD.search(message):
        field += f".{inner[1]}"
    return field


def _literal_path(error: GraphQLError, value: ValueNode | ObjectFieldNode) -> str | None:
    """Where `value` (or an input object's field) sits in the operation's arguments: `input.limit`, `ids[1]`
    (the document is parsed again: graphql-core's nodes know no parents; only refused operations pay for it)."""
    if value.loc is None or error.source is None:
        return None
    try:
        document = parse(error.source)
    except GraphQLError:
        return None
    span = (value.loc.start, value.loc.end)

    def walk(node: Node, path: str) -> str | None:
        if isinstance(node, ArgumentNode | ObjectFieldNode):
            path = f"{path}.{node.name.value}" if path else node.name.value
        if isinstance(node, type(value)) and node.loc is not None and (node.loc.start, node.loc.end) == span:
            return path or None
        for key in node.keys:
            child = getattr(node, key, None)
            items = list(child) if isinstance(child, tuple | list) else [child]
            for index, item in enumerate(items):
                if not isinstance(item, Node) or item.loc is None:
                    continue
                if item.loc.start <= span[0] and span[1] <= item.loc.end:
                    inner = f"{path}[{index}]" if isinstance(node, ListValueNode) else path
                    found = walk(item, inner)
                    if found is not None:
                        return found
        return None

    return walk(document, "")


class _LocatedValuesOfCorrectType(ValuesOfCorrectTypeRule):
    """graphql-core's rule, but a scalar parser's own GraphQLError (Strawberry's coercion errors, e.g. a DateTime
    with no UTC equivalent) is reported on the literal it refused, as the rule's other errors are: graphql-core
    reports it without a node, and `input_field` could not name the argument."""

    def is_valid_value_node(self, node: ValueNode, input_type: GraphQLInputType | None) -> VisitorAction:
        if input_type:

            def on_error(error: GraphQLError, path: list[str | int]) -> None:
                if not error.nodes:
                    error = GraphQLError(
                        error.message,
                        _inner_value(node, path),
                        original_error=error.original_error,
                        extensions=error.extensions,
                    )
                self.report_error(error)

            validate_input_literal(node, input_type, on_error, None, None, self.context.hide_suggestions)
        return SKIP


def _inner_value(node: ValueNode, path: list[str | int]) -> ValueNode:
    """The literal at `path` inside `node` (an input object's field by name, a list's item by index)."""
    for step in path:
        if isinstance(node, ObjectValueNode) and isinstance(step, str):
            inner = next((f.value for f in node.fields if f.name.value == step), None)
        elif isinstance(node, ListValueNode) and isinstance(step, int) and step < len(node.values):
            inner = node.values[step]
        else:
            inner = None
        if inner is None:
            return node
        node = inner
    return node


class LocateBadLiterals(SchemaExtension):
    """Validation with `_LocatedValuesOfCorrectType` in place of graphql-core's ValuesOfCorrectTypeRule."""

    def on_operation(self) -> Iterator[None]:
        context = self.execution_context
        context.validation_rules = tuple(
            _LocatedValuesOfCorrectType if rule is ValuesOfCorrectTypeRule else rule
            for rule in context.validation_rules
        )
        yield


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


class OperationNotChosen(CannotGetOperationTypeError):
    """A document of several operations sent without an operationName (GraphQL spec, Executing Requests,
    GetOperation: a request error). Strawberry's own refusal of an operationName that names no operation, which
    this extends, is answered by both faces; Strawberry ran the first operation here."""

    def __init__(self, operations: int) -> None:
        super().__init__(None)
        self.operations = operations


class ChooseOneOperation(SchemaExtension):
    """Refuses a document of several operations without an operationName as soon as it is parsed: before its
    operation type is looked at (a subscription first over HTTP is refused for the missing name) and before
    anything runs. The view answers 400 naming operationName; the WebSocket an `error` message (see `classify`)."""

    def on_parse(self) -> Iterator[None]:
        yield
        context = self.execution_context
        document = context.graphql_document
        # The name the request gave: `operation_name` falls back to the first operation's (how Strawberry came to
        # run it), so the one provided is read (Strawberry keeps it in this attribute; tests/test_graphql_http.py).
        if document is None or getattr(context, "_provided_operation_name", None) is not None:
            return
        operations = sum(isinstance(d, OperationDefinitionNode) for d in document.definitions)
        if operations > 1:
            raise OperationNotChosen(operations)


def operation_problem(refused: CannotGetOperationTypeError) -> tuple[str, str]:
    """The part of the request at fault when no operation could be chosen to run, and what is wrong with it."""
    if isinstance(refused, OperationNotChosen):
        return "operationName", f"the document has {refused.operations} operations: name the one to run"
    name: object = refused.operation_name
    if name is None:
        return "query", "holds no operation (only fragments): send a query, mutation or subscription"
    if not isinstance(name, str):
        return "operationName", "must be a string"
    return "operationName", f"no operation named {name[:100]!r} in the document"
