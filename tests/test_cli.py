"""The `spendplane` command and the committed schema.graphql."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from graphql_api.cli import main
from graphql_api.schema import sdl
from models.migrate import head_revision


def test_schema_graphql_is_up_to_date(repo_root: Path) -> None:
    committed = (repo_root / "schema.graphql").read_text()
    assert committed == sdl(), "schema.graphql is stale: run `spendplane export-schema -o schema.graphql`"


def test_export_schema_writes_the_sdl(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    main(["export-schema", "-o", str(tmp_path / "s.graphql")])
    assert (tmp_path / "s.graphql").read_text() == sdl()
    main(["export-schema"])
    assert capsys.readouterr().out == sdl()


def _run(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "graphql_api.cli", *args],
        env={**os.environ, **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_a_bad_setting_stops_the_command_with_a_message_naming_it(tmp_path: Path) -> None:
    done = _run(["migrate"], {"SOFT_LIMIT_THRESHOLD": "lots"}, tmp_path)
    assert done.returncode == 2
    assert "SOFT_LIMIT_THRESHOLD" in done.stderr
    assert "Traceback" not in done.stderr


def test_migrate_then_demo_data_on_the_embedded_default(tmp_path: Path) -> None:
    env = {"DATABASE_URL": "", "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    done = _run(["migrate"], env, tmp_path)
    assert done.returncode == 0, done.stderr
    assert f"revision {head_revision()}" in done.stdout
    assert (tmp_path / "spendplane.db").exists()
    done = _run(["demo-data", "--rows", "300", "--days", "10", "--end", "2026-11-20T00:00:00"], env, tmp_path)
    assert done.returncode == 0, done.stderr
    assert "wrote 300 spend-log rows" in done.stdout
    again = _run(["demo-data", "--rows", "300", "--days", "10", "--end", "2026-11-20T00:00:00"], env, tmp_path)
    assert "wrote 0 spend-log rows" in again.stdout and "300 already present" in again.stdout


def test_a_setting_that_is_not_a_number_is_explained_in_one_line(tmp_path: Path) -> None:
    done = _run(["migrate"], {"SPENDPLANE_PORT": "notaport"}, tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "spendplane: configuration error: SPENDPLANE_PORT: must be a whole number from 1 to 65535 (got 'notaport')"
    )


def test_the_docs_generated_tables_are_fresh(repo_root: Path) -> None:
    from graphql_api.reference import refresh
    from webhook.routes import ENDPOINTS

    for name in ("settings.md", "api.md"):
        page = (repo_root / "docs" / name).read_text()
        assert refresh(page) == page, f"docs/{name} is stale: run scripts/docs"
    api = (repo_root / "docs" / "api.md").read_text()
    for e in ENDPOINTS:
        assert f"| {e.method} | `{e.path}` |" in api
    for operation in ("createBudget", "costReport", "failoverRules", "slaViolationRaised", "generateForecasts"):
        assert f"| `{operation}" in api


def test_docs_tables_fails_on_a_stale_page_and_write_refreshes_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    page = tmp_path / "settings.md"
    page.write_text("# Settings\n\n<!-- generated: settings-table -->\n| old |\n<!-- end: settings-table -->\n")
    untouched = tmp_path / "other.md"
    untouched.write_text("no generated block here\n")
    with pytest.raises(SystemExit) as stopped:
        main(["docs-tables", str(tmp_path)])
    assert stopped.value.code == 1
    assert "settings.md is stale: run scripts/docs" in capsys.readouterr().err
    main(["docs-tables", str(tmp_path), "--write"])
    text = page.read_text()
    assert "| old |" not in text and "| `DATABASE_URL` |" in text and text.startswith("# Settings\n")
    main(["docs-tables", str(tmp_path)])  # fresh now: no exit
    assert untouched.read_text() == "no generated block here\n"


def test_docs_tables_refuses_an_unknown_block(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "x.md").write_text("<!-- generated: nonsense -->\n<!-- end: nonsense -->\n")
    with pytest.raises(SystemExit) as stopped:
        main(["docs-tables", str(tmp_path)])
    assert stopped.value.code == 2
    assert "unknown generated block 'nonsense'" in capsys.readouterr().err
