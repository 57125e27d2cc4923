"""The Admin UI in a real browser (chromium) against a real `spendplane serve` on SQLite with demo data."""

from __future__ import annotations

import re
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.ui.conftest import ADMIN_KEY, VIEWER_KEY, VIEWER_TEAM, Server, log_in

pytestmark = pytest.mark.slow

NAV = ["Overview", "Budgets", "Requests", "Reports", "Chargeback", "SLA Monitor", "Alerts", "Settings"]
BUDGET = "id name currentSpend limit utilization softLimitPercent hardLimitPercent entityId"


def serious_axe_violations(page: Any) -> list[str]:
    from axe_playwright_python.sync_playwright import Axe

    results = Axe().run(page)
    return [
        f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes']][:3]}"
        for v in results.response["violations"]
        if v["impact"] in ("critical", "serious")
    ]


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def create_budget(server: Server, **fields: Any) -> dict[str, Any]:
    data = server.gql(
        f"mutation($input: BudgetInput!) {{ createBudget(input: $input) {{ {BUDGET} }} }}", {"input": fields}
    )
    budget: dict[str, Any] = data["createBudget"]
    return budget


def card(page: Any, name: str) -> Any:
    return page.locator("article.budget").filter(has=page.get_by_role("heading", name=name, exact=True))


def test_admin_logs_in_with_the_api_key_and_every_page_has_no_serious_accessibility_violation(
    page: Any, ui_server: Server
) -> None:
    log_in(page, ui_server, ADMIN_KEY)
    nav = page.get_by_role("navigation", name="Main")
    assert [a.inner_text() for a in nav.get_by_role("link").all()] == NAV
    assert page.get_by_text("Admin", exact=True).is_visible()
    for label in NAV:
        nav.get_by_role("link", name=label, exact=True).click()
        page.get_by_role("heading", name=label, level=1).wait_for()
        page.wait_for_load_state("networkidle")
        assert nav.get_by_role("link", name=label, exact=True).get_attribute("aria-current") == "page"
        assert serious_axe_violations(page) == [], label
    # every input on the pages is labelled (axe checks it too); the login page as well
    page.get_by_role("button", name="Log out").click()
    page.get_by_label("API key").wait_for()
    assert serious_axe_violations(page) == []


def test_a_wrong_key_is_refused_at_the_api_key_field(page: Any, ui_server: Server) -> None:
    page.goto(ui_server.base + "/budgets")
    page.get_by_label("API key").fill("sk-not-a-key")
    page.get_by_role("button", name="Log in").click()
    field = page.get_by_label("API key")
    page.wait_for_selector("input[aria-invalid=true]")
    assert field.get_attribute("aria-invalid") == "true"
    assert page.get_by_role("navigation", name="Main").count() == 0


def test_a_deep_link_loads_the_app_and_an_expired_token_returns_to_the_same_page_after_login(
    page: Any, ui_server: Server
) -> None:
    log_in(page, ui_server, ADMIN_KEY, "/reports?period=DAILY")
    page.get_by_role("heading", name="Reports", level=1).wait_for()
    assert page.url.endswith("/reports?period=DAILY")
    # the token expires (here: a token the server no longer accepts) while the person is on the page
    page.evaluate("sessionStorage.setItem('spendplane.token', 'eyJhbGciOiJIUzI1NiJ9.e30.expired')")
    page.get_by_role("link", name="Chargeback").click()
    page.get_by_text("Your session has expired").wait_for()
    assert page.url.endswith("/login")
    page.get_by_label("API key").fill(ADMIN_KEY)
    page.get_by_role("button", name="Log in").click()
    page.get_by_role("heading", name="Chargeback", level=1).wait_for()
    assert "/chargeback" in page.url


def test_when_the_token_runs_out_the_login_comes_back_and_then_the_same_page(page: Any, ui_server: Server) -> None:
    page.clock.install()  # the browser's clock, so the token's lifetime (an hour) can pass at once
    log_in(page, ui_server, ADMIN_KEY, "/reports?period=WEEKLY")
    page.get_by_role("heading", name="Reports", level=1).wait_for()
    page.clock.fast_forward("02:00:00")  # past me.expiresAt
    page.get_by_text("Your session has expired").wait_for()
    assert page.evaluate("sessionStorage.getItem('spendplane.token')") is None
    page.get_by_label("API key").fill(ADMIN_KEY)
    page.get_by_role("button", name="Log in").click()
    page.get_by_role("heading", name="Reports", level=1).wait_for()
    assert page.url.endswith("/reports?period=WEEKLY")


