// The GraphQL client: queries and mutations over HTTP POST /graphql, subscriptions over graphql-transport-ws
// (the vendored graphql-ws client), the login at POST /auth/login and the authenticated REST downloads.
import { createClient } from "../vendor/graphql-ws/client.js";

const TOKEN_KEY = "spendplane.token";
const EXPIRES_KEY = "spendplane.expiresAt";
let expiredHandler = () => {};
let wsClient = null;
let capabilities = null;
const connectedListeners = new Set();
let connected = false;

// Called (now, if already connected, and on every reconnect) once the subscription socket is acknowledged.
export function onConnected(fn) {
  connectedListeners.add(fn);
  if (connected) fn();
  return () => connectedListeners.delete(fn);
}

export class ApiError extends Error {
  constructor(message, code, field) {
    super(message);
    this.code = code;
    this.field = field;
  }
}

export function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function onExpired(fn) {
  expiredHandler = fn;
}

// When the token runs out, in this browser's clock (ms since the epoch), or null when unknown.
export function tokenDeadline() {
  const v = Number(sessionStorage.getItem(EXPIRES_KEY));
  return Number.isFinite(v) && v > 0 ? v : null;
}

export function logout() {
  sessionStorage.removeItem(TOKEN_KEY);
  sessionStorage.removeItem(EXPIRES_KEY);
  capabilities = null;
  if (wsClient) { wsClient.dispose(); wsClient = null; connected = false; }
}

function expire() {
  logout();
  expiredHandler();
}

export async function login(apiKey) {
  const res = await fetch("/auth/login", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ api_key: apiKey }),
  });
  const body = await res.json().catch(() => ({}));
  if (!res.ok) {
    const e = body.error || {};
    throw new ApiError(e.message || `login failed (${res.status})`, e.code || String(res.status), "apiKey");
  }
  sessionStorage.setItem(TOKEN_KEY, body.access_token);
  // the deadline on this browser's clock, from the relative lifetime: a skewed clock does not end it early
  sessionStorage.setItem(EXPIRES_KEY, String(Date.now() + Number(body.expires_in) * 1000));
  return body;
}

export async function gql(query, variables = {}) {
  const t = token();
  if (!t) { expire(); throw new ApiError("not logged in", "UNAUTHENTICATED"); }
  let res;
  try {
    res = await fetch("/graphql", {
      method: "POST",
      headers: { "content-type": "application/json", authorization: `Bearer ${t}` },
      body: JSON.stringify({ query, variables }),
    });
  } catch (err) {
    throw new ApiError(`the server cannot be reached: ${err.message}`, "NETWORK");
  }
  const body = await res.json().catch(() => null);
  if (!body) throw new ApiError(`the server answered ${res.status}`, "HTTP_" + res.status);
  if (body.errors && body.errors.length) {
    const e = body.errors[0];
    const code = e.extensions && e.extensions.code;
    if (code === "UNAUTHENTICATED") { expire(); }
    throw new ApiError(e.message, code, e.extensions && e.extensions.field);
  }
  return body.data;
}

// Which optional schema fields this server has (pages guard on them until every server has them).
export async function schemaHas(typeName, fieldName) {
  if (!capabilities) {
    capabilities = gql(`{ q: __type(name: "Query") { fields { name } } a: __type(name: "Alert") { fields { name } } }`)
      .then((d) => ({
        Query: new Set(d.q.fields.map((f) => f.name)),
        Alert: new Set((d.a ? d.a.fields : []).map((f) => f.name)),
      }))
      .catch((err) => { capabilities = null; throw err; });
  }
  const caps = await capabilities;
  return Boolean(caps[typeName] && caps[typeName].has(fieldName));
}

function ws() {
  if (!wsClient) {
    const url = `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/graphql`;
    wsClient = createClient({
      url,
      lazy: true,
      retryAttempts: 20,
      shouldRetry: (ev) => !(ev && ev.code === 4401 || ev && ev.code === 4403),
      connectionParams: () => ({ authorization: `Bearer ${token()}` }),
      on: {
        connected: () => { connected = true; for (const fn of connectedListeners) fn(); },
        closed: (ev) => { connected = false; if (ev && ev.code === 4401) expire(); },
      },
    });
  }
  return wsClient;
}

// Subscribe; returns the unsubscribe function. onData gets each payload's data.
export function subscribe(query, variables, onData, onError = () => {}) {
  return ws().subscribe(
    { query, variables },
    {
      next: (msg) => { if (msg.data) onData(msg.data); else if (msg.errors) onError(msg.errors[0]); },
      error: (err) => onError(err),
      complete: () => {},
    },
  );
}

// A REST download with the bearer token, saved as a file by the browser.
export async function download(url, filename) {
  const res = await fetch(url, { headers: { authorization: `Bearer ${token()}` } });
  if (res.status === 401) { expire(); throw new ApiError("session expired", "UNAUTHENTICATED"); }
  if (!res.ok) {
    const body = await res.json().catch(() => ({}));
    throw new ApiError((body.error && body.error.message) || `download failed (${res.status})`, "HTTP_" + res.status);
  }
  const blob = await res.blob();
  const a = document.createElement("a");
  a.href = URL.createObjectURL(blob);
  a.download = filename;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 10_000);
}
