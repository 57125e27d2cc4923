"""Alembic migrations for spendplane's own tables (async env, batch mode for SQLite)."""
