"""The one GraphQL schema, assembled from the areas' query, mutation and subscription types."""

from __future__ import annotations

from typing import Any

import strawberry
from graphql.error import GraphQLError
from strawberry.extensions import (
    AddValidationRules,
    MaxAliasesLimiter,
    MaxTokensLimiter,
    ParserCache,
    QueryDepthLimiter,
    ValidationCache,
)
from strawberry.schema.config import StrawberryConfig
from strawberry.types.execution import ExecutionContext

from graphql_api.alerts import AlertQueries, AlertSubscriptions
from graphql_api.anomalies import AnomalyMutations, AnomalyQueries
from graphql_api.budgets import BudgetMutations, BudgetQueries, BudgetSubscriptions
from graphql_api.chargeback import ChargebackMutations, ChargebackQueries
from graphql_api.errors import ChooseOneOperation, LocateBadLiterals, RequireToken, classify
from graphql_api.forecasts import ForecastMutations, ForecastQueries
from graphql_api.instance import InstanceQueries
from graphql_api.limits import SocketResponseBudget, hide_suggestions, introspection_depth_rule
from graphql_api.me import MeQueries
from graphql_api.pricing import PricingMutations, PricingQueries
from graphql_api.reports import ReportMutations, ReportQueries
from graphql_api.requests import RequestQueries
from graphql_api.scalars import SCALAR_MAP
from graphql_api.settings import SettingsMutations, SettingsQueries
from graphql_api.sla import SlaMutations, SlaQueries, SlaSubscriptions
from resolvers.platform.config import Settings


@strawberry.type(description="Read the budgets, spend and settings the caller may see.")
class Query(
    BudgetQueries,
    AlertQueries,
    PricingQueries,
    SettingsQueries,
    MeQueries,
    ReportQueries,
    ChargebackQueries,
    ForecastQueries,
    SlaQueries,
    AnomalyQueries,
    RequestQueries,
    InstanceQueries,
):
    pass


@strawberry.type(description="Change budgets and settings (admin role).")
class Mutation(
    BudgetMutations,
    PricingMutations,
    SettingsMutations,
    ReportMutations,
    ChargebackMutations,
    ForecastMutations,
    SlaMutations,
    AnomalyMutations,
):
    pass


@strawberry.type(description="Live updates over graphql-transport-ws; send the token in connection_init.")
class Subscription(BudgetSubscriptions, AlertSubscriptions, SlaSubscriptions):
    pass


class SpendplaneSchema(strawberry.Schema):
    def process_errors(self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None) -> None:
        # Expected errors (bad input, auth, not found) are answers, not incidents: only the unexpected are
        # logged (by classify), then masked. Without a valid token, no "Did you mean ...?" schema hints.
        anonymous = execution_context is None or getattr(execution_context.context, "principal", None) is None
        for error in errors:
            classify(error)
            if anonymous:
                hide_suggestions(error)


def build_schema(settings: Settings | None = None) -> SpendplaneSchema:
    settings = settings or Settings()
    extensions: list[Any] = [
        LocateBadLiterals,  # first: it swaps a validation rule before any extension validates
        lambda: QueryDepthLimiter(max_depth=settings.max_query_depth),
        # QueryDepthLimiter skips `__` fields: introspection has a depth limit of its own.
        lambda: AddValidationRules([introspection_depth_rule(settings.max_introspection_depth)]),
        lambda: MaxTokensLimiter(max_token_count=settings.max_query_tokens),
        lambda: MaxAliasesLimiter(max_alias_count=settings.max_query_aliases),
        lambda: ParserCache(maxsize=256),
        ChooseOneOperation,  # after the parse: several operations need an operationName
        lambda: ValidationCache(maxsize=256),
        RequireToken,
        SocketResponseBudget,
    ]
    return SpendplaneSchema(
        query=Query,
        mutation=Mutation,
        subscription=Subscription,
        config=StrawberryConfig(scalar_map=SCALAR_MAP),
        extensions=extensions,
    )


def sdl(schema: strawberry.Schema | None = None) -> str:
    """The schema as committed in schema.graphql (CI fails when they differ)."""
    return str(schema or build_schema()) + "\n"
