"""Tables and database plumbing: spendplane's own tables, LiteLLM's tables (read side), engines and types.

Nothing here knows about GraphQL, HTTP or the product's rules; `resolvers/` builds on it.
"""
