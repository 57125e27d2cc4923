// Requests: the spend logs behind every figure, newest first, cursor-paginated and filtered; a row opens its detail.
import { gql, schemaHas } from "../api.js";
import { h, field, money, table, unavailable, fmtTime, num, ms, notice } from "../dom.js";

const NODE = `requestId callType startTime endTime model modelGroup provider teamId userId keyAlias endUser status
  promptTokens completionTokens totalTokens spend latencyMs timeToFirstTokenMs cacheHit tags`;
const FILTERS = ["since", "until", "teamId", "userId", "keyAlias", "model", "status"];

export async function render(ctx) {
  if (!(await schemaHas("Query", "spendLogs"))) {
    return h("section", {}, h("h1", {}, "Requests"), unavailable("The request log (spendLogs)"));
  }
  const p = ctx.params;
  const vars = { first: 50, after: p.get("after") || null };
  for (const k of FILTERS) vars[k] = p.get(k) || null;
  for (const k of ["since", "until"]) if (vars[k] && vars[k].length === 16) vars[k] = new Date(vars[k]).toISOString();
  // LiteLLM indexes its spend logs by time only: a filter with no start searches the last 7 days, so a team or
  // model with no requests answers in a bounded time instead of scanning every log (bench/requests.py).
  const bounded = !vars.since && ["teamId", "userId", "keyAlias", "model", "status"].some((k) => vars[k]);
  if (bounded) vars.since = new Date(Date.now() - 7 * 864e5).toISOString();
  const { spendLogs } = await gql(`query($first: Int, $after: String, $since: DateTime, $until: DateTime, $teamId: String, $userId: String,
    $keyAlias: String, $model: String, $status: String) {
    spendLogs(first: $first, after: $after, since: $since, until: $until, teamId: $teamId, userId: $userId, keyAlias: $keyAlias,
      model: $model, status: $status) { edges { cursor node { ${NODE} } } pageInfo { hasNextPage endCursor } } }`, vars);
  const detail = h("div", { class: "row-detail", "aria-live": "polite" });
  const open = (n) => {
    const rows = [["Request", n.requestId], ["Call type", n.callType], ["Start", fmtTime(n.startTime)], ["End", fmtTime(n.endTime)],
      ["Model", `${n.model}${n.modelGroup ? ` (group ${n.modelGroup})` : ""}`], ["Provider", n.provider ?? "—"], ["Team", n.teamId ?? "—"],
      ["User", n.userId ?? "—"], ["Key alias", n.keyAlias ?? "—"], ["End user", n.endUser ?? "—"], ["Status", n.status ?? "—"],
      ["Prompt tokens", num(n.promptTokens)], ["Completion tokens", num(n.completionTokens)], ["Total tokens", num(n.totalTokens)],
      ["Cost", money(n.spend)], ["Latency", ms(n.latencyMs)], ["Time to first token", ms(n.timeToFirstTokenMs)],
      ["Cache hit", n.cacheHit === null ? "—" : n.cacheHit ? "yes" : "no"], ["Tags", (n.tags || []).join(", ") || "—"]];
    detail.replaceChildren(h("section", { class: "card", "aria-label": `Request ${n.requestId}` },
      h("h2", { style: "margin-top:0" }, "Request detail"), h("dl", {}, rows.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)])),
      h("button", { type: "button", class: "secondary", onclick: () => detail.replaceChildren() }, "Close")));
    detail.querySelector("h2").setAttribute("tabindex", "-1");
    detail.querySelector("h2").focus();
  };
  const form = h("form", { class: "toolbar", "aria-label": "Request filters" },
    FILTERS.map((k) => field({ since: "Since", until: "Until", teamId: "Team", userId: "User", keyAlias: "Key alias", model: "Model", status: "Status" }[k],
      h("input", { name: k, type: k === "since" || k === "until" ? "datetime-local" : "text", value: p.get(k) ?? "" }))),
    h("button", { type: "submit" }, "Apply"));
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const q = new URLSearchParams();
    for (const [k, v] of new FormData(form).entries()) if (v) q.set(k, v);
    ctx.navigate(`/requests?${q}`);
  });
  const next = new URLSearchParams(p);
  next.set("after", spendLogs.pageInfo.endCursor || "");
  return h("section", {}, h("h1", {}, "Requests"), ctx.isAdmin ? "" : notice("You see your own key's, user's and team's requests only."), form,
    bounded ? notice("A filtered search with no Since covers the last 7 days; set Since to look further back.") : "", detail,
    table([
      { label: "Time", get: (r) => h("button", { type: "button", class: "secondary", onclick: () => open(r.node), "aria-label": `Open request ${r.node.requestId}` }, fmtTime(r.node.startTime)) },
      { label: "Model", get: (r) => r.node.model }, { label: "Team", get: (r) => r.node.teamId ?? "—" }, { label: "User", get: (r) => r.node.userId ?? "—" },
      { label: "Key", get: (r) => r.node.keyAlias ?? "—" }, { label: "Status", get: (r) => r.node.status ?? "—" },
      { label: "Tokens", get: (r) => num(r.node.totalTokens) }, { label: "Cost", get: (r) => money(r.node.spend) }, { label: "Latency", get: (r) => ms(r.node.latencyMs) },
    ], spendLogs.edges),
    h("div", { class: "toolbar", style: "margin-top:1rem" },
      p.get("after") ? h("a", { href: "/requests", onclick: (ev) => { ev.preventDefault(); const q = new URLSearchParams(p); q.delete("after"); ctx.navigate(`/requests?${q}`); } }, "Newest") : "",
      spendLogs.pageInfo.hasNextPage ? h("a", { href: `/requests?${next}`, onclick: (ev) => { ev.preventDefault(); ctx.navigate(`/requests?${next}`); } }, "Older") : ""));
}
