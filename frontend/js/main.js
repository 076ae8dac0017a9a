// Start-up: pick the credential (login token, or the share token of a /share/ page), draw the
// top bar and route the hash to a view. A view is render(root, ctx) → cleanup function.

import * as api from "./api.js";
import { h, mount, notify, errorText } from "./dom.js";
import { match } from "./router.js";
import { usePalette } from "./charts.js";
import { methodPalette } from "./specform.js";
import * as login from "./views/login.js";
import * as sweeps from "./views/sweeps.js";
import * as runs from "./views/runs.js";
import * as form from "./views/form.js";
import * as sweep from "./views/sweep.js";
import * as run from "./views/run.js";
import * as compare from "./views/compare.js";
import * as diff from "./views/diff.js";
import * as queue from "./views/queue.js";
import * as dashboards from "./views/dashboards.js";
import * as share from "./views/share.js";

const TOKEN_KEY = "tscnc.token";

const ROUTES = {
  "/": sweeps,
  "/sweeps": sweeps,
  "/runs": runs,
  "/new": form,
  "/sweep/:id": sweep,
  "/run/:id": run,
  "/compare": compare,
  "/diff": diff,
  "/queue": queue,
  "/dashboards": dashboards,
};
// A share page shows its dashboard and lets the reader drill into the runs; nothing else.
const SHARE_ROUTES = { "/": share, "/run/:id": run };

const NAV = [
  ["#/sweeps", "Sweeps"], ["#/runs", "Runs"], ["#/new", "New experiment", "write"], ["#/compare", "Compare"],
  ["#/queue", "Queue"], ["#/dashboards", "Dashboards"],
];

const root = document.getElementById("view");
const topbar = document.getElementById("topbar");
let cleanup = null;

/** Shared state handed to every view. */
const ctx = {
  readOnly: false, // no write controls (share pages, viewer tokens)
  share: null, // {token, dashboard} on a share page
  me: null,
  openapi: null, // the API's OpenAPI document: the vocabularies (statuses, methods, filters, sort fields)
  logout,
};

function takeTokenFromUrl() {
  const url = new URL(window.location.href);
  const t = url.searchParams.get("token");
  if (!t) return;
  localStorage.setItem(TOKEN_KEY, t);
  url.searchParams.delete("token");
  history.replaceState(null, "", url.pathname + url.search + url.hash);
}

export function logout(message) {
  localStorage.removeItem(TOKEN_KEY);
  api.configure({ token: null });
  ctx.me = null;
  drawTopbar();
  showLogin(message);
}

function showLogin(message) {
  if (cleanup) cleanup();
  cleanup = login.render(root, { message, onToken: start });
}

function drawTopbar() {
  const here = window.location.hash || "#/sweeps";
  const brand = h("a", { class: "brand", href: ctx.share ? "#/" : "#/sweeps" }, "TSCNC");
  if (ctx.share) {
    mount(topbar, brand, h("span", { class: "share-title" }, "Shared dashboard: ", h("b", {}, ctx.share.dashboard?.name || "…")),
      h("span", { class: "spacer" }), h("span", { class: "readonly-tag" }, "read-only"));
    return;
  }
  if (!ctx.me) {
    mount(topbar, brand);
    return;
  }
  const links = NAV.filter(([, , w]) => !(w && ctx.readOnly)).map(([href, label]) =>
    h("a", { href, class: here.startsWith(href) ? "active" : null }, label));
  mount(topbar, brand, h("nav", {}, links), h("span", { class: "spacer" }),
    h("span", { class: "who", title: `token ${ctx.me.id}` }, `${ctx.me.name} (${ctx.me.role})`),
    h("button", { class: "btn small", id: "logout", onclick: () => logout("Logged out.") }, "Log out"));
}

/** Read the API's OpenAPI document once: the views' vocabularies and the methods' palette. */
async function loadSchema() {
  ctx.openapi = await api.openapi().catch(() => null);
  usePalette(methodPalette(ctx.openapi));
}

function route() {
  const routes = ctx.share ? SHARE_ROUTES : ROUTES;
  const m = match(window.location.hash, Object.keys(routes));
  if (cleanup) cleanup();
  cleanup = null;
  drawTopbar();
  window.scrollTo(0, 0);
  if (!m) {
    mount(root, h("div", { class: "card" }, h("h2", {}, "Not found"), h("p", {}, "No such page. "), h("a", { href: "#/" }, "Go home")));
    return;
  }
  try {
    cleanup = routes[m.pattern].render(root, { ...ctx, params: m.params, query: m.query, path: m.pattern });
  } catch (e) {
    mount(root, h("div", { class: "card error" }, errorText(e)));
  }
}

