// Reports: period (daily / weekly / monthly / custom), filters, totals, sortable breakdowns, trend, downloads.
import { gql, download } from "../api.js";
import { h, field, select, money, percent, table, notice } from "../dom.js";
import { lineChart } from "../chart.js";

const REPORT = `period startDate endDate totalCost totalRequests totalFailedRequests totalInputTokens totalOutputTokens
  breakdownByModel { key cost requests share } breakdownByUser { key cost requests share } breakdownByTeam { key cost requests share }`;

export async function render(ctx) {
  const p = ctx.params;
  const args = {
    period: p.get("period") || "MONTHLY",
    startDate: p.get("startDate") || null,
    endDate: p.get("endDate") || null,
    teamId: p.get("teamId") || null,
    userId: p.get("userId") || null,
    model: p.get("model") || null,
  };
  const d = await gql(`query($period: ReportPeriod!, $startDate: Date, $endDate: Date, $teamId: String, $userId: String, $model: String) {
    costReport(period: $period, startDate: $startDate, endDate: $endDate, teamId: $teamId, userId: $userId, model: $model) { ${REPORT} }
    costTrend(days: 30, teamId: $teamId, model: $model) { direction changePercent points { date cost } }
  }`, args);
  const r = d.costReport;
  const inp = (name, attrs = {}) => h("input", { name, value: args[name] ?? "", ...attrs });
  const form = h("form", { class: "toolbar", "aria-label": "Report filters" },
    field("Period", select("period", [["DAILY", "Daily"], ["WEEKLY", "Weekly"], ["MONTHLY", "Monthly"], ["CUSTOM", "Custom"]], args.period)),
    field("Start date", inp("startDate", { type: "date" })),
    field("End date", inp("endDate", { type: "date" })),
    field("Team", inp("teamId")), field("User", inp("userId")), field("Model", inp("model")),
    h("button", { type: "submit" }, "Apply"));
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const q = new URLSearchParams();
    for (const [k, v] of new FormData(form).entries()) if (v) q.set(k, v);
    ctx.navigate(`/reports?${q}`);
  });
  const status = h("div", { role: "status" });
  const exportButton = (format) => h("button", { type: "button", class: "secondary", onclick: async () => {
    try {
      const { exportCostReport: e } = await gql(`query($format: CostExportFormat!, $period: ReportPeriod!, $startDate: Date, $endDate: Date, $teamId: String) {
        exportCostReport(format: $format, period: $period, startDate: $startDate, endDate: $endDate, teamId: $teamId) { filename url } }`,
      { format, period: args.period, startDate: args.startDate, endDate: args.endDate, teamId: args.teamId });
      await download(e.url, e.filename);
    } catch (err) { status.replaceChildren(notice(err.message, "error")); }
  } }, `Download ${format}`);
  const stat = (label, key, value, fmt) => h("div", { class: "card stat" }, h("div", { class: "label" }, label),
    h("div", { class: "value", "data-figure": key, "data-value": String(value) }, fmt(value)));
  const breakdown = (title, rows) => [h("h2", {}, title), table([
    { label: "Name", get: (x) => x.key ?? "(none)", sort: (x) => x.key ?? "" },
    { label: "Cost", get: (x) => h("span", { "data-value": x.cost }, money(x.cost)), sort: (x) => Number(x.cost) },
    { label: "Requests", get: (x) => Number(x.requests).toLocaleString(), sort: (x) => Number(x.requests) },
    { label: "Share", get: (x) => percent(x.share), sort: (x) => Number(x.share) },
  ], rows, { sortable: true })];
  const n = (v) => Number(v).toLocaleString();
  return h("section", {},
    h("h1", {}, "Reports"), form,
    h("p", { class: "muted" }, `${r.startDate} to ${r.endDate}`),
    h("div", { class: "stats" },
      stat("Total cost", "totalCost", r.totalCost, money), stat("Requests", "totalRequests", r.totalRequests, n),
      stat("Failed requests", "totalFailedRequests", r.totalFailedRequests, n),
      stat("Input tokens", "totalInputTokens", r.totalInputTokens, n), stat("Output tokens", "totalOutputTokens", r.totalOutputTokens, n)),
    h("div", { class: "toolbar" }, exportButton("CSV"), exportButton("JSON"), exportButton("FOCUS")), status,
    lineChart(`Daily cost, last 30 days (${d.costTrend.direction.toLowerCase()})`, d.costTrend.points.map((x) => x.date), [{ label: "Cost", values: d.costTrend.points.map((x) => x.cost) }]),
    breakdown("By model", r.breakdownByModel), breakdown("By user", r.breakdownByUser), breakdown("By team", r.breakdownByTeam));
}
