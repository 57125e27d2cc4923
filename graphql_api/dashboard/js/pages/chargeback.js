// Chargeback: Allocation Rules (Create Rule with JSON metadata), Reports (Generate Report, Finalize, Export),
// Forecasts (history, forecast and band on one chart; method and backtest; Generate).
import { gql, download } from "../api.js";
import { h, field, select, money, table, badge, notice, showErrors, confirmDialog, fmtTime, percent } from "../dom.js";
import { lineChart } from "../chart.js";

const REPORT = `id period status totalCost allocatedCost unallocatedCost adjustmentCost revision generatedAt finalizedAt exportedAt
  lastExportFormat currentTotal difference lines { kind teamId allocationType allocationTarget percent cost adjustsPeriod ruleName }`;
const STATUS_KIND = { DRAFT: "warn", FINALIZED: "ok", EXPORTED: "good" };

function previousMonth() {
  const d = new Date();
  d.setUTCDate(1);
  d.setUTCMonth(d.getUTCMonth() - 1);
  return d.toISOString().slice(0, 7);
}

async function rulesTab(ctx, panel) {
  const { allocationRules } = await gql(`{ allocationRules { id name teamId allocationType allocationTarget allocationPercent metadata } }`);
  const status = h("div", { role: "status" });
  const rows = table([
    { label: "Name", get: (r) => r.name }, { label: "Team", get: (r) => r.teamId },
    { label: "Type", get: (r) => r.allocationType }, { label: "Target", get: (r) => r.allocationTarget },
    { label: "Percent", get: (r) => `${Number(r.allocationPercent)}%` },
    { label: "Metadata", get: (r) => JSON.stringify(r.metadata) },
    ...(ctx.isAdmin ? [{ label: "", get: (r) => h("button", { type: "button", class: "danger", "aria-label": `Delete rule ${r.name}`, onclick: async () => {
      if (!(await confirmDialog(`Delete the rule "${r.name}"?`, "Delete"))) return;
      try { await gql(`mutation($id: ID!) { deleteAllocationRule(id: $id) { id } }`, { id: r.id }); await rulesTab(ctx, panel); }
      catch (err) { status.replaceChildren(notice(err.message, "error")); }
    } }, "Delete") }] : []),
  ], allocationRules);
  let form = null;
  if (ctx.isAdmin) {
    form = h("form", { class: "panel card", "aria-label": "Create Rule", novalidate: true },
      field("Team ID", h("input", { name: "teamId", required: true })),
      field("Allocation Type", select("allocationType", ["COST_CENTER", "PROJECT", "DEPARTMENT"])),
      field("Allocation Target", h("input", { name: "allocationTarget", required: true })),
      field("Allocation %", h("input", { name: "allocationPercent", inputmode: "decimal", value: "100" })),
      field("Rule Name", h("input", { name: "name" })),
      field("Metadata (JSON)", h("textarea", { name: "metadata" }, "{}")),
      h("p", { class: "form-error", role: "alert", hidden: true }),
      h("div", { class: "actions" }, h("button", { type: "submit" }, "Create Rule")));
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const f = Object.fromEntries(new FormData(form).entries());
      let metadata;
      try {
        metadata = f.metadata.trim() ? JSON.parse(f.metadata) : {};
        if (typeof metadata !== "object" || Array.isArray(metadata) || metadata === null) throw new Error("must be a JSON object");
      } catch (err) {
        showErrors(form, { field: "metadata", message: `metadata: not valid JSON (${err.message})` });
        return;
      }
      try {
        await gql(`mutation($input: AllocationRuleInput!) { createAllocationRule(input: $input) { id } }`, { input: {
          teamId: f.teamId, allocationType: f.allocationType, allocationTarget: f.allocationTarget,
          allocationPercent: f.allocationPercent || null, name: f.name || null, metadata } });
        await rulesTab(ctx, panel);
      } catch (err) { showErrors(form, err); }
    });
  }
  panel.replaceChildren(form || "", status, rows);
}

