"""The dashboard in a real browser: asset weight and the Budgets page's time to show N budget cards.

    .venv/bin/python bench/ui.py                      # the benchmark (figures in docs/benchmarks.md)
    .venv/bin/python bench/ui.py --screenshots DIR    # every page, 1280x800 and 390x844 (scripts/screenshots)

It starts `spendplane serve` on a fresh SQLite file with demo data (embedded mode), logs in with the admin key and
drives Debian's chromium (/usr/bin/chromium, or SPENDPLANE_CHROMIUM) through playwright. The asset figure is what
the browser transferred for the first page (the login, then Overview), gzip-compressed per file as a server with
compression would send it; the card figure is the median of --runs page loads from navigation start to the Nth card
in the DOM, measured in the browser (performance.now())."""

from __future__ import annotations

import argparse
import contextlib
import gzip
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import httpx
from playwright.sync_api import Page, sync_playwright

CHROMIUM = os.environ.get("SPENDPLANE_CHROMIUM", "/usr/bin/chromium")
ADMIN_KEY = "sk-master-bench-ui"
PAGES = ["overview", "budgets", "requests", "reports", "chargeback", "sla", "alerts", "settings"]
#: What graphql_api/dashboard/js/pages/budgets.js asks for.
BUDGET_FIELDS = (
    "id name entityType entityId period timeZone weekStartsOn monthStartDay yearStartMonth limit monthlyLimit "
    "softLimitPercent hardLimitPercent alertEmail currentSpend reserved remaining utilization status periodStart "
    "resetsAt"
)
TEAMS = ["engineering", "data-science", "product", "marketing", "support", "finance", "sales", "research"]


@contextlib.contextmanager
def serve_demo(rows: int, days: int = 45) -> Iterator[str]:
    with tempfile.TemporaryDirectory() as workdir, socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        env = {
            **os.environ,
            "SPENDPLANE_EMBEDDED": "true",
            "DATABASE_URL": f"sqlite:///{workdir}/spendplane.db",
            "LITELLM_MASTER_KEY": ADMIN_KEY,
            "SPENDPLANE_PORT": str(port),
            "SPENDPLANE_HOST": "127.0.0.1",
            "LITELLM_PRICE_MAP_URL": "off",
        }
        exe = str(Path(sys.executable).parent / "spendplane")
        subprocess.run(
            [exe, "demo-data", "--rows", str(rows), "--days", str(days)],
            env=env,
            check=True,
            capture_output=True,
            timeout=600,
        )
        with (Path(workdir) / "serve.log").open("w") as log:
            proc = subprocess.Popen([exe, "serve"], env=env, stdout=log, stderr=subprocess.STDOUT)
            base = f"http://127.0.0.1:{port}"
            try:
                for _ in range(400):
                    with contextlib.suppress(httpx.HTTPError):
                        if httpx.get(base + "/health", timeout=2).status_code == 200:
                            break
                    time.sleep(0.3)
                yield base
            finally:
                proc.terminate()
                proc.wait(timeout=30)


