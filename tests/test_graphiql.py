"""GraphiQL works offline: the page refers to no server but this one, and every asset it names is served, intact."""

from __future__ import annotations

import base64
import hashlib
import re
import zipfile
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import pytest

from resolvers.platform.config import Settings
from tests.conftest import Clock, started
from tests.support import Api

PAGE_URL = "http://spendplane.test/graphql"


async def _page(api: Api) -> str:
    response = await api.client.get("/graphql", headers={"accept": "text/html"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    return response.text


def _references(html: str) -> list[tuple[str, str | None]]:
    """Every src/href in the page, with its integrity hash (the page's only way to load anything)."""
    found: list[tuple[str, str | None]] = []

    class Collect(HTMLParser):
        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            values = dict(attrs)
            for attribute in ("src", "href", "action", "data", "poster"):
                if values.get(attribute) is not None:
                    found.append((str(values[attribute]), values.get("integrity")))

    Collect().feed(html)
    return found


async def test_the_graphiql_page_loads_nothing_from_outside_the_server(api: Api) -> None:
    html = await _page(api)
    references = _references(html)
    assert len(references) == 7  # react, react-dom, js-cookie, graphiql js + css, explorer js + css
    for url, _ in references:
        absolute = urlsplit(urljoin(PAGE_URL, url))
        assert (absolute.scheme, absolute.netloc) == ("http", "spendplane.test"), url
        assert absolute.path.startswith("/graphiql-assets/"), url
    # Not even in text: no CDN host, and no absolute http(s) URL anywhere in the page.
    assert not re.search(r"(?i)\b(unpkg|jsdelivr|cdnjs)\b", html)
    assert not re.search(r"https?://", html)


async def test_every_asset_the_page_names_is_served_and_matches_its_integrity_hash(api: Api) -> None:
    for url, integrity in _references(await _page(api)):
        response = await api.client.get(urlsplit(urljoin(PAGE_URL, url)).path)
        assert response.status_code == 200, url
        assert response.headers["content-type"].split(";")[0] in {
            "text/javascript",
            "application/javascript",
            "text/css",
        }
        assert integrity is not None and integrity.startswith("sha384-"), url
        digest = base64.b64encode(hashlib.sha384(response.content).digest()).decode()
        assert integrity == f"sha384-{digest}", url


async def test_the_assets_folder_serves_no_path_outside_it(api: Api) -> None:
    for path in ("/graphiql-assets/../view.py", "/graphiql-assets/%2e%2e/view.py", "/graphiql-assets/nope.js"):
        assert (await api.client.get(path)).status_code == 404, path


async def test_with_graphiql_off_neither_page_nor_assets_are_served(settings: Settings, clock: Clock) -> None:
    async with started(settings, clock, graphiql=False) as api:
        page = await api.client.get("/graphql", headers={"accept": "text/html"})
        assert "graphiql" not in page.text.lower()
        assert (await api.client.get("/graphiql-assets/react/react.production.min.js")).status_code == 404


def test_the_vendored_assets_record_their_versions_and_licences(repo_root: Path) -> None:
    folder = repo_root / "graphql_api" / "static" / "graphiql"
    versions = (folder / "VERSIONS.md").read_text()
    for package in ("react", "react-dom", "js-cookie", "graphiql", "graphiql-plugin-explorer"):
        assert (folder / package / "LICENSE").read_text().startswith("MIT License"), package
        assert f"`{package}/LICENSE`" in versions, package


def test_a_built_wheel_carries_the_page_and_its_assets(
    repo_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Hatch packages the static files with graphql_api, so an installed copy serves them."""
    from hatchling.build import build_wheel

    monkeypatch.chdir(repo_root)  # the PEP 517 hook builds the project in the working directory
    wheel = tmp_path / build_wheel(str(tmp_path))
    names = set(zipfile.ZipFile(wheel).namelist())
    for name in (
        "graphql_api/static/graphiql.html",
        "graphql_api/static/graphiql/VERSIONS.md",
        "graphql_api/static/graphiql/graphiql/graphiql.min.js",
        "graphql_api/static/graphiql/react/LICENSE",
    ):
        assert name in names, name