function reportDetail(ctx, r, refresh, status) {
  const actions = [];
  if (ctx.isAdmin && r.status === "DRAFT") {
    actions.push(h("button", { type: "button", onclick: async () => {
      if (!(await confirmDialog(`Finalize the ${r.period} statement? It never changes again.`, "Finalize"))) return;
      try { await gql(`mutation($id: ID!) { finalizeChargebackReport(id: $id) { id } }`, { id: r.id }); await refresh(); }
      catch (err) { status.replaceChildren(notice(err.message, "error")); }
    } }, "Finalize"));
  }
  if (ctx.isAdmin && r.status !== "DRAFT") {
    const fmt = select("format", [["CSV", "CSV"], ["JSON", "JSON"], ["SAP:FI_JOURNAL", "SAP FI"], ["SAP:CO_REPOSTING", "SAP CO"]]);
    fmt.setAttribute("aria-label", `Export format for ${r.period}`);
    actions.push(fmt, h("button", { type: "button", onclick: async () => {
      const [format, sapLayout = "FI_JOURNAL"] = fmt.value.split(":");
      try {
        const { exportChargebackReport: e } = await gql(`mutation($id: ID!, $format: ChargebackExportFormat!, $sapLayout: SapLayout!) {
          exportChargebackReport(id: $id, format: $format, sapLayout: $sapLayout) { filename url } }`, { id: r.id, format, sapLayout });
        await download(e.url, e.filename);
        await refresh();
      } catch (err) { status.replaceChildren(notice(err.message, "error")); }
    } }, "Export"));
  }
  return h("article", { class: "card", "data-report-id": r.id, style: "margin-bottom:1rem" },
    h("h3", { style: "margin-top:0" }, `${r.period} `, badge(r.status.toLowerCase(), STATUS_KIND[r.status]), ` revision ${r.revision}`),
    h("p", {}, `Total ${money(r.totalCost)} · allocated ${money(r.allocatedCost)} · unallocated ${money(r.unallocatedCost)} · adjustments ${money(r.adjustmentCost)} · current total ${money(r.currentTotal)} (difference ${money(r.difference)})`),
    h("p", { class: "muted" }, `Generated ${fmtTime(r.generatedAt)}${r.finalizedAt ? ` · finalized ${fmtTime(r.finalizedAt)}` : ""}${r.exportedAt ? ` · exported ${fmtTime(r.exportedAt)} as ${r.lastExportFormat}` : ""}`),
    h("div", { class: "toolbar" }, actions),
    table([
      { label: "Kind", get: (l) => l.kind }, { label: "Team", get: (l) => l.teamId ?? "—" },
      { label: "Type", get: (l) => l.allocationType ?? "—" }, { label: "Target", get: (l) => l.allocationTarget ?? "—" },
      { label: "Percent", get: (l) => `${Number(l.percent)}%` }, { label: "Cost", get: (l) => money(l.cost) },
      { label: "Adjusts", get: (l) => l.adjustsPeriod ?? "" },
    ], r.lines));
}

async function reportsTab(ctx, panel) {
  const status = h("div", { role: "status" });
  if (!ctx.isAdmin) { panel.replaceChildren(notice("Chargeback statements are for admins.")); return; }
  const { chargebackReports } = await gql(`{ chargebackReports { ${REPORT} } }`);
  const refresh = () => reportsTab(ctx, panel);
  const month = h("input", { name: "period", type: "month", value: previousMonth() });
  const gen = h("form", { class: "toolbar", "aria-label": "Generate Report" }, field("Month", month),
    h("button", { type: "submit" }, "Generate Report"));
  gen.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try { await gql(`mutation($p: String!) { generateChargebackReport(period: $p) { id } }`, { p: month.value }); await refresh(); }
    catch (err) { status.replaceChildren(notice(err.message, "error")); }
  });
  panel.replaceChildren(gen, status, ...chargebackReports.map((r) => reportDetail(ctx, r, refresh, status)),
    chargebackReports.length ? "" : h("p", { class: "muted" }, "No statements yet."));
}

