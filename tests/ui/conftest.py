"""Browser tests: one real `spendplane serve` on SQLite with demo data and one Debian chromium per session.

Outside CI a missing chromium (or playwright) skips these tests with a message; under CI=true it fails them.
Playwright never downloads a browser here: it launches /usr/bin/chromium (SPENDPLANE_CHROMIUM overrides)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

CHROMIUM = os.environ.get("SPENDPLANE_CHROMIUM", "/usr/bin/chromium")
ADMIN_KEY = "sk-master-ui-test"
#: A demo key (resolvers/demo/__init__.py: demo_keys(42)): user-001 of team engineering, a read-only viewer.
VIEWER_KEY = "sk-demo-42-user-001-0"
VIEWER_TEAM = "engineering"
DEMO_ROWS = 2500
FIXTURE = Path(__file__).parent.parent / "fixtures" / "litellm" / "spend_post_success.json"
#: Generous: the machine is shared; these are upper bounds for waiting, never speed assertions.
WAIT_MS = 20_000


def _missing(message: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message + " (CI=true: the browser tests may not be skipped; .ci/run installs chromium)")
    pytest.skip(message)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Server:
    base: str
    admin_token: str

    def gql(self, query: str, variables: dict[str, Any] | None = None, token: str | None = None) -> dict[str, Any]:
        r = httpx.post(
            f"{self.base}/graphql",
            json={"query": query, "variables": variables or {}},
            headers={"authorization": f"Bearer {token or self.admin_token}"},
            timeout=60,
        )
        body: dict[str, Any] = r.json()
        assert not body.get("errors"), body
        data: dict[str, Any] = body["data"]
        return data

    def login(self, key: str) -> str:
        r = httpx.post(f"{self.base}/auth/login", json={"api_key": key}, timeout=30)
        r.raise_for_status()
        token: str = r.json()["access_token"]
        return token

    def post_spend(
        self,
        *,
        cost: float,
        user_id: str | None = None,
        team_id: str | None = None,
        model: str = "gpt-4o",
        latency_s: float = 0.4,
        status: str = "success",
        tags: list[str] | None = None,
    ) -> None:
        """One LiteLLM spend payload (the recorded fixture, made new) to /spend/litellm, as LiteLLM sends it."""
        body = json.loads(FIXTURE.read_text())["body"]
        now = time.time()
        body["id"] = f"chatcmpl-ui-{uuid.uuid4()}"
        body["litellm_call_id"] = str(uuid.uuid4())
        body["startTime"], body["endTime"] = now - latency_s, now
        body["completionStartTime"] = now - latency_s / 2
        body["response_cost"] = cost
        body["model"] = body["model_group"] = model
        body["status"] = status
        body["request_tags"] = tags or []
        body["metadata"]["user_api_key_user_id"] = user_id
        body["metadata"]["user_api_key_team_id"] = team_id
        body["metadata"]["team_id"] = team_id
        r = httpx.post(f"{self.base}/spend/litellm", json=body, headers={"x-api-key": ADMIN_KEY}, timeout=30)
        assert r.status_code < 300, r.text

    def pre_request(self, **fields: Any) -> dict[str, Any]:
        """LiteLLM's pre-request check through the webhook (where approaching_limit alerts are raised)."""
        body = {
            "litellm_call_id": f"ui-{uuid.uuid4()}",
            "model": "gpt-4o",
            "max_tokens": 10,
            "messages": [{"role": "user", "content": "hi"}],
            **fields,
        }
        r = httpx.post(f"{self.base}/webhook/pre-request", json=body, headers={"x-api-key": ADMIN_KEY}, timeout=30)
        answer: dict[str, Any] = r.json()
        return answer


@pytest.fixture(scope="package")
def ui_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    workdir = tmp_path_factory.mktemp("ui-server")
    port = _free_port()
    env = {
        **os.environ,
        "SPENDPLANE_EMBEDDED": "true",
        "DATABASE_URL": f"sqlite:///{workdir / 'spendplane.db'}",
        "LITELLM_MASTER_KEY": ADMIN_KEY,
        "SPENDPLANE_HOST": "127.0.0.1",
        "SPENDPLANE_PORT": str(port),
        "LITELLM_PRICE_MAP_URL": "off",  # no network but 127.0.0.1
    }
    exe = Path(sys.executable).parent / "spendplane"
    demo = subprocess.run(
        [str(exe), "demo-data", "--rows", str(DEMO_ROWS), "--days", "45"],
        env=env,
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert demo.returncode == 0, demo.stderr
    log = (workdir / "serve.log").open("w")
    proc = subprocess.Popen([str(exe), "serve"], env=env, cwd=workdir, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, (workdir / "serve.log").read_text()
            try:
                if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "spendplane serve did not become healthy"
            time.sleep(0.3)
        server = Server(base, "")
        server.admin_token = server.login(ADMIN_KEY)
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture(scope="package")
def browser() -> Iterator[Any]:
    if not (os.path.exists(CHROMIUM) or shutil.which(CHROMIUM)):
        _missing(f"chromium is not installed at {CHROMIUM} (apt-get install -y chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("playwright is not installed (pip install -e '.[dev]')")
    os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-dev-shm-usage"])
        yield b
        b.close()


@pytest.fixture
def page(browser: Any, ui_server: Server) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 800}, accept_downloads=True)
    context.set_default_timeout(WAIT_MS)
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    yield pg
    context.close()
    assert not errors, f"uncaught errors in the page: {errors}"


def log_in(page: Any, server: Server, key: str, path: str = "/overview") -> None:
    page.goto(server.base + path)
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Log in").click()
    page.get_by_role("navigation", name="Main").wait_for()