def test_the_guide_steps_create_a_budget_through_the_form_and_show_its_card(page: Any, ui_server: Server) -> None:
    name = unique("Engineering Team Budget")
    team = unique("team")
    log_in(page, ui_server, ADMIN_KEY, "/budgets")
    page.get_by_role("button", name="Create Budget").click()
    page.get_by_label("Name").fill(name)
    page.get_by_label("Entity Type").select_option("TEAM")
    page.get_by_label("Entity ID").fill(team)
    page.get_by_label("Monthly Limit").fill("5000")
    page.get_by_label("Soft Limit %").fill("80")
    page.get_by_label("Hard Limit %").fill("100")
    page.get_by_label("Alert Email").fill("team-lead@example.com")
    page.get_by_role("button", name="Create", exact=True).click()
    c = card(page, name)
    c.wait_for()
    assert c.locator(".limit").inner_text() == "$5,000.00"
    assert c.get_by_role("progressbar").get_attribute("data-color") == "green"
    (made,) = [b for b in ui_server.gql(f"{{ budgets {{ {BUDGET} }} }}")["budgets"] if b["name"] == name]
    assert made["entityId"] == team and Decimal(made["limit"]) == 5000
    assert Decimal(made["softLimitPercent"]) == Decimal("0.8") and Decimal(made["hardLimitPercent"]) == 1


def test_a_daily_tag_budget_in_a_time_zone_is_created_and_edited_through_the_form(page: Any, ui_server: Server) -> None:
    name = unique("Tag budget")
    log_in(page, ui_server, ADMIN_KEY, "/budgets")
    page.get_by_role("button", name="Create Budget").click()
    page.get_by_label("Name").fill(name)
    page.get_by_label("Entity Type").select_option("TAG")
    page.get_by_label("Entity ID").fill(unique("tag"))
    page.get_by_label("Period").select_option("DAILY")
    page.get_by_label("Limit", exact=True).fill("25")
    page.get_by_label("Time Zone").fill("America/Los_Angeles")
    page.get_by_role("button", name="Create", exact=True).click()
    c = card(page, name)
    c.wait_for()
    assert "tag" in c.locator(".entity").inner_text() and "America/Los_Angeles" in c.inner_text()
    c.get_by_role("button", name=f"Edit {name}").click()
    page.get_by_label("Limit", exact=True).fill("30")
    page.get_by_role("button", name="Save").click()
    page.wait_for_function(
        "n => [...document.querySelectorAll('article.budget')]"
        ".some(a => a.innerText.includes(n) && a.querySelector('.limit').dataset.value === '30')",
        arg=name,
    )


def test_a_negative_limit_is_refused_at_its_field_with_aria_invalid(page: Any, ui_server: Server) -> None:
    log_in(page, ui_server, ADMIN_KEY, "/budgets")
    page.get_by_role("button", name="Create Budget").click()
    page.get_by_label("Name").fill(unique("Negative"))
    page.get_by_label("Entity ID").fill(unique("team"))
    page.get_by_label("Monthly Limit").fill("-5")
    page.get_by_role("button", name="Create", exact=True).click()
    limit = page.get_by_label("Monthly Limit")
    page.wait_for_selector("input[name=monthlyLimit][aria-invalid=true]")
    error_id = limit.get_attribute("aria-describedby")
    message = page.locator(f"#{error_id}")
    assert message.is_visible() and "monthlyLimit" in message.inner_text()
    assert page.get_by_label("Name").get_attribute("aria-invalid") is None