async function forecastsTab(ctx, panel) {
  const status = h("div", { role: "status" });
  const { forecasts, costTrend } = await gql(`{ forecasts { teamId period horizon forecastedCost confidenceLow confidenceHigh confidenceLevel
    actualToDate method generatedAt backtestReason backtest { method mase coverage width } }
    costTrend(days: 60) { points { date cost } } }`);
  const platform = forecasts.filter((f) => f.teamId === null);
  // history (daily cost) and the forecast's month-end band, drawn as cumulative month-to-date on one chart
  let chart = "";
  const cur = platform.find((f) => f.horizon === "CURRENT_MONTH");
  if (cur && costTrend.points.length) {
    const month = cur.period;
    const pts = costTrend.points.filter((p) => p.date.startsWith(month));
    let acc = 0;
    const dates = pts.map((p) => p.date), cum = pts.map((p) => (acc += Number(p.cost)));
    const [y, m] = month.split("-").map(Number);
    const end = new Date(Date.UTC(y, m, 0)).toISOString().slice(0, 10);
    const n = dates.length;
    dates.push(end);
    const fc = [...Array(n - 1).fill(null), cum[n - 1] ?? 0, Number(cur.forecastedCost)];
    const lo = [...Array(n - 1).fill(null), cum[n - 1] ?? 0, Number(cur.confidenceLow)];
    const hi = [...Array(n - 1).fill(null), cum[n - 1] ?? 0, Number(cur.confidenceHigh)];
    cum.push(null);
    chart = lineChart(`Platform ${month}: month-to-date, forecast and ${percent(cur.confidenceLevel, 0)} band`, dates,
      [{ label: "Actual", values: cum }, { label: "Forecast", values: fc, dash: [6, 4] }, { label: "Low", values: lo }, { label: "High", values: hi }],
      { band: [4, 3] });
  }
  const gen = ctx.isAdmin ? h("button", { type: "button", onclick: async () => {
    try { await gql(`mutation { generateForecasts { period } }`); await forecastsTab(ctx, panel); }
    catch (err) { status.replaceChildren(notice(err.message, "error")); }
  } }, "Generate") : "";
  panel.replaceChildren(h("div", { class: "toolbar" }, gen), status, chart, table([
    { label: "Team", get: (f) => f.teamId ?? "Platform" }, { label: "Month", get: (f) => f.period },
    { label: "Forecast", get: (f) => money(f.forecastedCost) },
    { label: "Interval", get: (f) => `${money(f.confidenceLow)} – ${money(f.confidenceHigh)}` },
    { label: "Actual to date", get: (f) => money(f.actualToDate) }, { label: "Method", get: (f) => f.method.toLowerCase().replaceAll("_", " ") },
    { label: "Backtest", get: (f) => f.backtest.length ? f.backtest.map((b) => `${b.method.toLowerCase().replaceAll("_", " ")}: MASE ${b.mase?.toFixed(2) ?? "—"}, coverage ${b.coverage === null ? "—" : percent(b.coverage, 0)}`).join("; ") : f.backtestReason },
  ], forecasts, { sortable: true }));
}

export async function render(ctx) {
  const tabs = [["rules", "Allocation Rules", rulesTab], ["reports", "Reports", reportsTab], ["forecasts", "Forecasts", forecastsTab]];
  const current = ctx.params.get("tab") || "rules";
  const panel = h("div", { role: "tabpanel", id: "cb-panel", tabindex: "0" });
  const buttons = tabs.map(([key, label, fn]) => {
    const b = h("button", { type: "button", role: "tab", id: `tab-${key}`, "aria-controls": "cb-panel", "aria-selected": String(key === current),
      tabindex: key === current ? "0" : "-1", onclick: () => select(key) }, label);
    return b;
  });
  const select = async (key) => {
    buttons.forEach((b, i) => { const on = tabs[i][0] === key; b.setAttribute("aria-selected", String(on)); b.tabIndex = on ? 0 : -1; });
    panel.setAttribute("aria-labelledby", `tab-${key}`);
    history.replaceState({}, "", `/chargeback?tab=${key}`);
    panel.replaceChildren(h("p", { class: "loading" }, "Loading…"));
    try { await tabs.find((t) => t[0] === key)[2](ctx, panel); }
    catch (err) { panel.replaceChildren(notice(err.message, "error")); }
  };
  const list = h("div", { role: "tablist", "aria-label": "Chargeback" }, buttons);
  list.addEventListener("keydown", (ev) => {
    const i = buttons.indexOf(document.activeElement);
    if (i < 0 || !["ArrowRight", "ArrowLeft"].includes(ev.key)) return;
    const j = (i + (ev.key === "ArrowRight" ? 1 : buttons.length - 1)) % buttons.length;
    buttons[j].focus();
    select(tabs[j][0]);
  });
  select(tabs.some((t) => t[0] === current) ? current : "rules");
  return h("section", {}, h("h1", {}, "Chargeback"), list, panel);
}
