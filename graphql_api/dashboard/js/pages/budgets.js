// Budgets: a card per budget with its utilization bar, Create Budget / edit / delete (admin), live budgetUpdated.
import { gql, subscribe, onConnected } from "../api.js";
import { h, field, select, money, fmtTime, showErrors, confirmDialog, notice } from "../dom.js";

const FIELDS = `id name entityType entityId period timeZone weekStartsOn monthStartDay yearStartMonth limit monthlyLimit
  softLimitPercent hardLimitPercent alertEmail currentSpend reserved remaining utilization status periodStart resetsAt`;
const ENTITY_TYPES = ["TEAM", "USER", "KEY", "END_USER", "TAG", "GLOBAL"];
const PERIODS = ["MONTHLY", "DAILY", "WEEKLY", "QUARTERLY", "YEARLY"];
const WEEKDAYS = ["MONDAY", "TUESDAY", "WEDNESDAY", "THURSDAY", "FRIDAY", "SATURDAY", "SUNDAY"];

// green below the soft limit, yellow from it, red from the hard limit (the percentages are the budget's own)
export function barColor(b) {
  const used = Number(b.utilization);
  if (used >= Number(b.hardLimitPercent)) return "red";
  if (used >= Number(b.softLimitPercent)) return "yellow";
  return "green";
}

// The form speaks percent (80), the API fractions (0.8): the decimal point moves on the string, exactly.
export function percentToFraction(text) {
  const m = /^\s*(-?)(\d*)(?:\.(\d*))?\s*$/.exec(text);
  if (!m || (!m[2] && !m[3])) return text; // not a number: the server says so at the field
  const int = (m[2] || "0").padStart(3, "0");
  const whole = int.slice(0, -2).replace(/^0+(?=\d)/, "");
  return `${m[1]}${whole}.${int.slice(-2)}${m[3] || ""}`;
}

function fractionToPercent(v) {
  return String(Number((Number(v) * 100).toFixed(6)));
}

function entityText(b) {
  return b.entityType === "GLOBAL" ? "Global" : `${b.entityType.replace("_", " ").toLowerCase()} ${b.entityId ?? ""}`;
}

function card(b, ctx, actions) {
  const pct = Number(b.utilization) * 100;
  const color = barColor(b);
  const label = `${pct.toFixed(1)}% of the ${b.period.toLowerCase()} limit used`;
  return h("article", { class: "card budget", "data-budget-id": b.id, "aria-labelledby": `b-${b.id}` },
    h("h3", { id: `b-${b.id}` }, b.name),
    h("p", { class: "muted entity" }, entityText(b), " · ", b.period.toLowerCase(), " · ", b.timeZone),
    h("div", { class: `bar ${color}`, role: "progressbar", "aria-label": `${b.name} utilization`,
      "aria-valuemin": "0", "aria-valuemax": "100", "aria-valuenow": Math.min(pct, 100).toFixed(1),
      "aria-valuetext": label, "data-color": color },
      h("span", { style: `width:${Math.min(pct, 100)}%` })),
    h("p", { class: "bar-label" }, label),
    h("dl", {},
      h("dt", {}, "Current spend"), h("dd", { class: "spend", "data-value": b.currentSpend }, money(b.currentSpend)),
      h("dt", {}, "Limit"), h("dd", { class: "limit", "data-value": b.limit }, money(b.limit)),
      h("dt", {}, "Remaining"), h("dd", { class: "remaining", "data-value": b.remaining }, money(b.remaining)),
      h("dt", {}, "Reserved in flight"), h("dd", { class: "reserved", "data-value": b.reserved }, money(b.reserved)),
      h("dt", {}, "Soft / hard"), h("dd", {}, `${fractionToPercent(b.softLimitPercent)}% / ${fractionToPercent(b.hardLimitPercent)}%`),
      h("dt", {}, "Resets"), h("dd", {}, fmtTime(b.resetsAt))),
    ctx.isAdmin ? h("div", { class: "actions" },
      h("button", { type: "button", class: "secondary", "aria-label": `Edit ${b.name}`, onclick: () => actions.edit(b) }, "Edit"),
      h("button", { type: "button", class: "danger", "aria-label": `Delete ${b.name}`, onclick: () => actions.remove(b) }, "Delete")) : null);
}

