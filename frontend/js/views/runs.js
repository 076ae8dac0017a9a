// Runs table: filters (sweep, status, method) go to the API; one page rendered at a time;
// live progress; bulk cancel and retry; "Save as dashboard" keeps the filters. With
// ctx.embedded (a share page's saved list) the filters are fixed and only the table is shown.

import * as api from "../api.js";
import { h, mount, statusBadge, progressBar, ago, dateTime, notify, action, TERMINAL, STATUSES } from "../dom.js";
import { PagedTable } from "../table.js";
import { tagChips } from "../annotate.js";
import { filterBar, filterParams } from "../filters.js";
import { href, replaceQuery } from "../router.js";
import { saveListDialog } from "./dashboards.js";
import { fmtAcc, fmtKappa, fmtSparsity, num, METHOD_ORDER } from "../charts.js";

const REFRESH_MS = 2000;

export function render(root, ctx) {
  // Every filter lives in the URL (bookmark it, or share it); the API filters all runs.
  const NAMES = ["sweep", "q", "tag", "status", "method", "dataset", "model", "mine", "from", "to", "metric", "min", "max", "order"];
  const filters = Object.fromEntries(NAMES.map((n) => [n, ctx.query[n] || ""]));
  const embedded = Boolean(ctx.embedded);
  if (embedded && ctx.query.owner) filters.owner = ctx.query.owner; // a saved "mine": its creator

  const columns = [
    { key: "key", label: "Run", serverSort: "key", value: (r) => r.key, render: (r) => h("a", { href: href(`/run/${r.id}`), class: "strong" }, r.key) },
    { key: "sweep", label: "Sweep", value: (r) => r.sweep_name || r.sweep_id,
      render: (r) => h("a", { href: href(`/sweep/${r.sweep_id}`), title: r.sweep_name || r.sweep_id }, r.sweep_name || r.sweep_id.slice(0, 8)) },
    { key: "status", label: "Status", serverSort: "status", value: (r) => r.status,
      render: (r) => statusBadge(r.status, r.message || (r.cancel_requested && !TERMINAL.has(r.status) ? "cancel requested" : null)) },
    { key: "progress", label: "Progress", serverSort: "progress", value: (r) => r.progress, render: (r) => h("div", {},
      progressBar(r.progress, r.status),
      h("small", { class: "muted" }, r.stage ? `${r.stage}${r.epoch ? ` ${r.epoch}` : ""}` : ""),
      r.monitor && !r.has_result && h("small", { class: "muted monitor", title: "the training monitor's last epoch: progress, not results" },
        ` · monitor ${fmtAcc(r.monitor.clean_accuracy)} / ${fmtAcc(r.monitor.robust_accuracy)}`)) },
    { key: "method", label: "Method", serverSort: "method", value: (r) => r.method },
    { key: "dataset", label: "Dataset", value: (r) => r.dataset || null },
    { key: "model", label: "Model", value: (r) => r.model || null },
    { key: "sparsity", label: "Sparsity", serverSort: "sparsity", class: "num", value: (r) => r.sparsity, render: (r) => fmtSparsity(r.sparsity) },
    { key: "clean_accuracy", label: "Clean", serverSort: "clean_accuracy", class: "num", value: (r) => r.clean_accuracy, render: (r) => fmtAcc(r.clean_accuracy) },
    { key: "robust_accuracy", label: "Robust", serverSort: "robust_accuracy", class: "num", value: (r) => r.robust_accuracy, render: (r) => fmtAcc(r.robust_accuracy) },
    { key: "kappa_median", label: "κ median", serverSort: "kappa_median", class: "num", value: (r) => num(r.kappa_median), render: (r) => fmtKappa(r.kappa_median) },
    { key: "worker", label: "Worker", value: (r) => r.worker, render: (r) => r.worker ? h("span", { title: r.device || "" }, r.worker) : "–" },
    { key: "tags", label: "Tags", value: (r) => (r.tags || []).join(" "), render: (r) => h("span", {}, tagChips(r.tags),
      r.notes && h("span", { class: "has-notes", title: r.notes, "data-notes": "" }, "✎")) },
    { key: "notes", label: "Notes", hidden: true, value: (r) => r.notes || "" },
    { key: "created", label: "Created", value: (r) => r.created, render: (r) => h("span", { title: dateTime(r.created) }, ago(r.created)) },
  ];
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

  const bar = !embedded && filterBar([
    { name: "q", label: "Search", placeholder: "name or notes", size: 18 },
    { name: "tag", label: "Tag", size: 10 },
    { name: "status", label: "Status", kind: "select", options: STATUSES },
    { name: "method", label: "Method", kind: "select", options: METHOD_ORDER },
    { name: "dataset", label: "Dataset", size: 9 },
    { name: "model", label: "Model", size: 7 },
    !ctx.share && { name: "mine", label: "Mine", kind: "check" },
    { name: "from", label: "From", kind: "date" },
    { name: "to", label: "to", kind: "date" },
    { name: "metric", label: "Metric", kind: "select", all: "—", title: "keep evaluated runs with this metric in [min, max]",
      options: [["robust_accuracy", "robust"], ["clean_accuracy", "clean"], ["kappa_median", "κ median"], ["sparsity_actual", "sparsity"]] },
    { name: "min", label: "≥", kind: "number" },
    { name: "max", label: "≤", kind: "number" },
    { name: "sweep", label: "Sweep", placeholder: "sweep id", size: 12 },
    { name: "order", label: "Order", kind: "select", all: "newest first", options: [["asc", "oldest first"]],
      title: "order of all pages by creation time (or click a column header)" },
  ].filter(Boolean), filters, applyFilters);
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

  const timer = setInterval(() => {
    if (document.hidden || !table.rows.some((r) => !TERMINAL.has(r.status))) return;
    table.load({ quiet: true }).catch(() => {});
  }, REFRESH_MS);
  return () => clearInterval(timer);
}
