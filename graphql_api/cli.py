"""The `spendplane` command: serve, migrate, demo-data, export-schema, docs-tables, litellm-plugin,
litellm-config, rotate-admin-key."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from resolvers.platform.config import ConfigError, Settings


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


async def _reachable(settings: Settings) -> str | None:
    """None when the database answers; else one line saying why not (no traceback)."""
    from sqlalchemy import text

    from models.db import open_database

    db = open_database(settings.database_url)
    try:
        async with asyncio.timeout(15):
            async with db.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
    except TimeoutError:
        return "no answer within 15 s"
    except Exception as exc:  # noqa: BLE001 - any failure to connect is reported in one line
        cause = getattr(exc, "orig", None) or exc
        lines = [line for line in str(cause).splitlines() if line.strip()]
        return (lines[0] if lines else type(cause).__name__)[:300]
    finally:
        await db.dispose()
    return None


def _require_database(settings: Settings) -> None:
    problem = asyncio.run(_reachable(settings))
    if problem is not None:
        where = settings.database_url.render_as_string(hide_password=True)
        print(f"spendplane: cannot use the database {where}: {problem}", file=sys.stderr)
        raise SystemExit(3)


def serve(args: argparse.Namespace) -> None:
    import uvicorn

    from graphql_api.app import create_app
    from resolvers.platform.embedded import DatabaseInUse, EmbeddedLock

    settings = _settings()
    host = args.host or settings.host
    port = args.port or settings.port
    listeners = {
        name: listen_port
        for name, listen_port in (("predictor", settings.predictor_listen_port), ("webhook", settings.webhook_port))
        if listen_port is not None
    }
    if len({port, *listeners.values()}) != 1 + len(listeners):
        print(
            f"spendplane: SPENDPLANE_PORT ({port}), the predictor and the webhook ports must differ: {listeners}",
            file=sys.stderr,
        )
        raise SystemExit(2)
    try:  # say it plainly, before uvicorn would turn the app's refusal into a start-up traceback
        EmbeddedLock.take(settings.database_url).release()
    except DatabaseInUse as exc:
        print(f"spendplane: {exc}", file=sys.stderr)
        raise SystemExit(3) from None
    _require_database(settings)
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = create_app(settings, announce_admin_key=lambda key: _banner_admin_key(key, port))
    print(
        f"spendplane: migrating {settings.database_url.render_as_string(hide_password=True)}, then serving on "
        f"http://{host}:{port}  (GraphQL: /graphql, REST: /openapi.json, health: /health)",
        file=sys.stderr,
        flush=True,
    )
    for name, listen_port in listeners.items():
        print(f"spendplane: the guide's {name} also on http://{host}:{listen_port}", file=sys.stderr, flush=True)
    main_config = uvicorn.Config(app, host=host, port=port, log_level=settings.log_level, lifespan="on")
    asyncio.run(_serve_all(main_config, listeners, host, settings.log_level))


async def _serve_all(main_config: Any, listeners: dict[str, int], host: str, log_level: str) -> None:
    """The main server, then (once its lifespan has started the runtime) the optional listeners on the same loop
    and the same state. A signal stops them all; the main server's lifespan shuts the runtime down last."""
    import contextlib

    import uvicorn

    from graphql_api.app import PREDICTOR_PATHS, WEBHOOK_PATHS, create_listener_app

    companions: list[uvicorn.Server] = []

    class Main(uvicorn.Server):
        def handle_exit(self, sig: int, frame: Any) -> None:
            super().handle_exit(sig, frame)
            for companion in companions:
                companion.should_exit = True

    class Companion(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:  # the main server takes the signals for all
            yield

    main = Main(main_config)
    main_task = asyncio.create_task(main.serve())
    while not main.started and not main_task.done():  # noqa: ASYNC110 - uvicorn exposes a flag, not an event
        await asyncio.sleep(0.05)
    if main_task.done():
        await main_task
        return
    paths = {"predictor": PREDICTOR_PATHS, "webhook": WEBHOOK_PATHS}
    for name, listen_port in listeners.items():
        app = create_listener_app(paths[name], main.lifespan.state)
        companions.append(
            Companion(uvicorn.Config(app, host=host, port=listen_port, log_level=log_level, lifespan="off"))
        )
    tasks = [asyncio.create_task(c.serve()) for c in companions]
    for companion, task in zip(companions, tasks, strict=True):
        while not companion.started and not task.done():  # noqa: ASYNC110 - uvicorn exposes a flag
            await asyncio.sleep(0.05)
        if task.done():  # it could not listen (port taken): stop everything, say so, exit 3
            main.should_exit = True
            for other in companions:
                other.should_exit = True
            await asyncio.gather(main_task, *tasks, return_exceptions=True)
            print(f"spendplane: could not listen on port {companion.config.port}", file=sys.stderr)
            raise SystemExit(3)
    await main_task
    for companion in companions:
        companion.should_exit = True
    await asyncio.gather(*tasks, return_exceptions=True)


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
    from alembic.util.exc import CommandError

    settings = _settings()
    _require_database(settings)
    try:
        revision = asyncio.run(_migrate(settings, args.revision, args.down))
    except CommandError as exc:
        print(f"spendplane: cannot migrate to {args.revision!r}: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    print(f"spendplane: database at revision {revision}")


async def _demo(settings: Settings, rows: int, days: int, seed: int, end: datetime) -> None:
    from tqdm import tqdm

    from models.db import open_database
    from models.litellm import probe_litellm_schema
    from models.migrate import upgrade
    from resolvers.demo import DemoPlan, write_demo_data

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
    from resolvers.demo import default_end
    from resolvers.platform.errors import InvalidInput

    settings = _settings()
    _require_database(settings)
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
    if not Path(args.output).is_dir():
        print(f"spendplane: {args.output} is not a directory (give LiteLLM's config directory)", file=sys.stderr)
        raise SystemExit(2)
    try:
        shutil.copyfile(webhook.litellm_plugin.__file__, target)
    except OSError as exc:
        print(f"spendplane: cannot write {target}: {exc.strerror or exc}", file=sys.stderr)
        raise SystemExit(2) from None
    print(
        f"spendplane: wrote {target}; add to LiteLLM's config.yaml:\n"
        '  litellm_settings:\n    callbacks: ["spendplane_litellm.proxy_handler_instance"]'
    )


def litellm_config_fragment(url: str, gate: str) -> dict[str, object]:
    """LiteLLM's config.yaml keys that wire spendplane in: the guide's per-key defaults ($100 a month, 100 RPM,
    100,000 TPM, in LiteLLM's own `default_key_generate_params`), one pre-request gate (the plugin's HTTP 429 or the
    Generic Guardrail API's HTTP 400; both would check every request twice) and the logging callback."""
    callbacks = ["spendplane_spend"]
    if gate == "plugin":
        callbacks.insert(0, "spendplane_litellm.proxy_handler_instance")
    fragment: dict[str, object] = {
        "litellm_settings": {
            "default_key_generate_params": {
                "max_budget": 100,
                "budget_duration": "1mo",
                "rpm_limit": 100,
                "tpm_limit": 100_000,
            },
            "callbacks": callbacks,
        },
        "callback_settings": {
            "spendplane_spend": {
                "callback_type": "generic_api",
                "endpoint": f"{url}/spend/litellm",
                "headers": {"x-api-key": "<SPENDPLANE_WEBHOOK_KEY>"},
                "event_types": ["llm_api_success", "llm_api_failure"],
                "log_format": "json_array",
            }
        },
    }
    if gate == "guardrail":
        fragment["guardrails"] = [
            {
                "guardrail_name": "spendplane-budgets",
                "litellm_params": {
                    "guardrail": "generic_guardrail_api",
                    "mode": "pre_call",
                    "api_base": url,
                    "api_key": "os.environ/SPENDPLANE_WEBHOOK_KEY",
                    "default_on": True,
                    "unreachable_fallback": "fail_open",
                    "timeout": 2,
                },
            }
        ]
    return fragment


def litellm_config(args: argparse.Namespace) -> None:
    import yaml

    settings = _settings()
    url = (args.url or f"http://127.0.0.1:{settings.webhook_port or settings.port}").rstrip("/")
    if not url.startswith(("http://", "https://")):
        print(f"spendplane: --url must be an http(s) URL (got {url!r})", file=sys.stderr)
        raise SystemExit(2)
    plugin = (
        "# the plugin: `spendplane litellm-plugin -o DIR` writes spendplane_litellm.py next to this file; the proxy\n"
        f"# needs SPENDPLANE_URL={url} and SPENDPLANE_WEBHOOK_KEY in its environment\n"
        if args.gate == "plugin"
        else "# the Generic Guardrail API: refusals reach clients as HTTP 400 (the plugin gives HTTP 429)\n"
    )
    sys.stdout.write(
        "# spendplane for LiteLLM's config.yaml: merge these keys into yours.\n"
        "# per-key defaults of the guide: $100 a month, 100 RPM, 100,000 TPM (LiteLLM enforces RPM and TPM)\n"
        + plugin
        + yaml.safe_dump(litellm_config_fragment(url, args.gate), sort_keys=False)
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
    _require_database(settings)
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

    p = commands.add_parser(
        "litellm-config", help="print the config.yaml fragment wiring LiteLLM to spendplane (per-key defaults too)"
    )
    p.add_argument("--url", help="where LiteLLM reaches spendplane (default: http://127.0.0.1:<webhook or main port>)")
    p.add_argument(
        "--gate",
        choices=("plugin", "guardrail"),
        default="plugin",
        help="the pre-request check: the plugin (HTTP 429, default) or the Generic Guardrail API (HTTP 400)",
    )
    p.set_defaults(run=litellm_config)

    p = commands.add_parser("rotate-admin-key", help="replace spendplane's generated admin key and print it")
    p.set_defaults(run=rotate)
    return root


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    args.run(args)


if __name__ == "__main__":
    main()
