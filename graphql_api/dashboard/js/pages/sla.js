// SLA Monitor: provider health coloured against the SLA targets, history charts, definitions, violations,
// failover rules.
import { gql } from "../api.js";
import { h, field, select, table, badge, notice, showErrors, confirmDialog, fmtTime, percent, ms, num } from "../dom.js";
import { lineChart } from "../chart.js";

const HEALTH = `provider model windowStart windowEnd requests errorRate availability latencyP50Ms latencyP95Ms latencyP99Ms ttftP50Ms ttftP95Ms`;

function globToRe(p) {
  return new RegExp("^" + p.split("*").map((x) => x.replace(/[.+?^${}()|[\]\\]/g, "\\$&")).join(".*") + "$");
}

// a cell is "bad" when any definition covering the row has a target the figure misses
function judge(defs, row, key, target, higherIsBetter = false) {
  const value = row[key];
  if (value === null || value === undefined) return "";
  for (const d of defs) {
    if (d[target] === null || d[target] === undefined) continue;
    if (d.provider && d.provider !== row.provider) continue;
    if (!globToRe(d.modelPattern).test(row.model)) continue;
    if (higherIsBetter ? value < d[target] : value > d[target]) return "bad";
  }
  return "good";
}

export async function render(ctx) {
  const hours = Number(ctx.params.get("hours") || 24);
  const activeOnly = ctx.params.get("active") === "1";
  const d = await gql(`query($hours: Int!, $activeOnly: Boolean!) { providerHealth { ${HEALTH} } providerHealthHistory(hours: $hours) { ${HEALTH} }
    slaDefinitions { id name provider modelPattern targetP50Ms targetP95Ms targetP99Ms targetTtftP95Ms targetErrorRate targetAvailability evaluationWindowMinutes }
    slaViolations(activeOnly: $activeOnly, limit: 100) { id definitionName provider modelPattern metric targetValue measuredValue openedAt active resolvedAt resolution }
    failoverRules { id primaryModel fallbackModel triggerCondition triggerThreshold cooldownMinutes active activatedAt lastMeasuredValue
      transitions(limit: 5) { at kind reason } } }`, { hours, activeOnly }).catch(async (err) => {
    if (err.code !== "FORBIDDEN") throw err;
    return gql(`query($hours: Int!, $activeOnly: Boolean!) { providerHealth { ${HEALTH} } providerHealthHistory(hours: $hours) { ${HEALTH} }
      slaDefinitions { id name provider modelPattern targetP50Ms targetP95Ms targetP99Ms targetTtftP95Ms targetErrorRate targetAvailability evaluationWindowMinutes }
      slaViolations(activeOnly: $activeOnly, limit: 100) { id definitionName provider modelPattern metric targetValue measuredValue openedAt active resolvedAt resolution } }`, { hours, activeOnly });
  });
  const status = h("div", { role: "status" });
  const here = (changes = {}) => `/sla?${new URLSearchParams({ hours: String(hours), active: activeOnly ? "1" : "0", ...changes })}`;
  const refresh = () => ctx.navigate(here(), { replace: true });
  const activeBox = h("input", { type: "checkbox", id: "active-only", checked: activeOnly,
    onchange: () => ctx.navigate(here({ active: activeBox.checked ? "1" : "0" }), { replace: true }) });
  const cell = (row, key, target, fmt, hib) => {
    const kind = judge(d.slaDefinitions, row, key, target, hib);
    return h("span", { class: `badge ${kind}`, "data-judged": kind || "none" }, fmt(row[key]));
  };
  const health = table([
    { label: "Provider", get: (r) => r.provider }, { label: "Model", get: (r) => r.model },
    { label: "p50", get: (r) => cell(r, "latencyP50Ms", "targetP50Ms", ms) },
    { label: "p95", get: (r) => cell(r, "latencyP95Ms", "targetP95Ms", ms) },
    { label: "p99", get: (r) => cell(r, "latencyP99Ms", "targetP99Ms", ms) },
    { label: "TTFT p95", get: (r) => cell(r, "ttftP95Ms", "targetTtftP95Ms", ms) },
    { label: "Error rate", get: (r) => cell(r, "errorRate", "targetErrorRate", (v) => percent(v, 2)) },
    { label: "Availability", get: (r) => cell(r, "availability", "targetAvailability", (v) => percent(v, 2), true) },
    { label: "Requests", get: (r) => num(r.requests), sort: (r) => r.requests },
  ], d.providerHealth, { sortable: true, caption: d.providerHealth.length ? `Latest collector run, ${fmtTime(d.providerHealth[0].windowEnd)}` : "No collector run yet" });

  // history: p95 per provider/model over the chosen window (the five busiest series)
  const byKey = new Map();
  for (const r of d.providerHealthHistory) {
    const k = `${r.provider}/${r.model}`;
    if (!byKey.has(k)) byKey.set(k, new Map());
    byKey.get(k).set(r.windowEnd, r.latencyP95Ms);
  }
  const times = [...new Set(d.providerHealthHistory.map((r) => r.windowEnd))].sort();
  const top = [...byKey.entries()].slice(0, 4);
  const hoursSel = select("hours", [["1", "1 hour"], ["6", "6 hours"], ["24", "24 hours"], ["168", "7 days"], ["720", "30 days"]], String(hours));
  hoursSel.addEventListener("change", () => ctx.navigate(here({ hours: hoursSel.value }), { replace: true }));
  const history = times.length ? lineChart(`Latency p95 (ms), last ${hours} h`, times, top.map(([k, m]) => ({ label: k, values: times.map((t) => m.get(t) ?? null) })), { unit: "ms" }) : h("p", { class: "muted" }, "No history in this window.");

  const defs = table([
    { label: "Name", get: (x) => x.name }, { label: "Provider", get: (x) => x.provider ?? "any" }, { label: "Models", get: (x) => x.modelPattern },
    { label: "Targets", get: (x) => [["p50", x.targetP50Ms, ms], ["p95", x.targetP95Ms, ms], ["p99", x.targetP99Ms, ms], ["TTFT p95", x.targetTtftP95Ms, ms],
      ["errors", x.targetErrorRate, (v) => percent(v, 2)], ["availability", x.targetAvailability, (v) => percent(v, 2)]]
      .filter((t) => t[1] !== null).map((t) => `${t[0]} ${t[2](t[1])}`).join(", ") },
    { label: "Window", get: (x) => `${x.evaluationWindowMinutes} min` },
    ...(ctx.isAdmin ? [{ label: "", get: (x) => h("button", { type: "button", class: "secondary", "aria-label": `Edit definition ${x.name}`, onclick: () => editDefinition(x) }, "Edit") }] : []),
    ...(ctx.isAdmin ? [{ label: "", get: (x) => h("button", { type: "button", class: "danger", "aria-label": `Delete definition ${x.name}`, onclick: async () => {
      if (!(await confirmDialog(`Delete the SLA definition "${x.name}"?`, "Delete"))) return;
      try { await gql(`mutation($id: ID!) { deleteSlaDefinition(id: $id) { id } }`, { id: x.id }); refresh(); }
      catch (err) { status.replaceChildren(notice(err.message, "error")); }
    } }, "Delete") }] : []),
  ], d.slaDefinitions);
  const violations = table([
    { label: "Definition", get: (v) => v.definitionName }, { label: "Metric", get: (v) => v.metric },
    { label: "Measured", get: (v) => String(v.measuredValue) }, { label: "Target", get: (v) => String(v.targetValue) },
    { label: "Opened", get: (v) => fmtTime(v.openedAt) },
    { label: "State", get: (v) => v.active ? badge("active", "bad") : badge(`resolved ${v.resolution ? v.resolution.toLowerCase() : ""}`, "ok") },
    ...(ctx.isAdmin ? [{ label: "", get: (v) => v.active ? h("button", { type: "button", class: "secondary", "aria-label": `Resolve violation of ${v.definitionName}`, onclick: async () => {
      try { await gql(`mutation($id: ID!) { resolveSlaViolation(id: $id) { id } }`, { id: v.id }); refresh(); }
      catch (err) { status.replaceChildren(notice(err.message, "error")); }
    } }, "Resolve") : "" }] : []),
  ], d.slaViolations);
  const rules = d.failoverRules ? table([
    { label: "Primary", get: (r) => r.primaryModel }, { label: "Fallback", get: (r) => r.fallbackModel },
    { label: "Trigger", get: (r) => `${r.triggerCondition} ${r.triggerThreshold}` }, { label: "Cooldown", get: (r) => `${r.cooldownMinutes} min` },
    { label: "State", get: (r) => r.active ? badge("active: routing to fallback", "bad") : badge("standby", "ok") },
    { label: "Transitions", get: (r) => r.transitions.map((t) => `${fmtTime(t.at)} ${t.kind.toLowerCase()}`).join("; ") || "none" },
  ], d.failoverRules) : h("p", { class: "muted" }, "Failover rules are for admins.");

  const inp = (name, attrs = {}) => h("input", { name, ...attrs });
  const defForm = h("form", { class: "panel card", "aria-label": "Create Definition", novalidate: true },
    field("Name", inp("name", { required: true })), field("Provider", inp("provider", { placeholder: "any" })),
    field("Model Pattern", inp("modelPattern", { value: "*" })),
    field("Target p95 (ms)", inp("targetP95Ms", { inputmode: "decimal" })), field("Target TTFT p95 (ms)", inp("targetTtftP95Ms", { inputmode: "decimal" })),
    field("Target Error Rate (0-1)", inp("targetErrorRate", { inputmode: "decimal" })), field("Target Availability (0-1)", inp("targetAvailability", { inputmode: "decimal" })),
    field("Evaluation Window (min)", inp("evaluationWindowMinutes", { type: "number", value: "60" })),
    h("p", { class: "form-error", role: "alert", hidden: true }),
    h("div", { class: "actions" }, h("button", { type: "submit" }, "Create Definition")));
  let editing = null; // the definition being edited, or null: the form creates
  const editDefinition = (x) => {
    editing = x;
    for (const key of ["name", "provider", "modelPattern", "targetP95Ms", "targetTtftP95Ms", "targetErrorRate", "targetAvailability", "evaluationWindowMinutes"]) {
      defForm.elements[key].value = x[key] ?? "";
    }
    defForm.querySelector("button[type=submit]").textContent = "Save Definition";
    defForm.setAttribute("aria-label", `Edit definition ${x.name}`);
    defForm.elements.name.focus();
  };
  defForm.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const f = Object.fromEntries(new FormData(defForm).entries());
    const nOrNull = (v) => (v === "" ? null : Number(v));
    const input = {
      name: f.name, provider: f.provider || null, modelPattern: f.modelPattern || "*", targetP95Ms: nOrNull(f.targetP95Ms),
      targetTtftP95Ms: nOrNull(f.targetTtftP95Ms), targetErrorRate: nOrNull(f.targetErrorRate), targetAvailability: nOrNull(f.targetAvailability),
      evaluationWindowMinutes: Number(f.evaluationWindowMinutes || 60) };
    try {
      if (editing) {
        await gql(`mutation($id: ID!, $input: SlaDefinitionUpdateInput!) { updateSlaDefinition(id: $id, input: $input) { id } }`, { id: editing.id, input });
      } else {
        await gql(`mutation($input: SlaDefinitionInput!) { createSlaDefinition(input: $input) { id } }`, { input });
      }
      refresh();
    } catch (err) { showErrors(defForm, err); }
  });
  const ruleForm = h("form", { class: "panel card", "aria-label": "Create Failover Rule", novalidate: true },
    field("Primary Model", inp("primaryModel", { required: true })), field("Fallback Model", inp("fallbackModel", { required: true })),
    field("Trigger", select("triggerCondition", ["ERROR_RATE", "LATENCY_P95", "TTFT_P95", "AVAILABILITY"])),
    field("Threshold", inp("triggerThreshold", { inputmode: "decimal", required: true })),
    field("Cooldown (min)", inp("cooldownMinutes", { type: "number", value: "15" })),
    h("p", { class: "form-error", role: "alert", hidden: true }),
    h("div", { class: "actions" }, h("button", { type: "submit" }, "Create Failover Rule")));
  ruleForm.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const f = Object.fromEntries(new FormData(ruleForm).entries());
    try {
      await gql(`mutation($input: FailoverRuleInput!) { createFailoverRule(input: $input) { id } }`, { input: {
        primaryModel: f.primaryModel, fallbackModel: f.fallbackModel, triggerCondition: f.triggerCondition,
        triggerThreshold: Number(f.triggerThreshold), cooldownMinutes: Number(f.cooldownMinutes || 15) } });
      refresh();
    } catch (err) { showErrors(ruleForm, err); }
  });
  const collect = ctx.isAdmin ? h("button", { type: "button", class: "secondary", onclick: async (ev) => {
    ev.target.disabled = true;
    try { await gql(`mutation { collectProviderHealth { provider } }`); refresh(); }
    catch (err) { status.replaceChildren(notice(err.message, "error")); ev.target.disabled = false; }
  } }, "Run Collector Now") : "";
  return h("section", {},
    h("div", { class: "toolbar" }, h("h1", { style: "margin:0; flex:1" }, "SLA Monitor"), collect), status,
    h("h2", {}, "Provider health"), health,
    h("div", { class: "toolbar" }, field("History", hoursSel)), history,
    h("h2", {}, "Definitions"), ctx.isAdmin ? defForm : "", defs,
    h("h2", {}, "Violations"), h("div", { class: "switch" }, activeBox, h("label", { for: "active-only" }, "Active only")), violations,
    h("h2", {}, "Failover rules"), ctx.isAdmin ? ruleForm : "", rules);
}