async function start(token) {
  api.configure({ token, unauthorized: () => logout("Your token was not accepted (expired or revoked); log in again.") });
  try {
    ctx.me = await api.me();
  } catch (e) {
    if (e.status === 401) return; // logout() already showed the login form
    showLogin(`Cannot check the token: ${errorText(e)}`);
    return;
  }
  if (token !== localStorage.getItem(TOKEN_KEY)) localStorage.setItem(TOKEN_KEY, token);
  ctx.readOnly = ctx.me.role === "viewer";
  await loadSchema();
  window.onhashchange = route;
  route();
}

async function startShare(shareToken) {
  ctx.readOnly = true;
  ctx.share = { token: shareToken, dashboard: null, data: null };
  api.configure({ token: shareToken, unauthorized: () => mount(root, h("div", { class: "card error" }, "This share link is no longer valid.")) });
  try {
    ctx.share.data = await api.shared();
    ctx.share.dashboard = ctx.share.data.dashboard;
  } catch (e) {
    drawTopbar();
    mount(root, h("div", { class: "card error", id: "share-error" },
      e.status === 404 || e.status === 401 ? "This share link was revoked or never existed." : errorText(e)));
    return;
  }
  document.title = `${ctx.share.dashboard.name} · TSCNC`;
  await loadSchema();
  window.onhashchange = route;
  route();
}

function boot() {
  document.body.classList.toggle("share-page", Boolean(api.shareTokenFromLocation()));
  const shareToken = api.shareTokenFromLocation();
  if (shareToken) return startShare(shareToken);
  takeTokenFromUrl();
  const token = localStorage.getItem(TOKEN_KEY);
  if (!token) return showLogin();
  return start(token);
}

// ---- keyboard shortcuts: "g" then a letter opens a main view; "/" focuses the search; "?" help
const SHORTCUTS = [["s", "#/sweeps", "Sweeps"], ["r", "#/runs", "Runs"], ["n", "#/new", "New experiment"],
  ["c", "#/compare", "Compare"], ["q", "#/queue", "Queue"], ["d", "#/dashboards", "Dashboards"]];
let pendingG = 0;

function toggleHelp() {
  const open = document.getElementById("kbd-help");
  if (open) return open.remove();
  const help = h("div", { class: "kbd-help", id: "kbd-help", onclick: (e) => { if (e.target === help) help.remove(); } },
    h("div", { class: "card", role: "dialog", "aria-label": "Keyboard shortcuts" }, h("h3", {}, "Keyboard shortcuts"),
      h("table", { class: "data compact" }, h("tbody", {},
        SHORTCUTS.map(([k, , label]) => h("tr", {}, h("td", {}, h("kbd", {}, "g"), " ", h("kbd", {}, k)), h("td", {}, label))),
        h("tr", {}, h("td", {}, h("kbd", {}, "/")), h("td", {}, "search (the list's filter)")),
        h("tr", {}, h("td", {}, h("kbd", {}, "?")), h("td", {}, "this help; Esc closes it"))))));
  document.body.append(help);
  return null;
}

window.addEventListener("keydown", (e) => {
  if (e.ctrlKey || e.metaKey || e.altKey) return;
  const t = e.target;
  if (t && (t.isContentEditable || ["INPUT", "TEXTAREA", "SELECT"].includes(t.tagName))) return;
  if (e.key === "Escape") { document.getElementById("kbd-help")?.remove(); return; }
  if (e.key === "?") { toggleHelp(); e.preventDefault(); return; }
  if (ctx.share || !ctx.me) return; // a share page or the login form: no views to go to
  if (e.key === "/") {
    const search = document.querySelector('[data-filter="q"]');
    if (search) { search.focus(); e.preventDefault(); }
    return;
  }
  if (e.key === "g") { pendingG = Date.now(); return; }
  const target = Date.now() - pendingG < 1500 && SHORTCUTS.find(([k]) => k === e.key);
  pendingG = 0;
  if (target && !(target[1] === "#/new" && ctx.readOnly)) {
    window.location.hash = target[1];
    e.preventDefault();
  }
});

window.addEventListener("unhandledrejection", (e) => notify(errorText(e.reason), "error"));
boot();
