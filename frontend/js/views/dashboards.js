// Team dashboards: a saved view (sweeps + chart settings, or a filtered runs/sweeps list)
// behind a read-only share link. The list shows your dashboards (all of them for an admin),
// opens them and revokes links.

import * as api from "../api.js";
import { h, mount, ago, dateTime, notify, action, errorText } from "../dom.js";
import { PagedTable } from "../table.js";
import { href } from "../router.js";

/**
 * Show a small form in `area` that saves the current view as a dashboard and then shows its
 * read-only link (the share token is shown once by the API, so copy it now).
 */
export function shareDialog(area, { name, sweepIds, state, note = null }) {
  const nameInput = h("input", { id: "dashboard-name", value: name, size: 40, maxlength: 200 });
  const checkpoints = h("input", { type: "checkbox", id: "dashboard-checkpoints" });
  const result = h("div", { class: "share-result" });
  const save = action(async () => {
    const d = await api.createDashboard({ name: nameInput.value.trim() || name, sweep_ids: sweepIds, state,
      allow_checkpoints: checkpoints.checked });
    const link = api.sharePageUrl(d.share_url);
    const box = h("input", { id: "share-link", value: link, readonly: true, size: 70, onfocus: (e) => e.target.select() });
    mount(result,
      h("p", {}, "Anyone with this link can see these sweeps (read-only, no login). It is shown once: copy it now."),
      h("div", { class: "inline" }, box,
        h("button", { class: "btn small", onclick: () => navigator.clipboard?.writeText(link).then(() => notify("Link copied", "ok")) }, "Copy"),
        h("a", { class: "btn small", href: link, target: "_blank", rel: "noopener" }, "Open")));
    saveBtn.disabled = true;
  });
  const saveBtn = h("button", { class: "btn primary", "data-action": "save-dashboard", onclick: save }, "Create share link");
  mount(area, h("div", { class: "card share-dialog", id: "share-dialog" },
    h("h3", {}, "Share this view"),
    h("p", { class: "muted" }, note || `Saves ${sweepIds.length} sweep(s) with the chart settings and selection as a team dashboard.`),
    h("label", { for: "dashboard-name" }, "Dashboard name "), nameInput, " ", saveBtn,
    h("button", { class: "btn small", onclick: () => mount(area) }, "Close"),
    h("p", {}, h("label", { title: "off: the link shows results but cannot download model weights" }, checkpoints,
      " Let the link download checkpoints (model weights)")), result));
  nameInput.focus();
}

// The most sweeps a dashboard may hold (DashboardCreate.sweep_ids in the API).
export const MAX_DASHBOARD_SWEEPS = 50;
const SCAN_PAGE = 500; // rows per request while collecting the sweeps of a filtered list
const SCAN_PAGES = 20; // at most this many requests (10,000 rows)

/**
 * The sweeps of a filtered list, for a dashboard's share link: pages through `list(params)`
 * and keeps the distinct `sweepOf(row)` in order, at most MAX_DASHBOARD_SWEEPS of them.
 * Returns {sweepIds, more}: `more` when the filter matches rows of further sweeps (or more
 * rows than were scanned), which the link then does not show.
 */
export async function sweepsOfList(list, params, sweepOf) {
  const ids = [];
  let cursor = null;
  for (let i = 0; i < SCAN_PAGES; i += 1) {
    const page = await list({ ...params, limit: SCAN_PAGE, cursor });
    for (const row of page.items) {
      const sid = sweepOf(row);
      if (ids.includes(sid)) continue;
      if (ids.length === MAX_DASHBOARD_SWEEPS) return { sweepIds: ids, more: true };
      ids.push(sid);
    }
    if (!page.next) return { sweepIds: ids, more: false };
    cursor = page.next;
  }
  return { sweepIds: ids, more: true };
}

/**
 * "Save as dashboard" of a filtered list (`view`: "runs" or "sweeps"): the dashboard keeps the
 * URL's filters in its state ({view, filters}) and, for its share link, the sweeps the filter
 * matches now. Opening it shows the list with those filters; the share link shows the
 * matching rows of those sweeps.
 */
export async function saveListDialog(area, { view, filters, params, list, sweepOf }) {
  const saved = Object.fromEntries(Object.entries(filters).filter(([, v]) => v !== "" && v != null));
  if (params.owner) saved.owner = params.owner; // "mine" on a share link: the creator's
  const { sweepIds, more } = await sweepsOfList(list, params, sweepOf);
  if (!sweepIds.length) return notify(`No ${view} match these filters: nothing to save.`);
  const what = Object.entries(saved).map(([k, v]) => `${k}=${v}`).join(", ") || "no filters";
  shareDialog(area, {
    name: `${view === "runs" ? "Runs" : "Sweeps"}: ${what}`.slice(0, 200), sweepIds,
    state: { view, filters: saved },
    note: `Saves this ${view} list with its filters (${what}). Its share link shows the matching ${view} of ` +
      `${sweepIds.length} sweep(s)` + (more ? `: the filter matches more than a dashboard holds ` +
      `(at most ${MAX_DASHBOARD_SWEEPS} sweeps), so the link leaves the rest out.` : "."),
  });
  if (more) area.querySelector("#share-dialog").dataset.truncated = "";
}

/** Where a saved list dashboard opens: its list with the saved filters (else null). */
export function listHref(state) {
  return state && (state.view === "runs" || state.view === "sweeps") ? href(`/${state.view}`, state.filters || {}) : null;
}

export function render(root, ctx) {
  const columns = [
    { key: "name", label: "Dashboard", value: (d) => d.name, render: (d) => listHref(d.state)
      ? h("a", { class: "strong", href: listHref(d.state), "data-open": d.id, title: "open the list with its saved filters" }, d.name)
      : h("span", { class: "strong" }, d.name) },
    { key: "sweeps", label: "Sweeps", value: (d) => d.sweep_ids.join(" "),
      render: (d) => d.sweep_ids.map((s, i) => [i ? ", " : "", h("a", { href: href(`/sweep/${s}`) }, s.slice(0, 8))]) },
    { key: "view", label: "View", value: (d) => d.state?.view || "sweep",
      render: (d) => d.state_error ? h("span", { class: "error", title: d.state_error }, "damaged state") : d.state?.view || "sweep" },
    { key: "checkpoints", label: "Checkpoints", value: (d) => (d.allow_checkpoints ? "allowed" : "no") },
    { key: "created", label: "Created", value: (d) => d.created, render: (d) => h("span", { title: dateTime(d.created) }, ago(d.created)) },
  ];
  if (!ctx.readOnly) {
    columns.push({ key: "actions", label: "", sortable: false, export: false, render: (d) => h("button", {
      class: "btn small danger", "data-action": "delete", onclick: action(async () => {
        if (!window.confirm(`Delete dashboard ${d.name}? Its share link stops working.`)) return;
        await api.deleteDashboard(d.id);
        notify(`${d.name} deleted`, "ok");
        await table.load();
      }) }, "Delete") });
  }
  const table = new PagedTable({ columns, name: "dashboards", fetchPage: api.listDashboards,
    emptyText: "No dashboards yet: use Share… on a sweep or comparison, or Save as dashboard on a filtered list." });
  mount(root, h("div", { class: "toolbar" }, h("h2", {}, "Dashboards")),
    h("p", { class: "muted" }, "Share links are shown once, when a dashboard is created; deleting a dashboard revokes its link."),
    table.el);
  table.load().catch((e) => notify(errorText(e), "error"));
  return () => {};
}
