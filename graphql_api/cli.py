"""The `spendplane` command: serve, migrate, demo-data, export-schema, docs-tables, litellm-plugin,
rotate-admin-key."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from datetime import UTC, datetime
from pathlib import Path

from resolvers.config import ConfigError, Settings


def _settings() -> Settings:
    try:
        return Settings.from_env()
    except ConfigError as exc:
        print(f"spendplane: configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def _banner_admin_key(key: str, port: int) -> None:
    line = "=" * 78
    print(
        f"\n{line}\n spendplane generated an admin key (shown once; only its hash is stored):\n\n"
        f"     {key}\n\n log in:  curl -s localhost:{port}/auth/login -H 'Content-Type: application/json' "
        f'-d \'{{"api_key": "{key}"}}\'\n Lost it? `spendplane rotate-admin-key` prints a new one.\n{line}\n',
        file=sys.stderr,
        flush=True,
    )


def serve(args: argparse.Namespace) -> None:
    import uvicorn

    from graphql_api.app import create_app
    from resolvers.embedded import DatabaseInUse, EmbeddedLock

    settings = _settings()
    host = args.host or settings.host
    port = args.port or settings.port
    try:  # say it plainly, before uvicorn would turn the app's refusal into a start-up traceback
        EmbeddedLock.take(settings.database_url).release()
    except DatabaseInUse as exc:
        print(f"spendplane: {exc}", file=sys.stderr)
        raise SystemExit(3) from None
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = create_app(settings, announce_admin_key=lambda key: _banner_admin_key(key, port))
    print(
        f"spendplane: migrating {settings.database_url.render_as_string(hide_password=True)}, then serving on "
        f"http://{host}:{port}  (GraphQL: /graphql, REST: /openapi.json, health: /health)",
        file=sys.stderr,
        flush=True,
    )
    uvicorn.run(app, host=host, port=port, log_level=settings.log_level, lifespan="on")


async def _migrate(settings: Settings, revision: str, down: bool) -> str | None:
    from models.db import open_database
    from models.migrate import current_revision, downgrade, upgrade

    db = open_database(settings.database_url)
    try:
        if down:
            await downgrade(db, embedded=settings.embedded_mode, revision=revision)
        else:
            await upgrade(db, embedded=settings.embedded_mode, revision=revision)
        return await current_revision(db)
    finally:
        await db.dispose()


def migrate(args: argparse.Namespace) -> None:
    settings = _settings()
    revision = asyncio.run(_migrate(settings, args.revision, args.down))
    print(f"spendplane: database at revision {revision}")


async def _demo(settings: Settings, rows: int, days: int, seed: int, end: datetime) -> None:
    from tqdm import tqdm

    from models.db import open_database
    from models.litellm import probe_litellm_schema
    from models.migrate import upgrade
    from resolvers.demo_data import DemoPlan, write_demo_data

    db = open_database(settings.database_url)
    try:
        await upgrade(db, embedded=settings.embedded_mode)
        async with db.engine.connect() as conn:
            schema = await probe_litellm_schema(conn)
        with tqdm(total=rows, unit="rows", disable=rows < 20_000 or not sys.stderr.isatty()) as bar:

            def progress(done: int) -> None:
                bar.update(done - bar.n)

            result = await write_demo_data(
                db,
                schema,
                DemoPlan(rows=rows, days=days, end=end, seed=seed),
                embedded=settings.embedded_mode,
                progress=progress,
            )
    finally:
        await db.dispose()
    print(
        f"spendplane: wrote {result.rows_written} spend-log rows from {result.start:%Y-%m-%d} to "
        f"{result.end:%Y-%m-%d %H:%M} UTC ({result.rows_skipped} already present), "
        f"{len(result.keys)} keys. Try a read-only login with a demo key, e.g.:"
    )
    for key in result.keys[:3]:
        print(f"  {key.raw}   (user {key.user_id}, team {key.team_id})")


def demo_data(args: argparse.Namespace) -> None:
    from resolvers.demo_data import default_end
    from resolvers.errors import InvalidInput

    settings = _settings()
    end = args.end or default_end()
    try:
        asyncio.run(_demo(settings, args.rows, args.days, args.seed, end))
    except InvalidInput as exc:
        print(f"spendplane: {exc.message}", file=sys.stderr)
        raise SystemExit(2) from None


def export_schema(args: argparse.Namespace) -> None:
    from graphql_api.schema import sdl

    text = sdl()
    if args.output == "-":
        sys.stdout.write(text)
    else:
        Path(args.output).write_text(text)
        print(f"spendplane: wrote {args.output}", file=sys.stderr)


def docs_tables(args: argparse.Namespace) -> None:
    from graphql_api.reference import stale_pages

    docs = Path(args.docs)
    if not docs.is_dir():
        print(f"spendplane: {docs} is not a directory", file=sys.stderr)
        raise SystemExit(2)
    try:
        stale = stale_pages(docs, write=args.write)
    except ValueError as exc:
        print(f"spendplane: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    for page in stale:
        print(f"spendplane: {page} {'rewritten' if args.write else 'is stale: run scripts/docs'}", file=sys.stderr)
    if stale and not args.write:
        raise SystemExit(1)


def litellm_plugin(args: argparse.Namespace) -> None:
    import shutil

    import webhook.litellm_plugin

    target = Path(args.output) / "spendplane_litellm.py"
    shutil.copyfile(webhook.litellm_plugin.__file__, target)
    print(
        f"spendplane: wrote {target}; add to LiteLLM's config.yaml:\n"
        '  litellm_settings:\n    callbacks: ["spendplane_litellm.proxy_handler_instance"]'
    )


async def _rotate(settings: Settings) -> str:
    from models.db import open_database
    from models.migrate import upgrade
    from resolvers.auth import rotate_admin_key

    db = open_database(settings.database_url)
    try:
        await upgrade(db, embedded=settings.embedded_mode)
        return await rotate_admin_key(db, datetime.now(UTC))
    finally:
        await db.dispose()


def rotate(args: argparse.Namespace) -> None:
    settings = _settings()
    key = asyncio.run(_rotate(settings))
    print(f"spendplane: new admin key (the old one no longer works): {key}")


def _utc_datetime(raw: str) -> datetime:
    value = datetime.fromisoformat(raw)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(
        prog="spendplane",
        description="Cost-management control plane beside LiteLLM. "
        "Configuration comes from the environment (docs/settings.md lists every variable).",
    )
    commands = root.add_subparsers(dest="command", required=True)

    p = commands.add_parser("serve", help="migrate the database, then serve GraphQL and the REST shim")
    p.add_argument("--host", help="default: SPENDPLANE_HOST or 127.0.0.1")
    p.add_argument("--port", type=int, help="default: SPENDPLANE_PORT or 8086")
    p.set_defaults(run=serve)

    p = commands.add_parser("migrate", help="bring the database schema up to date (or down with --down)")
    p.add_argument("revision", nargs="?", default="head")
    p.add_argument("--down", action="store_true", help="downgrade to REVISION (e.g. base)")
    p.set_defaults(run=migrate)

    p = commands.add_parser("demo-data", help="write realistic LiteLLM spend logs (embedded mode only)")
    p.add_argument("--rows", type=int, default=20_000, help="spend-log rows to write (default 20000)")
    p.add_argument("--days", type=int, default=60, help="days of history ending at --end (default 60)")
    p.add_argument("--seed", type=int, default=42, help="same seed and end, same rows (default 42)")
    p.add_argument("--end", type=_utc_datetime, help="ISO time the history ends (default: now, to the minute)")
    p.set_defaults(run=demo_data)

    p = commands.add_parser("export-schema", help="print or write the GraphQL SDL (schema.graphql)")
    p.add_argument("-o", "--output", default="-", help="file to write; - for stdout (default)")
    p.set_defaults(run=export_schema)

    p = commands.add_parser(
        "docs-tables", help="refresh (--write) or check (default) the generated tables in the docs pages"
    )
    p.add_argument("docs", nargs="?", default="docs", help="the docs directory (default docs)")
    p.add_argument("--write", action="store_true", help="rewrite stale tables instead of failing")
    p.set_defaults(run=docs_tables)

    p = commands.add_parser("litellm-plugin", help="write the LiteLLM proxy plugin (true HTTP 429 refusals)")
    p.add_argument("-o", "--output", default=".", help="the directory of LiteLLM's config.yaml (default .)")
    p.set_defaults(run=litellm_plugin)

    p = commands.add_parser("rotate-admin-key", help="replace spendplane's generated admin key and print it")
    p.set_defaults(run=rotate)
    return root


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    args.run(args)


if __name__ == "__main__":
    main()
