"""The guide's defaults and a clean first run: the pre-configured global budget (once), `spendplane
litellm-config`, self-hosted models free, start-up errors in one line, SLA names unique, allocation warnings,
alert deliveries visible, REST statements with current totals."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import subprocess
import sys
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import insert, select

from graphql_api.cli import litellm_config_fragment
from models.alerts import AlertDeliveryRow
from models.budgets import BudgetRow
from models.db import Database, open_database
from models.litellm import teams
from models.migrate import upgrade
from models.sla import SlaDefinitionRow
from resolvers.alerts import AlertDraft, AlertType, Severity, raise_alert
from resolvers.platform.config import Settings
from resolvers.pricing import PriceBook, private_api_base, read_litellm_config, self_hosted_prices
from resolvers.rollups import refresh_rollups
from tests.conftest import MASTER_KEY, NOW, PG_ADMIN_URL, Clock, _create_pg_database, _drop_pg_database, started
from tests.support import Api, SpendLog, add_spend, add_virtual_key

pytestmark = pytest.mark.litellm_tables

REPO = Path(__file__).resolve().parent.parent
BUDGETS = "{ budgets { id name entityType monthlyLimit softLimitPercent hardLimitPercent } }"


def _globals(data: dict[str, Any]) -> list[dict[str, Any]]:
    return [b for b in data["budgets"] if b["entityType"] == "GLOBAL"]


# ------------------------------------------------------------------------------ the pre-configured global budget


async def test_the_first_start_creates_the_guides_global_budget_once_and_never_recreates_it(
    settings: Settings, clock: Clock
) -> None:
    auto = replace(settings, global_budget_usd=None)  # GLOBAL_BUDGET_USD unset: auto
    async with started(auto, clock) as api:
        (preset,) = _globals(await api.data(BUDGETS))
        assert (preset["monthlyLimit"], preset["softLimitPercent"], preset["hardLimitPercent"]) == (
            "1500",
            "0.666666",  # 66.6666...% to six decimals; the $1,000 itself is kept and warns (next test)
            "1",
        )
        await api.data(
            'mutation($id: ID!) { updateBudget(id: $id, input: {monthlyLimit: "2000"}) { id } }', {"id": preset["id"]}
        )
    async with started(auto, clock) as api:  # an edited one is left as it is
        (kept,) = _globals(await api.data(BUDGETS))
        assert (kept["id"], kept["monthlyLimit"]) == (preset["id"], "2000")
        await api.data("mutation($id: ID!) { deleteBudget(id: $id) { id } }", {"id": preset["id"]})
    async with started(auto, clock) as api:  # a deleted one is never recreated
        assert _globals(await api.data(BUDGETS)) == []


async def test_the_first_start_says_what_it_created_in_plain_dollars(
    settings: Settings, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="spendplane"):
        async with started(replace(settings, global_budget_usd=None), clock):
            pass
    said = [r.getMessage() for r in caplog.records if "created the global budget" in r.getMessage()]
    assert len(said) == 1 and "$1500 a month, warning at $1000 (the default;" in said[0], said


async def test_the_first_start_global_budget_warns_at_the_guides_1000_dollars_exactly(
    settings: Settings, clock: Clock, db: Database
) -> None:
    """Soft $1,000 of a $1,500 hard limit: not at $999.999 (what 0.666666 x 1500 gives), at $1,000; an edit of its
    percent or limit makes it a percent budget again."""
    status_of = "{ budgets { id status } }"
    async with started(replace(settings, global_budget_usd=None), clock) as api:
        enforcer = api.runtime().enforcement()

        async def warned() -> tuple[str, str]:
            await enforcer.refresh()
            (budget,) = (await api.data(status_of))["budgets"]
            body = {"model": "gpt-4o", "estimated_cost": "0"}
            answer = await api.client.post("/webhook/pre-request", json=body, headers={"x-api-key": MASTER_KEY})
            return budget["status"], answer.json()["action"]

        await add_spend(db, SpendLog(999.999, NOW - timedelta(hours=1), api_key="k"))
        assert await warned() == ("OK", "allow")
        await add_spend(db, SpendLog(0.001, NOW - timedelta(hours=1), api_key="k"))
        assert await warned() == ("WARNING", "warn")
        (budget,) = (await api.data(status_of))["budgets"]
        await api.data(
            'mutation($id: ID!) { updateBudget(id: $id, input: {softLimitPercent: "0.7"}) { id } }',
            {"id": budget["id"]},
        )
        assert await warned() == ("OK", "allow")  # 1,000 of 1,050


async def test_global_budget_usd_zero_creates_none_and_its_values_are_used_as_given(
    settings: Settings, clock: Clock
) -> None:
    async with started(settings, clock, global_budget_usd=Decimal(0)) as api:
        assert _globals(await api.data(BUDGETS)) == []


async def test_the_global_budget_comes_from_litellms_max_budget_when_unset(
    settings: Settings, clock: Clock, tmp_path: Path
) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("litellm_settings:\n  max_budget: 2500\n")
    async with started(
        settings, clock, global_budget_usd=None, global_soft_budget_usd=Decimal(2000), litellm_config_path=str(config)
    ) as api:
        (preset,) = _globals(await api.data(BUDGETS))
        assert (preset["monthlyLimit"], preset["softLimitPercent"]) == ("2500", "0.8")


async def test_a_database_with_budgets_already_is_not_a_first_start(settings: Settings, clock: Clock) -> None:
    async with started(settings, clock) as api:
        await api.data(
            'mutation { createBudget(input: {name: "Eng", entityType: TEAM, entityId: "eng", '
            'monthlyLimit: "10"}) { id } }'
        )
    async with started(settings, clock, global_budget_usd=Decimal(1500)) as api:
        assert _globals(await api.data(BUDGETS)) == []


async def test_two_instances_starting_at_once_create_one_global_budget(
    settings: Settings, clock: Clock, db: Database
) -> None:
    both = [started(settings, clock, global_budget_usd=Decimal(1500), embedded_lock=False) for _ in range(2)]
    apis = await asyncio.gather(*(instance.__aenter__() for instance in both))
    try:
        async with db.reader() as session:
            rows = (await session.scalars(select(BudgetRow).where(BudgetRow.entity_type == "global"))).all()
        assert [(r.name, r.spend_limit) for r in rows] == [("Global Monthly Budget", Decimal(1500))]
        assert len(_globals(await apis[1].data(BUDGETS))) == 1
    finally:
        for instance in both:
            await instance.__aexit__(None, None, None)


def test_a_soft_global_budget_above_the_hard_one_is_refused_by_name() -> None:
    from resolvers.platform.config import ConfigError

    with pytest.raises(ConfigError, match="GLOBAL_SOFT_BUDGET_USD"):
        Settings.from_env({"GLOBAL_BUDGET_USD": "100", "GLOBAL_SOFT_BUDGET_USD": "200"})
    with pytest.raises(ConfigError, match="GLOBAL_BUDGET_USD: must be auto or an amount"):
        Settings.from_env({"GLOBAL_BUDGET_USD": "lots"})
    assert Settings.from_env({}).global_budget_usd is None  # auto
    assert Settings().global_budget_usd == Decimal(0)  # built in code: none


# ---------------------------------------------------------------------------------------- litellm-config


@pytest.mark.parametrize("gate", ["plugin", "guardrail"])
def test_litellm_config_prints_yaml_with_the_per_key_defaults_and_the_wiring(gate: str) -> None:
    done = _cli(["litellm-config", "--gate", gate, "--url", "http://spendplane:8081"], {})
    assert done.returncode == 0, done.stderr
    config = yaml.safe_load(done.stdout)
    assert config == litellm_config_fragment("http://spendplane:8081", gate)
    defaults = config["litellm_settings"]["default_key_generate_params"]
    assert defaults == {"max_budget": 100, "budget_duration": "1mo", "rpm_limit": 100, "tpm_limit": 100_000}
    assert config["callback_settings"]["spendplane_spend"]["endpoint"] == "http://spendplane:8081/spend/litellm"
    callbacks = config["litellm_settings"]["callbacks"]
    if gate == "plugin":
        assert callbacks == ["spendplane_litellm.proxy_handler_instance", "spendplane_spend"]
        assert "guardrails" not in config
    else:
        assert callbacks == ["spendplane_spend"]
        (guardrail,) = config["guardrails"]
        assert guardrail["litellm_params"]["guardrail"] == "generic_guardrail_api"
        assert guardrail["litellm_params"]["api_base"] == "http://spendplane:8081"


# ------------------------------------------------------------------------------------------ self-hosted models


def test_the_guides_self_hosted_models_are_free_by_default_and_only_those() -> None:
    book = PriceBook(self_hosted=self_hosted_prices(Settings().self_hosted_models))
    for model in ("llama-3.1-70b", "ollama/llama3", "ollama_chat/qwen2", "hosted_vllm/meta-llama/Llama-3-8B"):
        match = book.lookup(model)
        assert match is not None and match.price.source == "self-hosted", model
        assert (match.price.input_per_million, match.price.output_per_million) == (0, 0)
    hosted = book.lookup("groq/llama-3.1-70b")  # someone else's GPUs: not free
    assert hosted is None or hosted.price.source != "self-hosted"


def test_deployments_on_a_private_api_base_are_free_and_public_ones_are_not(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "model_list": [
                    {
                        "model_name": "local-llama",
                        "litellm_params": {"model": "openai/llama-3-8b", "api_base": "http://10.0.3.7:8000/v1"},
                    },
                    {
                        "model_name": "gpu-box",
                        "litellm_params": {"model": "openai/qwen", "api_base": "http://vllm:8000"},
                    },
                    {
                        "model_name": "loop",
                        "litellm_params": {"model": "openai/mistral", "api_base": "http://127.0.0.1:1"},
                    },
                    {
                        "model_name": "priced-local",
                        "litellm_params": {
                            "model": "openai/phi",
                            "api_base": "http://localhost",
                            "input_cost_per_token": 0.000001,
                        },
                    },
                    {
                        "model_name": "cloud",
                        "litellm_params": {"model": "openai/gpt-4o", "api_base": "https://api.openai.com/v1"},
                    },
                ]
            }
        )
    )
    _, prices = read_litellm_config(str(config))
    for name in ("local-llama", "gpu-box", "loop"):
        assert (prices[name].source, prices[name].output_per_million) == ("self-hosted", 0), name
    assert prices["priced-local"].input_per_million == 1  # its own price wins
    assert "cloud" not in prices
    assert not private_api_base("https://8.8.8.8") and not private_api_base("https://api.example.com")
    assert private_api_base("http://[::1]:8000") and private_api_base("http://ollama.internal:11434")


# --------------------------------------------------------------------------------------- a clean first run


def _cli(args: list[str], env: dict[str, str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "graphql_api.cli", *args],
        env={**os.environ, "PYTHONPATH": str(REPO), "LITELLM_PRICE_MAP_URL": "off", **env},
        cwd=cwd or REPO,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


def _one_line(stderr: str) -> str:
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr
    return lines[0]


@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"SOFT_LIMIT_THRESHOLD": "abc"}, "SOFT_LIMIT_THRESHOLD: must be a fraction of the monthly limit"),
        ({"SPENDPLANE_PORT": "notaport"}, "SPENDPLANE_PORT: must be a whole number from 1 to 65535"),
        ({"SPENDPLANE_WEBHOOK_PORT": "80000"}, "SPENDPLANE_WEBHOOK_PORT: must be a whole number from 1 to 65535"),
        ({"COST_PREDICTOR_URL": "localhost:8080"}, "COST_PREDICTOR_URL: must be an http(s) URL"),
    ],
)
def test_a_bad_setting_is_named_in_words_in_one_line(tmp_path: Path, env: dict[str, str], says: str) -> None:
    done = _cli(["serve"], env, tmp_path)
    assert done.returncode == 2
    assert says in _one_line(done.stderr)


def test_an_unreachable_postgresql_is_one_line_and_exit_3(tmp_path: Path) -> None:
    for command in (["serve"], ["migrate"], ["demo-data"], ["rotate-admin-key"]):
        done = _cli(command, {"DATABASE_URL": "postgresql://nobody@127.0.0.1:1/litellm"}, tmp_path)
        assert done.returncode == 3, done.stderr
        line = _one_line(done.stderr)
        assert line.startswith("spendplane: cannot use the database postgresql+asyncpg://nobody@127.0.0.1:1/litellm")


def test_a_missing_postgresql_database_is_one_line_and_exit_3(tmp_path: Path) -> None:
    from sqlalchemy.engine import make_url

    missing = make_url(PG_ADMIN_URL).set(database=f"nope_{uuid.uuid4().hex[:8]}").render_as_string(hide_password=False)
    done = _cli(["serve"], {"DATABASE_URL": missing}, tmp_path)
    assert done.returncode == 3, done.stderr
    assert "does not exist" in _one_line(done.stderr)


def test_migrate_nonsense_and_a_plugin_into_nowhere_are_one_line_each(tmp_path: Path) -> None:
    done = _cli(["migrate", "nonsense"], {"DATABASE_URL": f"sqlite:///{tmp_path}/x.db"}, tmp_path)
    assert done.returncode == 2
    assert _one_line(done.stderr) == (
        "spendplane: cannot migrate to 'nonsense': Can't locate revision identified by 'nonsense'"
    )
    done = _cli(["litellm-plugin", "-o", "/nonexistent"], {}, tmp_path)
    assert done.returncode == 2
    assert _one_line(done.stderr) == ("spendplane: /nonexistent is not a directory (give LiteLLM's config directory)")


async def test_offline_the_price_map_is_one_warning_line_and_no_traceback(tmp_path: Path) -> None:
    from tests.adversarial.support import Served
    from tests.receivers import free_port

    closed = free_port()
    served = Served(
        f"sqlite:///{tmp_path}/offline.db",
        tmp_path,
        LITELLM_PRICE_MAP_URL=f"http://127.0.0.1:{closed}/prices.json",
        SPENDPLANE_LOG_LEVEL="info",
    )
    log = tmp_path / "stderr.log"
    async with _capturing(served, log):
        await _wait_for(lambda: "price-map" in log.read_text())
    text = log.read_text()
    assert "Traceback" not in text and " ERROR " not in text, text
    (line,) = [line for line in text.splitlines() if "price map" in line]
    assert "WARNING spendplane.jobs: job price-map: could not fetch LiteLLM's price map" in line
    assert "using the offline baseline prices" in line


async def test_health_says_degraded_without_litellms_tables_and_the_start_logs_it(tmp_path: Path) -> None:
    import httpx

    from tests.adversarial.support import Served

    name, url = await _create_pg_database()
    try:
        served = Served(url, tmp_path, SPENDPLANE_EMBEDDED="false")
        log = tmp_path / "stderr.log"
        async with _capturing(served, log), httpx.AsyncClient() as http:
            body = (await http.get(f"{served.url}/health")).json()
        assert body["status"] == "degraded" and body["litellm"]["spend_logs"] is False
        assert "LiteLLM's tables are missing from this database" in log.read_text()
    finally:
        await _drop_pg_database(name)


class _capturing:
    """Run a Served with its stderr going to a file."""

    def __init__(self, served: Any, log: Path) -> None:
        self.served, self.log = served, log

    async def __aenter__(self) -> Any:
        self.handle = self.log.open("w")
        served = self.served
        original = asyncio.create_subprocess_exec

        async def exec_with_stderr(*args: Any, **kwargs: Any) -> Any:
            return await original(*args, **kwargs, stderr=self.handle)

        asyncio.create_subprocess_exec = exec_with_stderr  # type: ignore[assignment]
        try:
            return await served.__aenter__()
        finally:
            asyncio.create_subprocess_exec = original  # type: ignore[assignment]

    async def __aexit__(self, *exc: object) -> None:
        await self.served.__aexit__(*exc)
        self.handle.close()


async def _wait_for(condition: Any) -> None:
    for _ in range(300):
        if condition():
            return
        await asyncio.sleep(0.1)
    raise AssertionError("never happened")


# ------------------------------------------------------------------------------------------ SLA names


SLA = "mutation($input: SlaDefinitionInput!) { createSlaDefinition(input: $input) { id name } }"


async def test_a_second_sla_definition_with_the_same_name_is_refused_naming_name(sla_api: Api) -> None:
    first = await sla_api.data(SLA, {"input": {"name": "OpenAI GPT-4o SLA", "targetP95Ms": 3000}})
    error = await sla_api.error(SLA, {"input": {"name": "OpenAI GPT-4o SLA", "targetP95Ms": 2000}})
    assert error["extensions"] == {"code": "BAD_USER_INPUT", "field": "name"}
    assert "already exists" in error["message"]
    rest = await sla_api.client.post(
        "/api/v1/sla/definitions", headers=sla_api.bearer(), json={"name": "OpenAI GPT-4o SLA", "target_p95_ms": 1}
    )
    assert rest.status_code == 409 and rest.json()["error"]["field"] == "name"
    other = await sla_api.data(SLA, {"input": {"name": "Anthropic SLA", "targetP95Ms": 3000}})
    renamed = await sla_api.error(
        'mutation($id: ID!) { updateSlaDefinition(id: $id, input: {name: "OpenAI GPT-4o SLA"}) { id } }',
        {"id": other["createSlaDefinition"]["id"]},
    )
    assert renamed["extensions"]["field"] == "name"
    listed = await sla_api.data("{ slaDefinitions { name } }")
    assert sorted(d["name"] for d in listed["slaDefinitions"]) == ["Anthropic SLA", "OpenAI GPT-4o SLA"]
    assert first["createSlaDefinition"]["name"] == "OpenAI GPT-4o SLA"


async def test_the_database_refuses_a_duplicate_name_whoever_writes_it(db: Database) -> None:
    from sqlalchemy.exc import IntegrityError

    row = {
        "name": "same",
        "model_pattern": "*",
        "evaluation_window_minutes": 60,
        "alert_emails": [],
        "created_at": NOW,
        "updated_at": NOW,
    }
    async with db.engine.begin() as conn:
        await conn.execute(insert(SlaDefinitionRow), [{"id": str(uuid.uuid4()), **row}])
    with pytest.raises(IntegrityError):
        async with db.engine.begin() as conn:
            await conn.execute(insert(SlaDefinitionRow), [{"id": str(uuid.uuid4()), **row}])


async def test_migration_0011_renames_existing_duplicates_keeping_the_oldest(database_url: str, tmp_path: Path) -> None:
    if database_url.startswith("sqlite"):
        url, name = f"sqlite:///{tmp_path / 'old.db'}", None
    else:
        name, url = await _create_pg_database()
    old = open_database(url)
    try:
        await upgrade(old, embedded=True, revision="0009")
        rows = [
            {
                "id": f"id-{i}",
                "name": "dup",
                "model_pattern": "*",
                "evaluation_window_minutes": 60,
                "alert_emails": [],
                "created_at": NOW + timedelta(minutes=i),
                "updated_at": NOW,
            }
            for i in range(3)
        ] + [
            {
                "id": "id-x",
                "name": "dup (2)",
                "model_pattern": "*",
                "evaluation_window_minutes": 60,
                "alert_emails": [],
                "created_at": NOW,
                "updated_at": NOW,
            }
        ]
        async with old.engine.begin() as conn:
            await conn.execute(insert(SlaDefinitionRow.__table__), rows)
        await upgrade(old, embedded=True)
        async with old.reader() as session:
            found = dict((await session.execute(select(SlaDefinitionRow.id, SlaDefinitionRow.name))).all())
        assert found == {"id-0": "dup", "id-1": "dup (3)", "id-2": "dup (4)", "id-x": "dup (2)"}
    finally:
        await old.dispose()
        if name is not None:
            await _drop_pg_database(name)


# ------------------------------------------------------------------------------------- allocation warnings


RULE = """mutation($input: AllocationRuleInput!) { createAllocationRule(input: $input) { id teamId warnings } }"""


async def test_a_rule_for_a_team_nobody_knows_is_accepted_with_a_warning(api: Api, db: Database) -> None:
    unknown = (
        await api.data(
            RULE,
            {
                "input": {
                    "teamId": "engineering-team-uuid",
                    "allocationType": "COST_CENTER",
                    "allocationTarget": "CC-1234",
                }
            },
        )
    )["createAllocationRule"]
    assert len(unknown["warnings"]) == 1 and "'engineering-team-uuid'" in unknown["warnings"][0]
    async with db.engine.begin() as conn:
        await conn.execute(insert(teams).values(team_id="platform", team_alias="Platform", spend=0.0, metadata={}))
    await add_virtual_key(db, "sk-ops-1", user_id="u1", team_id="ops")
    for team in ("platform", "ops"):  # a LiteLLM team row; a key of the team
        known = (
            await api.data(RULE, {"input": {"teamId": team, "allocationType": "PROJECT", "allocationTarget": "P-1"}})
        )["createAllocationRule"]
        assert known["warnings"] == [], team
    rest = await api.client.post(
        "/api/v1/cost-allocation/rules",
        headers=api.bearer(),
        json={"team_id": "ghost", "allocation_type": "department", "allocation_target": "D-1"},
    )
    assert rest.status_code == 201 and "'ghost'" in rest.json()["warnings"][0]
    listed = (await api.data("{ allocationRules { teamId warnings } }"))["allocationRules"]
    assert all(r["warnings"] == [] for r in listed)  # said once, in the answer; never stored


# ------------------------------------------------------------------------------------------ alert deliveries


async def test_alert_deliveries_are_visible_in_graphql_and_rest_with_errors_for_admins_only(
    settings: Settings, clock: Clock, db: Database
) -> None:
    async with started(settings, clock, alert_webhook_url="http://127.0.0.1:9/hook") as api:
        runtime = api.runtime()
        async with runtime.work() as work:
            raised = await raise_alert(
                work,
                AlertDraft(
                    type=AlertType.APPROACHING_LIMIT,
                    severity=Severity.WARNING,
                    message="Team eng passed its soft limit",
                    dedupe_key="test:deliveries",
                    entity_type="team",
                    entity_id="eng",
                    team_id="eng",
                    emails=("lead@example.com",),
                ),
                webhook_url=runtime.settings.alert_webhook_url,
            )
        assert raised is not None
        for _ in range(600):  # no SMTP: the email is unsendable; the webhook's port is closed: retried
            async with db.reader() as session:
                rows = (await session.scalars(select(AlertDeliveryRow))).all()
            if {r.status for r in rows} == {"unsendable", "pending"} and all(r.attempts for r in rows):
                break
            await asyncio.sleep(0.05)
        query = "{ alerts { id deliveries { channel status attempts lastError updatedAt } } }"
        (alert,) = (await api.data(query))["alerts"]
        by_channel = {d["channel"]: d for d in alert["deliveries"]}
        assert by_channel["email"]["status"] == "unsendable" and "SMTP_HOST" in by_channel["email"]["lastError"]
        assert by_channel["webhook"]["status"] == "pending" and by_channel["webhook"]["attempts"] >= 1
        assert by_channel["webhook"]["lastError"]
        assert datetime.fromisoformat(by_channel["email"]["updatedAt"]) >= NOW
        (rest,) = (await api.client.get("/alerts", headers=api.bearer())).json()
        assert {d["channel"]: d["status"] for d in rest["deliveries"]} == {"email": "unsendable", "webhook": "pending"}
        await add_virtual_key(db, "sk-eng-viewer", user_id="u-eng", team_id="eng")
        viewer = await api.login("sk-eng-viewer")
        (seen,) = (await api.data(query, token=viewer))["alerts"]
        assert [d["lastError"] for d in seen["deliveries"]] == [None, None]  # errors may name addresses and URLs
        (seen_rest,) = (await api.client.get("/alerts", headers=api.bearer(viewer))).json()
        assert [d["last_error"] for d in seen_rest["deliveries"]] == [None, None]


# ---------------------------------------------------------------------------- REST statements, current totals


async def test_rest_statements_carry_current_total_and_difference_like_graphql(api: Api, db: Database) -> None:
    october = datetime(2026, 10, 12, 9, 0, tzinfo=UTC)
    await add_spend(db, SpendLog(10, october, team_id="ops"))
    auth = api.bearer()
    made = await api.client.post("/api/v1/chargeback/reports/generate", headers=auth, json={"period": "2026-10"})
    assert made.status_code == 200, made.text
    assert (made.json()["total_cost"], made.json()["current_total"], made.json()["difference"]) == (10, 10, 0)
    report_id = made.json()["id"]
    assert (await api.client.post(f"/api/v1/chargeback/reports/{report_id}/finalize", headers=auth)).status_code == 200
    await add_spend(db, SpendLog(2.5, october + timedelta(days=1), team_id="ops"))
    runtime = api.runtime()  # the late row counts once the rollup's next run re-counts its closed day
    await refresh_rollups(runtime.db, runtime.litellm, runtime.clock(), recheck_days=62)
    got = (await api.client.get(f"/api/v1/chargeback/reports/{report_id}", headers=auth)).json()
    assert (got["total_cost"], got["current_total"], got["difference"], got["status"]) == (10, 12.5, 2.5, "finalized")
    listed = (await api.client.get("/api/v1/chargeback/reports", headers=auth)).json()
    assert [(r["id"], r["difference"]) for r in listed] == [(report_id, 2.5)]
    graphql = await api.data(
        "query($id: ID!) { chargebackReport(id: $id) { currentTotal difference status } }", {"id": report_id}
    )
    assert graphql["chargebackReport"] == {"currentTotal": "12.5", "difference": "2.5", "status": "FINALIZED"}


# ------------------------------------------------------------------------------------------ the guide's ports


def test_the_predictor_listener_opens_on_cost_predictor_urls_port_unless_its_own_is_set() -> None:
    assert Settings.from_env({}).predictor_listen_port is None  # off by default
    assert Settings.from_env({"COST_PREDICTOR_URL": "http://localhost:8080"}).predictor_listen_port == 8080
    both = {"COST_PREDICTOR_URL": "http://localhost:8080", "SPENDPLANE_PREDICTOR_PORT": "9090"}
    assert Settings.from_env(both).predictor_listen_port == 9090
    assert Settings.from_env({"SPENDPLANE_WEBHOOK_PORT": "8081"}).webhook_port == 8081


def test_serve_refuses_one_port_for_two_listeners_in_one_line(tmp_path: Path) -> None:
    done = _cli(["serve", "--port", "8086"], {"SPENDPLANE_WEBHOOK_PORT": "8086"}, tmp_path)
    assert done.returncode == 2
    assert "must differ" in _one_line(done.stderr)


# Item 9: the README stays a newcomer's page, and nothing the repository ships points outside it.

README_LIMIT_BYTES = 15_000
LINK = re.compile(r"\]\(([^)\s]+)\)|(?:href|src)=\"([^\"]+)\"")


def _tracked(*patterns: str) -> list[Path]:
    listed = subprocess.run(["git", "ls-files", *patterns], cwd=REPO, capture_output=True, text=True, check=True)
    return [REPO / name for name in listed.stdout.split()]


def test_the_readme_is_under_15_kb() -> None:
    size = (REPO / "README.md").stat().st_size
    assert size < README_LIMIT_BYTES, f"README.md is {size} bytes: move reference material into docs/"


def test_no_shipped_file_links_outside_the_repository_or_to_a_missing_file() -> None:
    if not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    broken: list[str] = []
    for page in _tracked("*.md"):
        for match in LINK.finditer(page.read_text()):
            target = (match.group(1) or match.group(2)).split("#")[0]
            if not target or re.match(r"^[a-z][a-z0-9+.-]*:", target):  # an anchor, or a URL with a scheme
                continue
            resolved = (page.parent / target).resolve()
            if not resolved.is_relative_to(REPO) or not resolved.exists():
                broken.append(f"{page.relative_to(REPO)} -> {target}")
    for shipped in _tracked("*.py", "*.sh", "*.toml", "*.yml", "*.yaml", "*.md", "scripts/*", ".ci/*"):
        if shipped.is_file() and "../shared" in shipped.read_text(errors="replace") and shipped.name != "test_guide.py":
            broken.append(f"{shipped.relative_to(REPO)} names ../shared")
    assert broken == []