def test_the_bar_is_green_below_the_soft_limit_yellow_from_it_and_red_from_the_hard_limit(
    page: Any, ui_server: Server
) -> None:
    names = {}
    for colour, spent in (("green", 1), ("yellow", 8), ("red", 10)):
        user = unique("bar-user")
        ui_server.post_spend(cost=spent, user_id=user)
        names[colour] = unique(f"Bar {colour}")
        create_budget(
            ui_server,
            name=names[colour],
            entityType="USER",
            entityId=user,
            monthlyLimit="10",
            softLimitPercent="0.8",
            hardLimitPercent="1",
        )
    log_in(page, ui_server, ADMIN_KEY, "/budgets")
    for colour, name in names.items():
        bar = card(page, name).get_by_role("progressbar")
        bar.wait_for()
        assert bar.get_attribute("data-color") == colour, name
        assert re.search(f"\\bbar {colour}\\b", bar.get_attribute("class") or "")
    assert card(page, names["yellow"]).get_by_role("progressbar").get_attribute("aria-valuenow") == "80.0"


def test_a_card_changes_live_when_spend_is_posted_without_a_reload(page: Any, ui_server: Server) -> None:
    user = unique("live-user")
    name = unique("Live")
    create_budget(ui_server, name=name, entityType="USER", entityId=user, monthlyLimit="100")
    log_in(page, ui_server, ADMIN_KEY, "/budgets")
    spend = card(page, name).locator(".spend")
    assert spend.inner_text() == "$0.00"
    page.get_by_text("Live updates: on").wait_for()  # the subscription's socket is acknowledged
    page.wait_for_timeout(1000)  # and the subscribe message that followed it reached the server
    page.evaluate("window.__noReload = true")
    # LiteLLM asks first: the request's hold shows as reserved in flight, live
    assert ui_server.pre_request(user_id=user)["allowed"] is True
    page.wait_for_function(
        "n => [...document.querySelectorAll('article.budget')]"
        ".some(a => a.innerText.includes(n) && Number(a.querySelector('.reserved').dataset.value) > 0)",
        arg=name,
    )
    ui_server.post_spend(cost=12.5, user_id=user)
    page.wait_for_function(
        "n => [...document.querySelectorAll('article.budget')]"
        ".some(a => a.innerText.includes(n) && a.querySelector('.spend').innerText === '$12.50')",
        arg=name,
    )
    assert page.evaluate("window.__noReload") is True  # the same document: no reload happened
    assert card(page, name).locator(".remaining").inner_text() == "$87.50"


def test_deleting_a_budget_asks_for_confirmation(page: Any, ui_server: Server) -> None:
    name = unique("Delete me")
    create_budget(ui_server, name=name, entityType="USER", entityId=unique("u"), monthlyLimit="10")
    log_in(page, ui_server, ADMIN_KEY, "/budgets")
    card(page, name).get_by_role("button", name=f"Delete {name}").click()
    page.get_by_role("dialog").get_by_role("button", name="Cancel").click()
    assert card(page, name).count() == 1
    card(page, name).get_by_role("button", name=f"Delete {name}").click()
    page.get_by_role("dialog").get_by_role("button", name="Delete").click()
    page.get_by_text(f"Deleted {name}.").wait_for()
    assert card(page, name).count() == 0
    assert name not in [b["name"] for b in ui_server.gql("{ budgets { name } }")["budgets"]]


def test_a_viewer_sees_neither_another_team_nor_admin_controls(page: Any, ui_server: Server) -> None:
    own, other = unique("Own team"), unique("Other team")
    create_budget(ui_server, name=own, entityType="TEAM", entityId=VIEWER_TEAM, period="WEEKLY", limit="1000")
    create_budget(ui_server, name=other, entityType="TEAM", entityId="finance", period="WEEKLY", limit="1000")
    log_in(page, ui_server, VIEWER_KEY, "/budgets")
    card(page, own).wait_for()
    assert card(page, other).count() == 0
    assert page.get_by_role("button", name="Create Budget").count() == 0
    assert page.get_by_role("button", name=re.compile("^(Edit|Delete) ")).count() == 0
    assert "Viewer" in page.locator(".who").inner_text()
    page.get_by_role("link", name="Settings").click()
    page.get_by_role("heading", name="Settings", level=1).wait_for()
    assert page.get_by_label("Cost Tracking").is_disabled()
    assert page.get_by_label("Budget Enforcement").is_disabled()
    assert page.get_by_role("button", name="Set Price").count() == 0
    page.get_by_role("link", name="Reports").click()
    page.get_by_role("heading", name="By team").wait_for()
    teams = page.locator("section >> text=By team").locator("xpath=following::table[1]//tbody//td[1]").all_inner_texts()
    assert teams and set(teams) <= {VIEWER_TEAM}
    page.get_by_role("link", name="SLA Monitor").click()
    page.get_by_role("heading", name="SLA Monitor", level=1).wait_for()
    assert page.get_by_role("button", name=re.compile("Create|Run Collector")).count() == 0


