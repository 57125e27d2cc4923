"""What a GraphQL operation may ask before it runs: introspection depth, and the schema hints an anonymous caller
does not get.

Strawberry's QueryDepthLimiter skips every `__`-field, so `{ __schema { types { fields { type { ... } } } } }`
escaped the depth limit; `introspection_depth_rule` counts those subtrees against SPENDPLANE_MAX_INTROSPECTION_DEPTH
(graphql-core's MaxIntrospectionDepthRule, one of its specified rules, separately stops the
`fields`/`interfaces`/`possibleTypes` cycles after three lists).
"""

from __future__ import annotations

import re
from typing import Any

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
from graphql.language import SKIP

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
