"""The Admin UI: static ES modules under /ui/ and the single page itself at / and at every page path (deep links
like /budgets load the app, which routes in the browser). Unknown paths stay 404 for the REST shim."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

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


def wants_page(request: Request) -> bool:
    """A browser navigating (HTML first in Accept, no token): the app; an API client (a token, JSON): the API."""
    accept = request.headers.get("accept", "")
    return "authorization" not in request.headers and accept.startswith("text/html")


def share_page_paths(routes: Sequence[BaseRoute]) -> list[BaseRoute]:
    """A page path that is also a REST GET route (/alerts) answers a browser's navigation with the app and every
    other request with the API, so reloading the Alerts page works and the REST route is unchanged."""
    shared: list[BaseRoute] = []
    for route in routes:
        if isinstance(route, Route) and route.path in PAGE_PATHS and route.methods and "GET" in route.methods:
            api = route.endpoint

            async def page_or_api(request: Request, api: Any = api) -> Response:
                if wants_page(request):
                    return await index(request)
                response: Response = await api(request)
                return response

            route = Route(route.path, page_or_api, methods=list(route.methods), name=route.name)
        shared.append(route)
    return shared


def dashboard_routes() -> list[BaseRoute]:
    return [
        Route("/", index, methods=["GET", "HEAD"], include_in_schema=False),
        *(Route(path, index, methods=["GET", "HEAD"], include_in_schema=False) for path in PAGE_PATHS),  # after REST
        Mount("/ui", app=StaticFiles(directory=DASHBOARD_DIR), name="dashboard"),
    ]