def test_every_figure_on_reports_equals_the_graphql_api(page: Any, ui_server: Server) -> None:
    log_in(page, ui_server, ADMIN_KEY, "/reports?period=MONTHLY")
    page.get_by_role("heading", name="By model").wait_for()
    api = ui_server.gql(
        "{ costReport(period: MONTHLY) { totalCost totalRequests totalFailedRequests totalInputTokens "
        "totalOutputTokens "
        "breakdownByModel { key cost } breakdownByUser { key cost } breakdownByTeam { key cost } } }"
    )["costReport"]
    for key in ("totalCost", "totalRequests", "totalFailedRequests", "totalInputTokens", "totalOutputTokens"):
        assert page.locator(f"[data-figure={key}]").get_attribute("data-value") == str(api[key]), key
    for title, rows in (
        ("By model", "breakdownByModel"),
        ("By user", "breakdownByUser"),
        ("By team", "breakdownByTeam"),
    ):
        table = page.get_by_role("heading", name=title).locator("xpath=following::table[1]")
        shown = [
            (r.locator("td").nth(0).inner_text(), r.locator("td").nth(1).locator("span").get_attribute("data-value"))
            for r in table.locator("tbody tr").all()
        ]
        assert shown == [(x["key"] or "(none)", x["cost"]) for x in api[rows]], title
    # sorting by cost ascending reorders the rows, figures unchanged
    table = page.get_by_role("heading", name="By model").locator("xpath=following::table[1]")
    table.get_by_role("button", name="Cost").click()
    table.get_by_role("button", name="Cost").click()
    costs = [
        Decimal(v) for v in table.locator("tbody td:nth-child(2) span").evaluate_all("e => e.map(x => x.dataset.value)")
    ]
    assert costs == sorted(costs)


def test_the_csv_download_has_the_exports_content(page: Any, ui_server: Server) -> None:
    log_in(page, ui_server, ADMIN_KEY, "/reports?period=MONTHLY")
    with page.expect_download() as info:
        page.get_by_role("button", name="Download CSV").click()
    download = info.value
    content = Path(download.path()).read_text(encoding="utf-8")
    export = ui_server.gql("{ exportCostReport(format: CSV, period: MONTHLY) { filename content } }")[
        "exportCostReport"
    ]
    assert download.suggested_filename == export["filename"]
    assert content == export["content"]
    assert content.splitlines()[0].startswith(("date", "day", "\ufeff")) or "," in content.splitlines()[0]


def test_a_settings_switch_persists_after_reload(page: Any, ui_server: Server) -> None:
    log_in(page, ui_server, ADMIN_KEY, "/settings")
    switch = page.get_by_label("Cost Tracking")
    assert switch.is_checked()
    switch.click()
    page.get_by_text("Cost Tracking is off.").wait_for()
    page.reload()
    page.get_by_role("heading", name="Features").wait_for()
    try:
        assert not page.get_by_label("Cost Tracking").is_checked()
        assert ui_server.gql("{ settings { costTrackingEnabled } }")["settings"]["costTrackingEnabled"] is False
    finally:
        page.get_by_label("Cost Tracking").click()
        page.get_by_text("Cost Tracking is on.").wait_for()
    assert ui_server.gql("{ settings { costTrackingEnabled } }")["settings"]["costTrackingEnabled"] is True


