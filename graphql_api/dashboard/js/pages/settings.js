// Settings: Features (admin switches), Pricing (every model's price and source, overrides), the instance.
import { gql, schemaHas } from "../api.js";
import { h, field, money, table, notice, showErrors, unavailable, fmtTime } from "../dom.js";

export async function render(ctx) {
  const d = await gql(`{ settings { costTrackingEnabled budgetEnforcementEnabled softLimitThreshold hardLimitThreshold updatedAt updatedBy }
    pricing { model provider inputPerMillion outputPerMillion source } rollupStatus { builtThrough } }`);
  const status = h("div", { role: "status" });
  const sw = (label, key) => {
    const box = h("input", { type: "checkbox", role: "switch", name: key, checked: d.settings[key], disabled: !ctx.isAdmin });
    box.addEventListener("change", async () => {
      box.disabled = true;
      try {
        const r = await gql(`mutation($input: SettingsInput!) { updateSettings(input: $input) { ${key} } }`, { input: { [key]: box.checked } });
        box.checked = r.updateSettings[key];
        status.replaceChildren(notice(`${label} is ${box.checked ? "on" : "off"}.`));
      } catch (err) {
        box.checked = !box.checked;
        status.replaceChildren(notice(err.message, "error"));
      } finally { box.disabled = !ctx.isAdmin; }
    });
    const id = `sw-${key}`;
    box.id = id;
    return h("div", { class: "switch" }, box, h("label", { for: id }, label));
  };
  // hundreds of models: overrides first, then a filter; at most 100 rows shown at a time
  const sorted = [...d.pricing].sort((a, b) => (b.source === "override") - (a.source === "override") || a.model.localeCompare(b.model));
  const pricingTable = h("div");
  const pricingCount = h("p", { class: "muted", role: "status" });
  const filterInput = h("input", { name: "modelFilter", type: "search", placeholder: "e.g. gpt-4o" });
  const pricingFilter = h("div", { class: "toolbar" }, field("Filter models", filterInput));
  const columns = [
    { label: "Model", get: (r) => r.model }, { label: "Provider", get: (r) => r.provider ?? "—" },
    { label: "Input / M", get: (r) => money(r.inputPerMillion, 4), sort: (r) => Number(r.inputPerMillion) },
    { label: "Output / M", get: (r) => money(r.outputPerMillion, 4), sort: (r) => Number(r.outputPerMillion) },
    { label: "Source", get: (r) => r.source },
    ...(ctx.isAdmin ? [{ label: "Override", nosort: true, get: (r) => r.source === "override"
      ? h("button", { type: "button", class: "secondary", "aria-label": `Remove the override of ${r.model}`, onclick: () => removeOverride(r.model) }, "Remove") : "" }] : []),
  ];
  const drawPricing = () => {
    const q = filterInput.value.trim().toLowerCase();
    const rows = sorted.filter((r) => !q || r.model.toLowerCase().includes(q) || (r.provider || "").toLowerCase().includes(q));
    pricingTable.replaceChildren(table(columns, rows.slice(0, 50), { sortable: true }));
    pricingCount.textContent = `${rows.length} of ${sorted.length} models${rows.length > 50 ? " (the first 50 shown; filter to find one)" : ""}`;
  };
  filterInput.addEventListener("input", drawPricing);
  drawPricing();
  const priceForm = h("form", { class: "panel card", "aria-label": "Set a price override" },
    field("Model", h("input", { name: "model", required: true })),
    field("Input per million", h("input", { name: "inputPerMillion", inputmode: "decimal", required: true })),
    field("Output per million", h("input", { name: "outputPerMillion", inputmode: "decimal", required: true })),
    field("Provider", h("input", { name: "provider" })),
    h("p", { class: "form-error", role: "alert", hidden: true }),
    h("div", { class: "actions" }, h("button", { type: "submit" }, "Set Price")));
  priceForm.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const f = Object.fromEntries(new FormData(priceForm).entries());
    try {
      await gql(`mutation($input: ModelPriceInput!) { setModelPrice(input: $input) { model } }`,
        { input: { model: f.model, inputPerMillion: f.inputPerMillion, outputPerMillion: f.outputPerMillion, provider: f.provider || null } });
      ctx.navigate("/settings", { replace: true });
    } catch (err) { showErrors(priceForm, err); }
  });
  const removeOverride = async (model) => {
    try {
      await gql(`mutation($model: String!) { deleteModelPrice(model: $model) }`, { model });
      ctx.navigate("/settings", { replace: true });
    } catch (err) { status.replaceChildren(notice(err.message, "error")); }
  };
  let instance = unavailable("Instance information");
  if (ctx.isAdmin && (await schemaHas("Query", "instance"))) {
    const { instance: i } = await gql(`{ instance { version databaseDialect migrationRevision migrationHead migrationsCurrent rollupWatermark startedAt } }`);
    instance = h("dl", { class: "card" },
      h("dt", {}, "Version"), h("dd", {}, i.version), h("dt", {}, "Database"), h("dd", {}, i.databaseDialect),
      h("dt", {}, "Migration"), h("dd", {}, `${i.migrationRevision} (head ${i.migrationHead}${i.migrationsCurrent ? ", current" : ", NOT current"})`),
      h("dt", {}, "Rollup watermark"), h("dd", {}, String(i.rollupWatermark ?? "—")), h("dt", {}, "Started"), h("dd", {}, fmtTime(i.startedAt)));
  } else if (!ctx.isAdmin) {
    instance = h("p", { class: "muted" }, `Rollup built through ${d.rollupStatus.builtThrough ?? "—"}.`);
  }
  return h("section", {},
    h("h1", {}, "Settings"),
    h("h2", {}, "Features"),
    h("div", { class: "card" }, sw("Cost Tracking", "costTrackingEnabled"), sw("Budget Enforcement", "budgetEnforcementEnabled"),
      h("p", { class: "muted" }, `Soft limit ${Number(d.settings.softLimitThreshold) * 100}% · hard limit ${Number(d.settings.hardLimitThreshold) * 100}% (from the environment)`),
      ctx.isAdmin ? null : h("p", { class: "muted" }, "Only an admin can change these.")),
    status,
    h("h2", {}, "Pricing"),
    ctx.isAdmin ? priceForm : null,
    pricingFilter, pricingCount, pricingTable,
    h("h2", {}, "Instance"), instance);
}
