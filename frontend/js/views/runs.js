// Runs table: filters (sweep, status, method) go to the API; one page rendered at a time;
// live progress; bulk cancel and retry; "Save as dashboard" keeps the filters. With
// ctx.embedded (a share page's saved list) the filters are fixed and only the table is shown.

import * as api from "../api.js";
import { h, mount, statusBadge, progressBar, ago, dateTime, notify, action, TERMINAL } from "../dom.js";
import { PagedTable } from "../table.js";
import { tagChips } from "../annotate.js";
import { filterBar, filterParams, listFilters, filterNames } from "../filters.js";
import { choices, queryParam } from "../specform.js";
import { href, replaceQuery } from "../router.js";
import { saveListDialog } from "./dashboards.js";
import { fmtAcc, fmtKappa, fmtSparsity, num } from "../charts.js";

const REFRESH_MS = 2000;

export function render(root, ctx) {
  // Every filter lives in the URL (bookmark it, or share it); the API filters all runs.
  const NAMES = filterNames(ctx.openapi, "/runs");
  const filters = Object.fromEntries(NAMES.map((n) => [n, ctx.query[n] || ""]));
  const embedded = Boolean(ctx.embedded);
  if (embedded && ctx.query.owner) filters.owner = ctx.query.owner; // a saved "mine": its creator

  const columns = [
    { key: "key", label: "Run", value: (r) => r.key, render: (r) => h("a", { href: href(`/run/${r.id}`), class: "strong" }, r.key) },
    { key: "sweep", label: "Sweep", value: (r) => r.sweep_name || r.sweep_id,
      render: (r) => h("a", { href: href(`/sweep/${r.sweep_id}`), title: r.sweep_name || r.sweep_id }, r.sweep_name || r.sweep_id.slice(0, 8)) },
    { key: "status", label: "Status", value: (r) => r.status,
      render: (r) => statusBadge(r.status, r.message || (r.cancel_requested && !TERMINAL.has(r.status) ? "cancel requested" : null)) },
    { key: "progress", label: "Progress", value: (r) => r.progress, render: (r) => h("div", {},
      progressBar(r.progress, r.status),
      h("small", { class: "muted" }, r.stage ? `${r.stage}${r.epoch ? ` ${r.epoch}` : ""}` : ""),
      r.monitor && !r.has_result && h("small", { class: "muted monitor", title: "the training monitor's last epoch: progress, not results" },
        ` · monitor ${fmtAcc(r.monitor.clean_accuracy)} / ${fmtAcc(r.monitor.robust_accuracy)}`)) },
    { key: "method", label: "Method", value: (r) => r.method },
    { key: "dataset", label: "Dataset", value: (r) => r.dataset || null },
    { key: "model", label: "Model", value: (r) => r.model || null },
    { key: "sparsity", label: "Sparsity", class: "num", value: (r) => r.sparsity, render: (r) => fmtSparsity(r.sparsity) },
    { key: "clean_accuracy", label: "Clean", class: "num", value: (r) => r.clean_accuracy, render: (r) => fmtAcc(r.clean_accuracy) },
    { key: "robust_accuracy", label: "Robust", class: "num", value: (r) => r.robust_accuracy, render: (r) => fmtAcc(r.robust_accuracy) },
    { key: "kappa_median", label: "κ median", class: "num", value: (r) => num(r.kappa_median), render: (r) => fmtKappa(r.kappa_median) },
    { key: "worker", label: "Worker", value: (r) => r.worker, render: (r) => r.worker ? h("span", { title: r.device || "" }, r.worker) : "–" },
    { key: "tags", label: "Tags", value: (r) => (r.tags || []).join(" "), render: (r) => h("span", {}, tagChips(r.tags),
      r.notes && h("span", { class: "has-notes", title: r.notes, "data-notes": "" }, "✎")) },
    { key: "notes", label: "Notes", hidden: true, value: (r) => r.notes || "" },
    { key: "created", label: "Created", value: (r) => r.created, render: (r) => h("span", { title: dateTime(r.created) }, ago(r.created)) },
  ];
  // The columns the API can order all runs by (its `sort` values) sort on the server.
  const sortable = choices(queryParam(ctx.openapi, "/runs", "sort"));
  for (const c of columns) if (sortable.includes(c.key)) c.serverSort = c.key;
  if (!ctx.readOnly && !embedded) {
    columns.push({ key: "actions", label: "", sortable: false, export: false, render: (r) => h("span", { class: "row-actions" },
      !TERMINAL.has(r.status) && r.cancel_requested && h("span", { class: "muted", "data-stopping": "" }, "stopping…"),
      !TERMINAL.has(r.status) && !r.cancel_requested && h("button", { class: "btn small", "data-action": "cancel", onclick: action(async () => {
        const after = await api.cancelRun(r.id);
        notify(`${r.key}: ${after.status === "cancelled" ? "cancelled" : "asked to stop"}`, "ok");
        await table.load();
      }) }, "Cancel"),
      (r.status === "failed" || r.status === "cancelled") && h("button", { class: "btn small", "data-action": "retry", onclick: action(async () => {
        await api.retryRun(r.id);
        notify(`${r.key}: queued again`, "ok");
        await table.load();
      }) }, "Retry")) });
  }

  const table = new PagedTable({
    columns, name: "runs", selectable: !embedded,
    fetchPage: (page) => api.listRuns({ ...filterParams(filters, ctx.me?.id), ...page }),
    emptyText: "No runs match these filters.",
  });

  const bar = !embedded && filterBar(listFilters(ctx.openapi, "/runs", { mine: !ctx.share }), filters, applyFilters);
  function applyFilters() {
    replaceQuery("/runs", filters);
    table.reset();
  }

  const bulk = (fn, verb, allowed) => action(async () => {
    const chosen = table.rows.filter((r) => table.selected.has(r.id));
    const ok = chosen.filter(allowed);
    if (!ok.length) return notify(`None of the selected runs can be ${verb}ed.`);
    const res = await Promise.allSettled(ok.map((r) => fn(r.id)));
    const failed = res.filter((r) => r.status === "rejected");
    notify(`${verb}: ${ok.length - failed.length} of ${chosen.length} selected` +
      (failed.length ? `; ${failed.length} failed (${failed[0].reason.message})` : ""), failed.length ? "error" : "ok");
    await table.load();
  });

  const shareArea = h("div", { class: "share-area" });
  const saveDashboard = action(() => saveListDialog(shareArea, { view: "runs", filters,
    params: filterParams(filters, ctx.me?.id), list: api.listRuns, sweepOf: (r) => r.sweep_id }));
  const selectionInfo = h("span", { class: "muted selection-info" });
  table.el.addEventListener("selection", (e) => { selectionInfo.textContent = e.detail.length ? `${e.detail.length} selected` : ""; });

  if (embedded) mount(root, table.el);
  else mount(root,
    h("div", { class: "toolbar" }, h("h2", {}, "Runs"), h("span", { class: "spacer" }),
      selectionInfo,
      !ctx.readOnly && h("button", { class: "btn", "data-action": "cancel-selected",
        onclick: bulk(api.cancelRun, "cancel", (r) => !TERMINAL.has(r.status)) }, "Cancel selected"),
      !ctx.readOnly && h("button", { class: "btn", "data-action": "retry-selected",
        onclick: bulk(api.retryRun, "retry", (r) => r.status === "failed" || r.status === "cancelled") }, "Retry selected"),
      h("button", { class: "btn", "data-action": "compare-selected", onclick: () => {
        if (!table.selected.size) return notify("Select runs to compare.");
        window.location.hash = href("/compare", { runs: [...table.selected].join(",") });
      } }, "Compare selected"),
      h("button", { class: "btn", "data-action": "diff-selected", title: "the spec fields in which the selected runs differ, and their results", onclick: () => {
        if (table.selected.size < 2) return notify("Select two or more runs to diff.");
        window.location.hash = href("/diff", { runs: [...table.selected].join(",") });
      } }, "Diff selected"),
      !ctx.readOnly && h("button", { class: "btn", "data-action": "save-list", onclick: saveDashboard,
        title: "save this list with its filters as a team dashboard with a read-only share link" }, "Save as dashboard")),
    shareArea,
    bar,
    table.el);
  table.load();

  return table.refreshWhile((r) => !TERMINAL.has(r.status), REFRESH_MS);
}