def gql(base: str, token: str, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
    body = httpx.post(
        f"{base}/graphql",
        json={"query": query, "variables": variables or {}},
        headers={"authorization": f"Bearer {token}"},
        timeout=60,
    ).json()
    assert not body.get("errors"), body
    data: dict[str, Any] = body["data"]
    return data


def login_token(base: str) -> str:
    token: str = httpx.post(f"{base}/auth/login", json={"api_key": ADMIN_KEY}, timeout=30).json()["access_token"]
    return token


def log_in(page: Page, base: str, path: str) -> None:
    page.goto(base + path)
    page.get_by_label("API key").fill(ADMIN_KEY)
    page.get_by_role("button", name="Log in").click()
    page.locator("header.top").wait_for()  # the navigation itself is behind the Menu button on a phone


def seed_budgets(base: str, token: str, n: int) -> None:
    """n budgets on demo entities (teams, users, tags) and periods, several near or over their limits."""
    periods = ["MONTHLY", "WEEKLY", "DAILY", "QUARTERLY", "YEARLY"]
    made = 0
    i = 0
    while made < n:
        kind = ["TEAM", "USER", "TAG", "KEY"][i % 4]
        entity = TEAMS[i % len(TEAMS)] if kind == "TEAM" else f"{kind.lower()}-{i:04d}"
        if kind == "USER":
            entity = f"user-{(i % 60) + 1:03d}"
        period = periods[(i // 4) % len(periods)]
        limit = ["50", "200", "1000", "5", "20"][i % 5]
        body = httpx.post(
            f"{base}/graphql",
            json={
                "query": "mutation($i: BudgetInput!) { createBudget(input: $i) { id } }",
                "variables": {
                    "i": {
                        "name": f"{kind.title()} {entity} {period.lower()}",
                        "entityType": kind,
                        "entityId": entity,
                        "period": period,
                        "limit": limit,
                    }
                },
            },
            headers={"authorization": f"Bearer {token}"},
            timeout=60,
        ).json()
        made += 0 if body.get("errors") else 1
        i += 1
        if i > n * 5:
            raise RuntimeError(f"could only create {made} budgets: {body}")


def measure(args: argparse.Namespace) -> dict[str, Any]:
    dashboard = Path(__file__).parent.parent / "graphql_api" / "dashboard"
    with serve_demo(args.rows) as base, sync_playwright() as p:
        token = login_token(base)
        seed_budgets(base, token, args.cards)
        # the same budgets query the page sends, alone: the server's share of the page's time
        query_ms = []
        for _ in range(args.runs):
            started = time.perf_counter()
            gql(base, token, f"{{ budgets {{ {BUDGET_FIELDS} }} }}")
            query_ms.append((time.perf_counter() - started) * 1000)
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        context = browser.new_context(viewport={"width": 1280, "height": 800})
        page = context.new_page()
        loaded: list[str] = []
        page.on(
            "requestfinished",
            lambda r: (
                loaded.append(r.url)
                if r.resource_type in ("document", "script", "stylesheet", "font", "image")
                else None
            ),
        )
        log_in(page, base, "/overview")
        page.get_by_role("heading", name="Overview", level=1).wait_for()
        page.wait_for_load_state("networkidle")
        files: dict[str, tuple[int, int]] = {}
        for url in dict.fromkeys(loaded):
            path = url.split("//", 1)[1].split("/", 1)[1].split("?")[0]
            local = dashboard / path.removeprefix("ui/") if path.startswith("ui/") else dashboard / "index.html"
            raw = local.read_bytes()
            files[path or "/"] = (len(raw), len(gzip.compress(raw, 6)))
        all_assets = [f for f in dashboard.rglob("*") if f.is_file() and f.suffix in (".js", ".css", ".html")]
        times = []
        for _ in range(args.runs):
            page.goto(base + "/budgets")
            # a function, not an expression string: the page's CSP forbids eval
            page.wait_for_function(
                "n => document.querySelectorAll('article.budget').length >= n", arg=args.cards, timeout=120_000
            )
            times.append(page.evaluate("performance.now()"))
        browser.close()
    return {
        "first_page_files": len(files),
        "first_page_bytes": sum(r for r, _ in files.values()),
        "first_page_gzip_bytes": sum(g for _, g in files.values()),
        "all_assets_gzip_bytes": sum(len(gzip.compress(f.read_bytes(), 6)) for f in all_assets),
        "files": {k: {"raw": r, "gzip": g} for k, (r, g) in sorted(files.items())},
        "cards": args.cards,
        "budgets_page_ms_median": round(statistics.median(times)),
        "budgets_page_ms_all": [round(t) for t in times],
        "budgets_query_ms_median": round(statistics.median(query_ms)),
        "demo_rows": args.rows,
    }


def screenshots(out: Path, rows: int) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with serve_demo(rows) as base, sync_playwright() as p:
        token = login_token(base)
        seed_budgets(base, token, 12)
        gql(base, token, "mutation { generateForecasts { period } }")
        for team, target, pct in (
            ("engineering", "CC-1000", "60"),
            ("engineering", "CC-2000", "40"),
            ("data-science", "PRJ-ML", "100"),
        ):
            gql(
                base,
                token,
                "mutation($i: AllocationRuleInput!) { createAllocationRule(input: $i) { id } }",
                {
                    "i": {
                        "teamId": team,
                        "allocationType": "COST_CENTER",
                        "allocationTarget": target,
                        "allocationPercent": pct,
                    }
                },
            )
        last_month = (date.today().replace(day=1) - timedelta(days=1)).strftime("%Y-%m")
        gql(base, token, "mutation($p: String!) { generateChargebackReport(period: $p) { id } }", {"p": last_month})
        gql(
            base,
            token,
            "mutation($i: SlaDefinitionInput!) { createSlaDefinition(input: $i) { id } }",
            {"i": {"name": "Interactive p95", "modelPattern": "*", "targetP95Ms": 8000, "targetErrorRate": 0.02}},
        )
        gql(base, token, "mutation { collectProviderHealth { provider } }")
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        for label, size in (("desktop", {"width": 1280, "height": 800}), ("phone", {"width": 390, "height": 844})):
            context = browser.new_context(viewport=size, device_scale_factor=1)
            page = context.new_page()
            page.goto(base + "/login")
            page.get_by_label("API key").wait_for()
            page.screenshot(path=str(out / f"login-{label}.png"))
            log_in(page, base, "/overview")
            for name in PAGES:
                page.goto(f"{base}/{name}")
                page.get_by_role("heading", level=1).first.wait_for()
                page.wait_for_load_state("networkidle")
                page.wait_for_timeout(300)
                page.screenshot(path=str(out / f"{name}-{label}.png"))
                print(f"wrote {out / f'{name}-{label}.png'}")
            context.close()
        browser.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=20_000, help="demo spend-log rows (default 20000)")
    ap.add_argument("--cards", type=int, default=200, help="budget cards on the Budgets page (default 200)")
    ap.add_argument("--runs", type=int, default=5, help="page loads measured (default 5)")
    ap.add_argument("--screenshots", type=Path, help="write screenshots into this directory instead")
    args = ap.parse_args()
    if args.screenshots:
        screenshots(args.screenshots, min(args.rows, 5000))
        return
    print(json.dumps(measure(args), indent=2))


if __name__ == "__main__":
    main()
