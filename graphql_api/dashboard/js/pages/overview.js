// Overview: today / week / month, month-to-date against the budgets, trend, forecast, top models, risks, alerts.
import { gql } from "../api.js";
import { h, money, percent, table, badge, fmtTime } from "../dom.js";
import { lineChart } from "../chart.js";

export async function render(ctx) {
  const d = await gql(`{
    dashboardSummary { date todayCost weekCost monthCost topModels { key cost requests share } }
    costTrend(days: 30) { direction changePercent points { date cost } }
    budgets { id name limit currentSpend utilization status softLimitPercent period }
    forecasts { teamId horizon forecastedCost confidenceLow confidenceHigh confidenceLevel period }
    alerts(limit: 10) { id type severity message createdAt }
    ${ctx.isAdmin ? "slaViolations(activeOnly: true, limit: 10) { id definitionName metric measuredValue targetValue openedAt }" : ""}
  }`);
  const s = d.dashboardSummary;
  const stat = (label, v, cls) => h("div", { class: "card stat" }, h("div", { class: "label" }, label), h("div", { class: `value ${cls}`, "data-value": v }, money(v)));
  const budgetTotal = d.budgets.filter((b) => b.period === "MONTHLY").reduce((acc, b) => acc + Number(b.limit), 0);
  const platform = d.forecasts.find((f) => f.teamId === null && f.horizon === "CURRENT_MONTH") || d.forecasts.find((f) => f.teamId === null);
  const atRisk = d.budgets.filter((b) => b.status !== "OK").sort((a, b) => Number(b.utilization) - Number(a.utilization));
  const t = d.costTrend;
  return h("section", {},
    h("h1", {}, "Overview"),
    h("div", { class: "stats" },
      stat("Today", s.todayCost, "today"), stat("This week", s.weekCost, "week"), stat("This month", s.monthCost, "month"),
      h("div", { class: "card stat" }, h("div", { class: "label" }, "Month-to-date vs monthly budgets"),
        h("div", { class: "value" }, budgetTotal ? `${money(s.monthCost)} / ${money(budgetTotal.toFixed(2))}` : "no monthly budgets")),
      h("div", { class: "card stat" }, h("div", { class: "label" }, "30-day trend"),
        h("div", { class: "value trend" }, `${t.direction.toLowerCase()} ${t.changePercent === null ? "" : (Number(t.changePercent) > 0 ? "+" : "") + Number(t.changePercent).toFixed(1) + "%"}`)),
      platform ? h("div", { class: "card stat" }, h("div", { class: "label" }, `Month-end forecast (${percent(platform.confidenceLevel, 0)} interval)`),
        h("div", { class: "value" }, money(platform.forecastedCost)),
        h("div", { class: "muted" }, `${money(platform.confidenceLow)} – ${money(platform.confidenceHigh)}`)) : null),
    lineChart("Daily cost, last 30 days", t.points.map((p) => p.date), [{ label: "Cost", values: t.points.map((p) => p.cost) }]),
    h("h2", {}, "Top models this month"),
    table([
      { label: "Model", get: (r) => r.key }, { label: "Cost", get: (r) => money(r.cost) },
      { label: "Requests", get: (r) => Number(r.requests).toLocaleString() }, { label: "Share", get: (r) => percent(r.share) },
    ], s.topModels),
    h("h2", {}, "Budgets at risk"),
    table([
      { label: "Budget", get: (r) => r.name }, { label: "Used", get: (r) => percent(r.utilization) },
      { label: "Status", get: (r) => badge(r.status, r.status === "EXCEEDED" ? "bad" : "warn") },
    ], atRisk),
    h("h2", {}, "Open alerts"),
    table([
      { label: "When", get: (r) => fmtTime(r.createdAt) }, { label: "Type", get: (r) => r.type },
      { label: "Severity", get: (r) => badge(r.severity, r.severity === "CRITICAL" ? "bad" : r.severity === "WARNING" ? "warn" : "") },
      { label: "Message", get: (r) => r.message },
    ], d.alerts),
    ctx.isAdmin ? [h("h2", {}, "Active SLA violations"), table([
      { label: "Definition", get: (r) => r.definitionName }, { label: "Metric", get: (r) => r.metric },
      { label: "Measured", get: (r) => r.measuredValue }, { label: "Target", get: (r) => r.targetValue },
      { label: "Since", get: (r) => fmtTime(r.openedAt) },
    ], d.slaViolations)] : null);
}
