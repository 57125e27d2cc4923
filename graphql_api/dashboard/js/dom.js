// Tiny DOM helpers. Every value from the server goes in as text (textContent / attributes), never as HTML.
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else if (k === "dataset") Object.assign(el.dataset, v);
    else if (k === "value") el.value = v;
    else if (k === "checked") el.checked = Boolean(v);
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

let idCounter = 0;
export function uid(prefix = "f") {
  idCounter += 1;
  return `${prefix}-${idCounter}`;
}

// A labelled form field: <label for> + input/select. `name` is the GraphQL input field (for server errors).
export function field(label, input, hint) {
  const id = input.id || uid("in");
  input.id = id;
  const err = h("p", { class: "field-error", id: `${id}-err`, role: "alert", hidden: true });
  input.setAttribute("aria-describedby", `${id}-err`);
  return h("div", { class: "field" }, h("label", { for: id }, label), input, hint ? h("small", {}, hint) : null, err);
}

export function select(name, options, value) {
  return h(
    "select",
    { name },
    options.map((o) => {
      const [v, text] = Array.isArray(o) ? o : [o, o];
      return h("option", { value: v, selected: v === value ? true : null }, text);
    }),
  );
}

// Money is an exact decimal string from the API; shown to the cent, rounded half-up on the string itself.
export function money(value, places = 2) {
  if (value === null || value === undefined) return "—";
  return "$" + groupDigits(roundDecimal(String(value), places));
}

export function roundDecimal(s, places) {
  let neg = s.startsWith("-");
  if (neg) s = s.slice(1);
  let [int, frac = ""] = s.split(".");
  frac = frac.padEnd(places + 1, "0");
  let digits = (int + frac.slice(0, places)).split("").map(Number);
  if (Number(frac[places]) >= 5) {
    let i = digits.length - 1;
    while (i >= 0) {
      if (digits[i] === 9) { digits[i] = 0; i -= 1; } else { digits[i] += 1; break; }
    }
    if (i < 0) digits.unshift(1);
  }
  const all = digits.join("");
  const ip = all.slice(0, all.length - places).replace(/^0+(?=\d)/, "") || "0";
  const out = places ? `${ip}.${all.slice(all.length - places)}` : ip;
  if (neg && /[1-9]/.test(out)) return "-" + out;
  return out;
}

function groupDigits(s) {
  const [i, f] = s.split(".");
  const neg = i.startsWith("-");
  const g = (neg ? i.slice(1) : i).replace(/\B(?=(\d{3})+(?!\d))/g, ",");
  return (neg ? "-" : "") + g + (f !== undefined ? "." + f : "");
}

export function percent(fraction, places = 1) {
  if (fraction === null || fraction === undefined) return "—";
  return `${(Number(fraction) * 100).toFixed(places)}%`;
}

export function fmtTime(iso) {
  if (!iso) return "—";
  const d = new Date(iso);
  return d.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
}

export function num(v) {
  if (v === null || v === undefined) return "—";
  return Number(v).toLocaleString();
}

export function ms(v) {
  return v === null || v === undefined ? "—" : `${Math.round(Number(v))} ms`;
}

export function table(columns, rows, { caption, sortable = false } = {}) {
  // columns: [{label, get(row) -> text|Node, sort(row) -> comparable}]
  const tbody = h("tbody");
  let order = { col: -1, dir: 1 };
  const render = () => {
    const data = [...rows];
    if (order.col >= 0) {
      const key = columns[order.col].sort || columns[order.col].get;
      data.sort((a, b) => {
        const x = key(a), y = key(b);
        return (x > y ? 1 : x < y ? -1 : 0) * order.dir;
      });
    }
    tbody.replaceChildren(...data.map((r) => h("tr", {}, columns.map((c) => h("td", { "data-label": c.label }, c.get(r))))));
    if (!data.length) tbody.append(h("tr", {}, h("td", { colspan: columns.length, class: "empty" }, "Nothing yet.")));
  };
  const heads = columns.map((c, i) => {
    if (!sortable || c.nosort) return h("th", { scope: "col" }, c.label);
    const th = h("th", { scope: "col", "aria-sort": "none" });
    th.append(
      h("button", {
        type: "button", class: "sort",
        onclick: () => {
          order = { col: i, dir: order.col === i ? -order.dir : -1 };
          heads.forEach((x) => x.setAttribute("aria-sort", "none"));
          th.setAttribute("aria-sort", order.dir === 1 ? "ascending" : "descending");
          render();
        },
      }, c.label),
    );
    return th;
  });
  render();
  return h("div", { class: "table-wrap" }, h("table", {}, caption ? h("caption", {}, caption) : null, h("thead", {}, h("tr", {}, heads)), tbody));
}

export function badge(text, kind = "") {
  return h("span", { class: `badge ${kind}` }, text);
}

export function notice(text, kind = "info") {
  return h("p", { class: `notice ${kind}`, role: kind === "error" ? "alert" : "status" }, text);
}

export function unavailable(what) {
  return h("p", { class: "notice unavailable", role: "status" }, `${what} is not available on this server (its API field is missing from the schema).`);
}

// A confirmation dialog (native <dialog>, focus trapped by the browser). Resolves true/false.
export function confirmDialog(message, confirmLabel = "Confirm") {
  return new Promise((resolve) => {
    const dlg = h("dialog", { class: "confirm", "aria-labelledby": "confirm-msg" },
      h("p", { id: "confirm-msg" }, message),
      h("div", { class: "actions" },
        h("button", { type: "button", class: "secondary", onclick: () => close(false) }, "Cancel"),
        h("button", { type: "button", class: "danger", onclick: () => close(true) }, confirmLabel)));
    const close = (v) => { dlg.close(); dlg.remove(); resolve(v); };
    dlg.addEventListener("cancel", () => { dlg.remove(); resolve(false); });
    document.body.append(dlg);
    dlg.showModal();
  });
}

// Put a GraphQL error at its field: the input named by extensions.field gets aria-invalid and the message.
export function showErrors(form, error) {
  for (const el of form.querySelectorAll("[aria-invalid]")) el.removeAttribute("aria-invalid");
  for (const el of form.querySelectorAll(".field-error")) { el.hidden = true; el.textContent = ""; }
  const general = form.querySelector(".form-error");
  if (general) { general.hidden = true; general.textContent = ""; }
  if (!error) return;
  const fieldName = error.field ? String(error.field).split(".").pop() : null;
  const input = fieldName
    ? form.querySelector(`[name="${CSS.escape(fieldName)}"], [data-fields~="${CSS.escape(fieldName)}"]`)
    : null;
  if (input) {
    input.setAttribute("aria-invalid", "true");
    const err = form.querySelector(`#${CSS.escape(input.id)}-err`);
    if (err) { err.textContent = error.message; err.hidden = false; }
    input.focus();
  } else if (general) {
    general.textContent = error.message;
    general.hidden = false;
  }
}
