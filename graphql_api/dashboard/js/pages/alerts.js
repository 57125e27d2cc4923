// Alerts: a live feed (alertRaised) on top of the history, with filters; delivery status per channel where the
// server has it (Alert.deliveries).
import { gql, subscribe, schemaHas, onConnected } from "../api.js";
import { h, field, select, badge, fmtTime, money, notice } from "../dom.js";

const TYPES = ["", "APPROACHING_LIMIT", "REQUEST_EXCEEDS_BUDGET", "BUDGET_EXCEEDED", "PROJECTED_LIMIT_EXCEEDED", "SLA_VIOLATION",
  "FAILOVER_ACTIVATED", "FAILOVER_DEACTIVATED", "SPEND_ANOMALY"];

export async function render(ctx) {
  const p = ctx.params;
  const filters = { teamId: p.get("teamId") || null, userId: p.get("userId") || null, type: p.get("type") || null };
  const deliveries = await schemaHas("Alert", "deliveries");
  const fields = `id type severity message teamId userId entityType entityId spend limit createdAt${deliveries ? " deliveries { channel status attempts lastError }" : ""}`;
  const { alerts } = await gql(`query($teamId: String, $userId: String, $type: AlertType) {
    alerts(teamId: $teamId, userId: $userId, type: $type, limit: 100) { ${fields} } }`, filters);
  const list = h("ol", { class: "feed", reversed: true, "aria-label": "Alerts, newest first" });
  const item = (a, live = false) => h("li", { class: "card", "data-alert-id": a.id },
    h("div", {}, badge(a.severity.toLowerCase(), a.severity === "CRITICAL" ? "bad" : a.severity === "WARNING" ? "warn" : ""), " ",
      h("strong", {}, a.type.toLowerCase().replaceAll("_", " ")), " · ", fmtTime(a.createdAt), live ? [" ", badge("new", "ok")] : ""),
    h("p", { style: "margin:.3rem 0" }, a.message),
    h("p", { class: "muted", style: "margin:0" }, [a.teamId ? `team ${a.teamId}` : "", a.userId ? `user ${a.userId}` : "",
      a.spend !== null ? `spend ${money(a.spend)}` : "", a.limit !== null ? `limit ${money(a.limit)}` : ""].filter(Boolean).join(" · ")),
    deliveries && a.deliveries ? h("p", { class: "deliveries", style: "margin:.3rem 0 0" }, "Delivery: ",
      a.deliveries.length ? a.deliveries.map((d) => [badge(`${d.channel.toLowerCase()}: ${d.status.toLowerCase()} (${d.attempts})`,
        d.status === "DELIVERED" || d.status === "SENT" ? "ok" : d.status === "FAILED" || d.status === "DEAD" ? "bad" : "warn"), " "]) : "none") : "");
  list.append(...alerts.map((a) => item(a)));
  const empty = h("p", { class: "muted" }, alerts.length ? "" : "No alerts.");
  const live = h("p", { role: "status", class: "muted" }, "Live: connecting…");
  const stop = subscribe(`subscription($teamId: String, $userId: String) { alertRaised(teamId: $teamId, userId: $userId) { ${fields} } }`,
    { teamId: filters.teamId, userId: filters.userId }, (data) => {
      const a = data.alertRaised;
      if (filters.type && a.type !== filters.type) return;
      empty.textContent = "";
      list.prepend(item(a, true));
      live.textContent = `Live: new ${a.type.toLowerCase().replaceAll("_", " ")} alert`;
    }, (err) => { live.replaceChildren(notice(`Live updates stopped: ${err.message || err.reason || "connection lost"}`, "error")); });
  ctx.onLeave(stop);
  ctx.onLeave(onConnected(() => { live.textContent = "Live: listening for new alerts"; }));
  const form = h("form", { class: "toolbar", "aria-label": "Alert filters" },
    field("Team", h("input", { name: "teamId", value: filters.teamId ?? "" })),
    field("User", h("input", { name: "userId", value: filters.userId ?? "" })),
    field("Type", select("type", TYPES.map((t) => [t, t ? t.toLowerCase().replaceAll("_", " ") : "any"]), filters.type ?? "")),
    h("button", { type: "submit" }, "Apply"));
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const q = new URLSearchParams();
    for (const [k, v] of new FormData(form).entries()) if (v) q.set(k, v);
    ctx.navigate(`/alerts?${q}`);
  });
  return h("section", {}, h("h1", {}, "Alerts"), form, live,
    deliveries ? "" : h("p", { class: "notice unavailable" }, "Delivery status per channel is not available on this server (Alert.deliveries is missing from the schema)."),
    empty, list);
}
