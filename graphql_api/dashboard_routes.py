"""The Admin UI: static ES modules under /ui/ and the single page itself at / and at every page path (deep links
like /budgets load the app, which routes in the browser). Unknown paths stay 404 for the REST shim."""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

DASHBOARD_DIR = Path(__file__).parent / "dashboard"
#: The browser-side routes (graphql_api/dashboard/js/app.js: PAGES) plus the login screen.
PAGE_PATHS = ("/overview", "/budgets", "/requests", "/reports", "/chargeback", "/sla", "/alerts", "/settings", "/login")
#: Only this origin's own files and API: no CDN, no inline script, nothing framed.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; "
    "connect-src 'self' ws: wss:; font-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
    "form-action 'self'"
)
SECURITY_HEADERS = {
    "content-security-policy": CONTENT_SECURITY_POLICY,
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-cache",
}


async def index(request: Request) -> Response:
    return FileResponse(DASHBOARD_DIR / "index.html", media_type="text/html", headers=SECURITY_HEADERS)


def dashboard_routes() -> list[BaseRoute]:
    return [
        Route("/", index, methods=["GET", "HEAD"], include_in_schema=False),
        *(Route(path, index, methods=["GET", "HEAD"], include_in_schema=False) for path in PAGE_PATHS),
        Mount("/ui", app=StaticFiles(directory=DASHBOARD_DIR), name="dashboard"),
    ]
