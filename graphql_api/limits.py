"""What a GraphQL operation may ask before it runs: introspection depth, and the schema hints an anonymous caller
does not get.

Strawberry's QueryDepthLimiter skips every `__`-field, so `{ __schema { types { fields { type { ... } } } } }`
escaped the depth limit; `introspection_depth_rule` counts those subtrees against SPENDPLANE_MAX_INTROSPECTION_DEPTH
(graphql-core's MaxIntrospectionDepthRule, one of its specified rules, separately stops the
`fields`/`interfaces`/`possibleTypes` cycles after three lists).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

import orjson
from graphql import (
    ASTValidationRule,
    FieldNode,
    FragmentSpreadNode,
    GraphQLError,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
    ValidationContext,
    ValidationRule,
)
from graphql import ExecutionResult as GraphQLExecutionResult
from graphql.language import SKIP
from starlette.websockets import WebSocket
from strawberry.extensions import SchemaExtension
from strawberry.types.graphql import OperationType

from graphql_api.context import Context
from graphql_api.errors import classify
from resolvers.platform.errors import ResponseBudget, ResponseTooLarge

_SUGGESTION = re.compile(r"\s*Did you mean\b.*\?\s*$", re.DOTALL)


def hide_suggestions(error: GraphQLError) -> None:
    """Drop graphql-core's "Did you mean 'budgets'?" hints (fields, arguments, types, enum values): without a
    token they would spell out the schema that introspection refuses to show."""
    if error.original_error is None or isinstance(error.original_error, GraphQLError):
        error.message = _SUGGESTION.sub("", error.message)


def _depth(selections: SelectionSetNode | None, context: ValidationContext, limit: int, seen: frozenset[str]) -> int:
    """The nesting below `selections` (fields with a selection set count one), stopping once past `limit`."""
    if selections is None or limit < 0:
        return 0
    deepest = 0
    for node in selections.selections:
        if isinstance(node, FieldNode):
            found = 1 + _depth(node.selection_set, context, limit - 1, seen) if node.selection_set else 0
        elif isinstance(node, InlineFragmentNode):
            found = _depth(node.selection_set, context, limit, seen)
        elif isinstance(node, FragmentSpreadNode):
            name = node.name.value
            fragment = context.get_fragment(name)
            found = 0
            if fragment is not None and name not in seen:
                found = _depth(fragment.selection_set, context, limit, seen | {name})
        else:  # pragma: no cover - the three selection kinds above are all there are
            found = 0
        deepest = max(deepest, found)
        if deepest > limit:
            break
    return deepest


def _root_fields(selections: SelectionSetNode, context: ValidationContext, seen: frozenset[str]) -> list[FieldNode]:
    fields: list[FieldNode] = []
    for node in selections.selections:
        if isinstance(node, FieldNode):
            fields.append(node)
        elif isinstance(node, InlineFragmentNode):
            fields += _root_fields(node.selection_set, context, seen)
        elif isinstance(node, FragmentSpreadNode) and node.name.value not in seen:
            fragment = context.get_fragment(node.name.value)
            if fragment is not None:
                fields += _root_fields(fragment.selection_set, context, seen | {node.name.value})
    return fields


def introspection_depth_rule(max_depth: int) -> type[ASTValidationRule]:
    """A validation rule refusing introspection (`__schema`, `__type`) nested deeper than `max_depth`, counted as
    QueryDepthLimiter counts ordinary queries."""

    class IntrospectionDepthLimit(ValidationRule):
        def enter_operation_definition(self, node: OperationDefinitionNode, *_: Any) -> Any:
            name = node.name.value if node.name else "anonymous"
            for field in _root_fields(node.selection_set, self.context, frozenset()):
                if not field.name.value.startswith("__") or field.selection_set is None:
                    continue
                if 1 + _depth(field.selection_set, self.context, max_depth, frozenset()) > max_depth:
                    self.report_error(
                        GraphQLError(f"'{name}' exceeds maximum introspection depth of {max_depth}", [field])
                    )
                    break
            return SKIP

    return IntrospectionDepthLimit


class SocketResponseBudget(SchemaExtension):
    """A query or mutation sent over the WebSocket (graphql-transport-ws runs them besides subscriptions) is held to
    SPENDPLANE_MAX_RESPONSE_BYTES as a POSTed one is: it gets a response budget of its own (the connection's
    context is shared by its operations, so the operation runs with a copy carrying it), and an answer past the
    limit is replaced by one RESPONSE_TOO_LARGE error, the view's backstop for HTTP. Before, neither applied on
    the socket: twenty aliased exports left in one message. A subscription's events are single rows."""

    def on_execute(self) -> Iterator[None]:
        execution = self.execution_context
        context = execution.context
        if not isinstance(context, Context) or not isinstance(context.request, WebSocket):
            yield
            return
        if execution.operation_type is OperationType.SUBSCRIPTION:
            yield
            return
        limit = context.runtime.settings.max_response_bytes
        execution.context = replace(context, response_budget=ResponseBudget(limit))
        yield
        result = execution.result
        if isinstance(result, GraphQLExecutionResult) and result.data is not None:
            errors = [e.formatted for e in result.errors or ()]
            if len(orjson.dumps({"data": result.data, "errors": errors}, default=str)) > limit:
                refusal = ResponseTooLarge(
                    f"the answer would pass {limit} bytes (SPENDPLANE_MAX_RESPONSE_BYTES): ask for fewer or smaller "
                    "fields per operation, or download exports from their url"
                )
                error = GraphQLError(refusal.message, original_error=refusal)
                classify(error)
                result.data, result.errors = None, [error]
