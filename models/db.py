"""Engines and sessions for SQLite (embedded) and PostgreSQL (shared with LiteLLM)."""

from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import Any

import asyncpg
from sqlalchemy import Table, event, insert
from sqlalchemy import exc as sqlalchemy_exc
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.sql import Insert

from models.private_files import protect_sqlite

# Prisma connection-string options that LiteLLM's DATABASE_URL may carry and asyncpg does not understand.
_PRISMA_ONLY_OPTIONS = {
    "schema",
    "connection_limit",
    "pool_timeout",
    "socket_timeout",
    "pgbouncer",
    "statement_cache_size",
    "connect_timeout",
}


def normalize_database_url(raw: str) -> URL:
    """Accept LiteLLM's own ``postgresql://`` URL as written, and plain ``sqlite:///`` paths.

    Raises ``ValueError`` with a human sentence when the URL cannot be used.
    """
    try:
        url = make_url(raw.strip())
    except ArgumentError as exc:
        raise ValueError("is not a database URL: use sqlite:///path or postgresql://user@host/db") from exc
    backend = url.get_backend_name()
    if backend in {"postgresql", "postgres"}:
        query = {k: v for k, v in url.query.items() if k not in _PRISMA_ONLY_OPTIONS}
        sslmode = query.pop("sslmode", None)
        if sslmode and sslmode != "disable":
            query["ssl"] = sslmode
        return url.set(drivername="postgresql+asyncpg", query=query)
    if backend == "sqlite":
        if url.database in (None, ""):
            raise ValueError("a SQLite URL needs a file path, e.g. sqlite:///./spendplane.db")
        return url.set(drivername="sqlite+aiosqlite")
    raise ValueError(f"unsupported database {backend!r}: use sqlite:///path or postgresql://user@host/db")


def asyncpg_dsn(url: URL) -> str:
    """The libpq-style DSN asyncpg.connect() wants (it rejects the ``+asyncpg`` driver suffix). TLS survives:
    our `ssl` option goes back to libpq's `sslmode`, which asyncpg reads from the DSN."""
    ssl = url.query.get("ssl")
    query = {"sslmode": ssl} if isinstance(ssl, str) else {}
    return url.set(drivername="postgresql", query=query).render_as_string(hide_password=False)


@dataclass(frozen=True)
class Database:
    """One engine and the two session factories the service uses.

    ``sessions`` opens read-write transactions; on SQLite they start with ``BEGIN IMMEDIATE`` so a
    read-then-write transaction waits for the lock (busy_timeout) instead of failing with SQLITE_BUSY.
    ``reader`` opens transactions for queries that never write, each reading one snapshot.
    """

    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    reader: async_sessionmaker[AsyncSession]

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @property
    def is_postgres(self) -> bool:
        return self.dialect == "postgresql"

    async def dispose(self) -> None:
        await self.engine.dispose()


def open_database(url: str | URL, *, pool_size: int = 10, echo: bool = False) -> Database:
    url = normalize_database_url(url) if isinstance(url, str) else url
    kwargs: dict[str, Any] = {"echo": echo}
    if url.get_backend_name() == "postgresql":
        kwargs.update(pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True, pool_recycle=1800)
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        # It holds the JWT secret and every key's spend: owner-only, umask or not (models/private_files.py).
        protect_sqlite(url.database)
    engine = create_async_engine(url, **kwargs)
    if engine.dialect.name == "sqlite":
        _tune_sqlite(engine)
    # A reader sees one snapshot for its whole transaction: SQLite's deferred BEGIN gives that, PostgreSQL needs
    # REPEATABLE READ (read-only, it never fails) — a report reading the rollup's watermark, then the rollup,
    # then the raw logs must not see a rebuild commit in between and count a day twice.
    reader_engine = (
        engine.execution_options(isolation_level="REPEATABLE READ")
        if engine.dialect.name == "postgresql"
        else engine.execution_options(sqlite_begin="DEFERRED")
    )
    return Database(
        engine=engine,
        sessions=async_sessionmaker(engine, expire_on_commit=False),
        reader=async_sessionmaker(reader_engine, expire_on_commit=False),
    )


def _tune_sqlite(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control away from the sqlite3 module so BEGIN is ours (see Database).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        for pragma in ("journal_mode=WAL", "busy_timeout=10000", "foreign_keys=ON", "synchronous=NORMAL"):
            cursor.execute(f"PRAGMA {pragma}")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql(f"BEGIN {conn.get_execution_options().get('sqlite_begin', 'IMMEDIATE')}")


def insert_or_ignore(dialect: str, table: Table) -> Insert:
    """INSERT that skips rows whose primary or unique key already exists (both dialects say ON CONFLICT)."""
    if dialect == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing()
    if dialect == "sqlite":
        return sqlite.insert(table).on_conflict_do_nothing()
    return insert(table)


#: What the drivers raise when the database cannot be reached (refused, reset, timed out, shutting down, a pool
#: with no connection to give): the one list both faces map to SERVICE_UNAVAILABLE (503 with Retry-After).
_UNREACHABLE: tuple[type[BaseException], ...] = (
    ConnectionError,
    TimeoutError,
    socket.gaierror,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    asyncpg.TooManyConnectionsError,
    sqlalchemy_exc.TimeoutError,
)
#: Every error a database driver (or SQLAlchemy's pool) raises: the REST shim handles these itself.
DRIVER_ERRORS: tuple[type[Exception], ...] = (
    sqlalchemy_exc.DBAPIError,
    sqlalchemy_exc.TimeoutError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    ConnectionError,
    TimeoutError,
    socket.gaierror,
)
#: SQLite's words for a database file it cannot use right now.
_SQLITE_UNAVAILABLE = ("unable to open database file", "database is locked", "disk i/o error")


def database_unreachable(exc: BaseException) -> bool:
    """Whether `exc` (or what it wraps) says the database cannot be reached, rather than that a query is wrong."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, _UNREACHABLE):
            return True
        if isinstance(current, sqlalchemy_exc.DBAPIError):
            if current.connection_invalidated:
                return True
            if isinstance(current, sqlalchemy_exc.OperationalError | sqlalchemy_exc.InterfaceError):
                text = str(current.orig).lower()
                if current.orig is None or any(w in text for w in _SQLITE_UNAVAILABLE) or "connect" in text:
                    return True
            current = current.orig
            continue
        current = current.__cause__ or current.__context__
    return False