function budgetForm(existing, onDone, onCancel) {
  const editing = Boolean(existing);
  const v = existing || {};
  const inp = (name, attrs = {}) => h("input", { name, ...attrs });
  const period = select("period", PERIODS, v.period || "MONTHLY");
  const limit = inp("monthlyLimit", { inputmode: "decimal", "data-fields": "limit monthlyLimit", value: v.limit ?? "", required: true });
  const limitField = field("Monthly Limit", limit, "USD per window");
  const relabel = () => { limitField.querySelector("label").textContent = period.value === "MONTHLY" ? "Monthly Limit" : "Limit"; };
  period.addEventListener("change", relabel);
  const entityType = select("entityType", ENTITY_TYPES, v.entityType || "TEAM");
  const entityId = inp("entityId", { value: v.entityId ?? "" });
  if (editing) { entityType.disabled = true; entityId.disabled = true; }
  const form = h("form", { class: "panel card", novalidate: true, "aria-label": editing ? `Edit ${v.name}` : "Create Budget" },
    h("h2", { style: "grid-column: 1 / -1; margin-top: 0" }, editing ? `Edit ${v.name}` : "Create Budget"),
    field("Name", inp("name", { value: v.name ?? "", required: true })),
    field("Entity Type", entityType),
    field("Entity ID", entityId, "team, user, key, end user or tag; empty for Global"),
    limitField,
    field("Period", period),
    field("Time Zone", inp("timeZone", { value: v.timeZone ?? "", placeholder: "server default (e.g. UTC)" })),
    field("Week Starts On", select("weekStartsOn", WEEKDAYS, v.weekStartsOn || "MONDAY")),
    field("Month Start Day", inp("monthStartDay", { type: "number", min: 1, max: 28, value: v.monthStartDay ?? 1 })),
    field("Year Start Month", inp("yearStartMonth", { type: "number", min: 1, max: 12, value: v.yearStartMonth ?? 1 })),
    field("Soft Limit %", inp("softLimitPercent", { inputmode: "decimal", value: v.softLimitPercent ? fractionToPercent(v.softLimitPercent) : 80 })),
    field("Hard Limit %", inp("hardLimitPercent", { inputmode: "decimal", value: v.hardLimitPercent ? fractionToPercent(v.hardLimitPercent) : 100 })),
    field("Alert Email", inp("alertEmail", { type: "email", value: v.alertEmail ?? "" })),
    h("p", { class: "form-error", role: "alert", hidden: true, style: "grid-column: 1 / -1" }),
    h("div", { class: "actions" },
      h("button", { type: "submit" }, editing ? "Save" : "Create"),
      h("button", { type: "button", class: "secondary", onclick: onCancel }, "Cancel")));
  relabel();
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const f = Object.fromEntries(new FormData(form).entries());
    const input = {
      name: f.name,
      period: f.period,
      weekStartsOn: f.weekStartsOn,
      monthStartDay: f.monthStartDay === "" ? null : Number(f.monthStartDay),
      yearStartMonth: f.yearStartMonth === "" ? null : Number(f.yearStartMonth),
      softLimitPercent: f.softLimitPercent ? percentToFraction(f.softLimitPercent) : null,
      hardLimitPercent: f.hardLimitPercent ? percentToFraction(f.hardLimitPercent) : null,
      alertEmail: f.alertEmail || null,
    };
    if (f.timeZone) input.timeZone = f.timeZone;
    if (f.period === "MONTHLY") input.monthlyLimit = f.monthlyLimit || null; else input.limit = f.monthlyLimit || null;
    if (!editing) { input.entityType = f.entityType; input.entityId = f.entityId || null; }
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    try {
      const data = editing
        ? await gql(`mutation($id: ID!, $input: BudgetUpdateInput!) { updateBudget(id: $id, input: $input) { ${FIELDS} } }`, { id: v.id, input })
        : await gql(`mutation($input: BudgetInput!) { createBudget(input: $input) { ${FIELDS} } }`, { input });
      showErrors(form, null);
      onDone(editing ? data.updateBudget : data.createBudget);
    } catch (err) {
      showErrors(form, err);
    } finally {
      button.disabled = false;
    }
  });
  return form;
}

export async function render(ctx) {
  const { budgets } = await gql(`{ budgets { ${FIELDS} } }`);
  const byId = new Map(budgets.map((b) => [b.id, b]));
  const grid = h("div", { class: "grid budgets", "aria-live": "polite" });
  const status = h("div", { role: "status" });
  const formSlot = h("div");
  const actions = {
    edit: (b) => openForm(b),
    remove: async (b) => {
      if (!(await confirmDialog(`Delete the budget "${b.name}"? Its history stays in the spend logs.`, "Delete"))) return;
      try {
        await gql(`mutation($id: ID!) { deleteBudget(id: $id) { id } }`, { id: b.id });
        byId.delete(b.id);
        draw();
        status.replaceChildren(notice(`Deleted ${b.name}.`));
      } catch (err) {
        status.replaceChildren(notice(err.message, "error"));
      }
    },
  };
  const draw = () => {
    // the most used first: what is at risk is at the top
    const list = [...byId.values()].sort((a, b) => Number(b.utilization) - Number(a.utilization) || a.name.localeCompare(b.name));
    grid.replaceChildren(...list.map((b) => card(b, ctx, actions)));
    if (!list.length) grid.append(h("p", { class: "muted" }, "No budgets yet."));
  };
  const openForm = (existing) => {
    const form = budgetForm(existing, (b) => {
      byId.set(b.id, b);
      formSlot.replaceChildren();
      draw();
      status.replaceChildren(notice(`${existing ? "Saved" : "Created"} ${b.name}.`));
    }, () => formSlot.replaceChildren());
    formSlot.replaceChildren(form);
    form.querySelector("input[name=name]").focus();
  };
  draw();
  const stop = subscribe(`subscription { budgetUpdated { ${FIELDS} } }`, {}, (data) => {
    const b = data.budgetUpdated;
    byId.set(b.id, b);
    const old = grid.querySelector(`[data-budget-id="${CSS.escape(b.id)}"]`);
    if (old) old.replaceWith(card(b, ctx, actions)); else draw();
  });
  ctx.onLeave(stop);
  const live = h("p", { class: "muted live", role: "status" }, "Live updates: connecting…");
  let first = true;
  ctx.onLeave(onConnected(async () => {
    live.textContent = "Live updates: on";
    // what changed between the first query and the subscription's start (or while the socket was down)
    if (first) { first = false; return; }
    try {
      const fresh = await gql(`{ budgets { ${FIELDS} } }`);
      byId.clear();
      for (const b of fresh.budgets) byId.set(b.id, b);
      draw();
    } catch { /* the next event or reload shows it */ }
  }));
  return h("section", { "aria-labelledby": "page-title" },
    h("div", { class: "toolbar" },
      h("h1", { id: "page-title", style: "margin:0; flex:1" }, "Budgets"),
      ctx.isAdmin ? h("button", { type: "button", onclick: () => openForm(null) }, "Create Budget") : null),
    live, formSlot, status, grid);
}
