"""The REST shim: routes for LiteLLM and for scripts (login, health, budgets; later the webhook, the cost
predictor, spend ingestion and file exports), and the small plugin module a LiteLLM proxy can load."""