def test_the_chargeback_lifecycle_by_its_buttons(page: Any, ui_server: Server) -> None:
    log_in(page, ui_server, ADMIN_KEY, "/chargeback")
    page.get_by_role("tab", name="Allocation Rules").wait_for()
    page.get_by_label("Team ID").fill(VIEWER_TEAM)
    page.get_by_label("Allocation Target").fill("CC-4711")
    page.get_by_label("Allocation %").fill("60")
    page.get_by_label("Metadata (JSON)").fill("{not json")
    page.get_by_role("button", name="Create Rule").click()
    page.wait_for_selector("textarea[name=metadata][aria-invalid=true]")
    page.get_by_label("Metadata (JSON)").fill('{"gl_account": "6100"}')
    page.get_by_role("button", name="Create Rule").click()
    page.get_by_role("cell", name="CC-4711", exact=True).wait_for()
    page.get_by_role("tab", name="Reports").click()
    page.get_by_role("button", name="Generate Report").click()
    report = page.locator("article[data-report-id]").first
    report.get_by_text("draft", exact=True).wait_for()
    report.get_by_role("button", name="Finalize").click()
    page.get_by_role("dialog").get_by_role("button", name="Finalize").click()
    report = page.locator("article[data-report-id]").first
    report.get_by_text("finalized", exact=True).wait_for()
    with page.expect_download() as info:
        report.get_by_role("button", name="Export").click()
    assert info.value.suggested_filename.endswith(".csv")
    page.locator("article[data-report-id]").first.get_by_text("exported", exact=True).wait_for()
    assert "CC-4711" in Path(info.value.path()).read_text(encoding="utf-8")
    page.get_by_role("tab", name="Forecasts").click()
    page.get_by_role("button", name="Generate").click()
    page.get_by_role("cell", name="Platform").first.wait_for()


def test_the_sla_monitor_shows_health_after_a_collector_run_and_creates_a_failover_rule(
    page: Any, ui_server: Server
) -> None:
    model = unique("ui-model")
    for i in range(6):
        ui_server.post_spend(cost=0.01, model=model, latency_s=2.0 + i * 0.1, user_id="sla-user")
    log_in(page, ui_server, ADMIN_KEY, "/sla")
    page.get_by_label("Name").fill(unique("Fast p95"))
    page.get_by_label("Model Pattern").fill(model)
    page.get_by_label("Target p95 (ms)").fill("500")
    page.get_by_label("Evaluation Window (min)").fill("5")
    page.get_by_role("button", name="Create Definition").click()
    page.get_by_role("cell", name=model).first.wait_for()
    page.get_by_role("button", name="Run Collector Now").click()
    row = page.locator("table").first.locator("tbody tr").filter(has_text=model)
    row.wait_for()
    p95 = row.locator("td").nth(3).locator(".badge")
    assert p95.get_attribute("data-judged") == "bad"  # 2 s against a 500 ms target
    assert row.locator("td").nth(8).inner_text() == "6"
    page.get_by_label("Primary Model").fill(model)
    page.get_by_label("Fallback Model").fill("gpt-4o-mini")
    page.get_by_label("Trigger").select_option("LATENCY_P95")
    page.get_by_label("Threshold").fill("1000")
    page.get_by_role("button", name="Create Failover Rule").click()
    rules = page.get_by_role("heading", name="Failover rules").locator("xpath=following::table[1]")
    rules.get_by_role("cell", name="gpt-4o-mini").wait_for()
    assert any(r["primaryModel"] == model for r in ui_server.gql("{ failoverRules { primaryModel } }")["failoverRules"])
    # the definition is edited through the same form
    definitions = page.get_by_role("heading", name="Definitions").locator("xpath=following::table[1]")
    definitions.locator("tbody tr").filter(has_text=model).get_by_role(
        "button", name=re.compile("^Edit definition")
    ).click()
    page.get_by_label("Target p95 (ms)").fill("5000")
    page.get_by_role("button", name="Save Definition").click()
    page.get_by_role("cell", name=re.compile("p95 5000 ms")).first.wait_for()
    (edited,) = [
        d
        for d in ui_server.gql("{ slaDefinitions { modelPattern targetP95Ms } }")["slaDefinitions"]
        if d["modelPattern"] == model
    ]
    assert edited["targetP95Ms"] == 5000


