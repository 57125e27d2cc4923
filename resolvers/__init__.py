"""The domain: budgets, spend, auth, settings and the rest, free of any transport.

Both faces (GraphQL in `graphql_api/`, REST in `webhook/`) call these functions, so a number the dashboard shows
and the number the webhook enforces come from one place.
"""
