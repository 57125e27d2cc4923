// The shell: login, navigation, the router (History API; the server answers every page path with this app),
// and the return to the same page after a token expires.
import { gql, login, logout, onExpired, token, tokenDeadline, ApiError } from "./api.js";
import { h, field, showErrors } from "./dom.js";

export const PAGES = [
  { path: "/overview", label: "Overview", load: () => import("./pages/overview.js") },
  { path: "/budgets", label: "Budgets", load: () => import("./pages/budgets.js") },
  { path: "/requests", label: "Requests", load: () => import("./pages/requests.js") },
  { path: "/reports", label: "Reports", load: () => import("./pages/reports.js") },
  { path: "/chargeback", label: "Chargeback", load: () => import("./pages/chargeback.js") },
  { path: "/sla", label: "SLA Monitor", load: () => import("./pages/sla.js") },
  { path: "/alerts", label: "Alerts", load: () => import("./pages/alerts.js") },
  { path: "/settings", label: "Settings", load: () => import("./pages/settings.js") },
];
const RETURN_KEY = "spendplane.returnTo";
const root = document.getElementById("app");
let me = null;
let leaving = [];
let expiryTimer = null;

function currentPath() {
  return location.pathname + location.search;
}

function pageFor(pathname) {
  if (pathname === "/" || pathname === "") return PAGES[0];
  return PAGES.find((p) => pathname === p.path) || null;
}

export function navigate(path, { replace = false } = {}) {
  if (replace) history.replaceState({}, "", path);
  else history.pushState({}, "", path);
  route();
}

function sessionExpired() {
  const here = location.pathname === "/login" ? sessionStorage.getItem(RETURN_KEY) || "/overview" : currentPath();
  sessionStorage.setItem(RETURN_KEY, here);
  me = null;
  if (expiryTimer) clearTimeout(expiryTimer);
  showLogin("Your session has expired. Log in again to return to the page you were on.");
}
onExpired(sessionExpired);

function showLogin(message) {
  for (const fn of leaving) fn();
  leaving = [];
  if (location.pathname !== "/login") history.replaceState({}, "", "/login");
  document.title = "Log in · spendplane";
  const input = h("input", { type: "password", name: "apiKey", autocomplete: "current-password", required: true });
  const form = h("form", { class: "login card", novalidate: true },
    h("h1", {}, "spendplane"),
    h("p", { class: "muted" }, "Log in with the admin key, the LiteLLM master key, or a LiteLLM virtual key (read-only)."),
    message ? h("p", { class: "notice info", role: "status" }, message) : null,
    field("API key", input),
    h("p", { class: "form-error", role: "alert", hidden: true }),
    h("button", { type: "submit" }, "Log in"));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    showErrors(form, null);
    if (!input.value.trim()) { showErrors(form, { field: "apiKey", message: "Enter an API key." }); return; }
    try {
      await login(input.value.trim());
      const back = sessionStorage.getItem(RETURN_KEY) || "/overview";
      sessionStorage.removeItem(RETURN_KEY);
      navigate(back === "/login" ? "/overview" : back, { replace: true });
    } catch (err) {
      showErrors(form, { field: "apiKey", message: err.message });
    }
  });
  root.replaceChildren(h("main", { id: "main", class: "login-page" }, form));
  input.focus();
}

function shell(active) {
  const nav = h("nav", { "aria-label": "Main" },
    h("ul", {}, PAGES.map((p) => h("li", {},
      h("a", { href: p.path, "aria-current": p === active ? "page" : null, onclick: (ev) => {
        if (ev.metaKey || ev.ctrlKey || ev.shiftKey) return;
        ev.preventDefault();
        document.body.classList.remove("nav-open");
        navigate(p.path);
      } }, p.label)))));
  const menu = h("button", { type: "button", class: "menu", "aria-expanded": "false", "aria-controls": "side",
    onclick: () => {
      const open = document.body.classList.toggle("nav-open");
      menu.setAttribute("aria-expanded", String(open));
    } }, "Menu");
  const who = h("span", { class: "who" }, me.role === "ADMIN" ? "Admin" : `Viewer · ${me.teamId ? "team " + me.teamId : ""}${me.userId ? " user " + me.userId : ""}`);
  const out = h("button", { type: "button", class: "secondary", onclick: () => {
    logout(); sessionStorage.removeItem(RETURN_KEY); showLogin("You are logged out.");
  } }, "Log out");
  const main = h("main", { id: "main", tabindex: "-1" });
  root.replaceChildren(
    h("header", { class: "top" }, menu, h("a", { class: "brand", href: "/overview" }, "spendplane"), h("div", { class: "spacer" }), who, out),
    h("div", { class: "layout" }, h("aside", { id: "side" }, nav), main));
  return main;
}

async function route() {
  for (const fn of leaving) fn();
  leaving = [];
  if (location.pathname === "/login" || !token()) {
    if (location.pathname !== "/login") sessionStorage.setItem(RETURN_KEY, currentPath());
    showLogin();
    return;
  }
  if (!me) {
    try {
      ({ me } = await gql("{ me { role subject userId teamId expiresAt } }"));
    } catch (err) {
      if (err instanceof ApiError && err.code === "UNAUTHENTICATED") return; // the expiry handler showed the login
      root.replaceChildren(h("main", { id: "main" }, h("p", { class: "notice error", role: "alert" }, err.message)));
      return;
    }
    const deadline = tokenDeadline();
    if (deadline) {
      const wait = deadline - Date.now();
      if (expiryTimer) clearTimeout(expiryTimer);
      expiryTimer = setTimeout(() => { logout(); sessionExpired(); }, Math.max(0, Math.min(wait, 2 ** 31 - 1)));
    }
  }
  const page = pageFor(location.pathname);
  const main = shell(page);
  if (!page) {
    main.append(h("h1", {}, "Not found"), h("p", {}, "There is no such page."));
    return;
  }
  document.title = `${page.label} · spendplane`;
  const ctx = {
    me,
    isAdmin: me.role === "ADMIN",
    params: new URLSearchParams(location.search),
    onLeave: (fn) => leaving.push(fn),
    navigate,
  };
  main.append(h("p", { class: "loading", role: "status" }, "Loading…"));
  try {
    const mod = await page.load();
    const node = await mod.render(ctx);
    if (main.isConnected) main.replaceChildren(node);
  } catch (err) {
    if (err instanceof ApiError && err.code === "UNAUTHENTICATED") return;
    main.replaceChildren(h("h1", {}, page.label), h("p", { class: "notice error", role: "alert" }, err.message));
  }
}

window.addEventListener("popstate", route);
route();