def test_the_alert_feed_shows_a_raised_alert_live(page: Any, ui_server: Server) -> None:
    user = unique("alert-user")
    ui_server.post_spend(cost=9, user_id=user)
    create_budget(ui_server, name=unique("Alerting"), entityType="USER", entityId=user, monthlyLimit="10")
    log_in(page, ui_server, ADMIN_KEY, "/alerts")
    page.get_by_text("Live: listening for new alerts").wait_for()  # the socket is acknowledged
    page.wait_for_timeout(1000)  # and the subscribe message that followed it reached the server
    # LiteLLM's pre-request check at 90% of the limit raises an approaching_limit alert (the gateway learns of a
    # new budget and its spend within moments: ask until it warns, bounded)
    for _ in range(60):
        if ui_server.pre_request(user_id=user)["action"] == "warn":
            break
        page.wait_for_timeout(500)
    else:
        pytest.fail("the gateway never warned")
    item = page.locator("li[data-alert-id]").filter(has_text=user).first
    item.wait_for()
    assert item.get_by_text("new", exact=True).is_visible()  # it came through alertRaised, not a reload
    assert "approaching limit" in item.inner_text()


def test_the_phone_layout_opens_the_navigation_from_the_menu_button(browser: Any, ui_server: Server) -> None:
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    try:
        page = context.new_page()
        log_in_phone = ui_server.base + "/budgets"
        page.goto(log_in_phone)
        page.get_by_label("API key").fill(ADMIN_KEY)
        page.get_by_role("button", name="Log in").click()
        page.get_by_role("heading", name="Budgets", level=1).wait_for()
        nav = page.get_by_role("navigation", name="Main")
        assert not nav.is_visible()
        page.get_by_role("button", name="Menu").click()
        nav.get_by_role("link", name="Reports").click()
        page.get_by_role("heading", name="Reports", level=1).wait_for()
        assert page.evaluate("document.documentElement.scrollWidth") <= 390 + 1
        assert serious_axe_violations(page) == []
    finally:
        context.close()


def test_the_keyboard_reaches_the_login_and_the_navigation(page: Any, ui_server: Server) -> None:
    page.goto(ui_server.base + "/overview")
    page.get_by_label("API key").wait_for()
    page.keyboard.type(ADMIN_KEY)  # the field has focus
    page.keyboard.press("Enter")
    page.get_by_role("navigation", name="Main").wait_for()
    for _ in range(12):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.textContent") == "Budgets":
            break
    page.keyboard.press("Enter")
    page.get_by_role("heading", name="Budgets", level=1).wait_for()


def test_the_dashboard_is_served_with_a_strict_content_security_policy_and_no_external_assets(
    ui_server: Server,
) -> None:
    r = httpx.get(ui_server.base + "/budgets", timeout=30)
    assert r.status_code == 200 and "text/html" in r.headers["content-type"]
    csp = r.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "script-src 'self'" in csp
    assert "http" not in r.text.replace('href="/ui', "").split("<noscript>")[0]
    assert httpx.get(ui_server.base + "/no-such-page", timeout=30).status_code == 404
    # /alerts is a page and a REST route: a browser's navigation gets the app, an API client the API
    page = httpx.get(ui_server.base + "/alerts", headers={"accept": "text/html,*/*"}, timeout=30)
    assert page.status_code == 200 and "<title>spendplane</title>" in page.text
    api = httpx.get(
        ui_server.base + "/alerts", headers={"authorization": f"Bearer {ui_server.admin_token}"}, timeout=30
    )
    assert api.status_code == 200 and isinstance(api.json(), (list, dict))
    assert httpx.get(ui_server.base + "/alerts", timeout=30).status_code == 401
    assert httpx.get(ui_server.base + "/ui/../graphql_api/app.py", timeout=30).status_code == 404


def test_a_filtered_request_search_with_no_start_covers_the_last_seven_days(page: Any, ui_server: Server) -> None:
    """LiteLLM indexes spend logs by time only, so a team filter without Since is bounded to a week (and says so),
    and every row shown is that team's."""
    log_in(page, ui_server, ADMIN_KEY, "/requests?teamId=engineering")
    page.get_by_text("A filtered search with no Since covers the last 7 days").wait_for()
    teams = page.locator("table tbody tr td:nth-child(3)").all_inner_texts()
    assert teams and set(teams) == {"engineering"}
    page.goto(f"{ui_server.base}/requests")
    page.locator("table tbody tr").first.wait_for()
    assert page.get_by_text("A filtered search with no Since").count() == 0
