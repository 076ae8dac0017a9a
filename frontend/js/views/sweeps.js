// Sweeps table: one page at a time, live progress, bulk cancel/delete; "Save as dashboard"
// keeps the filters.

import * as api from "../api.js";
import { h, mount, statusBadge, progressBar, ago, dateTime, notify, action, TERMINAL } from "../dom.js";
import { PagedTable } from "../table.js";
import { tagChips } from "../annotate.js";
import { href, replaceQuery } from "../router.js";
import { filterBar, filterParams, listFilters, filterNames } from "../filters.js";
import { saveListDialog } from "./dashboards.js";

const REFRESH_MS = 3000;

function countsText(counts) {
  return Object.entries(counts || {}).filter(([, n]) => n).map(([s, n]) => `${n} ${s}`).join(", ") || "–";
}

export function render(root, ctx) {
  const columns = [
    { key: "name", label: "Sweep", value: (s) => s.name,
      render: (s) => h("a", { href: href(`/sweep/${s.id}`), class: "strong" }, s.name) },
    { key: "status", label: "Status", value: (s) => s.summary || s.status, render: (s) => h("span", {},
      statusBadge(s.status, s.summary), " ", h("small", { class: "muted", "data-summary": "" }, (s.summary || "").split(" · ").slice(1).join(" · "))) },
    { key: "progress", label: "Progress", value: (s) => s.progress, render: (s) => progressBar(s.progress, s.status) },
    { key: "dataset", label: "Dataset", value: (s) => s.spec.dataset.name },
    { key: "model", label: "Model", value: (s) => `${s.spec.model.name}-${s.spec.model.width}` },
    { key: "methods", label: "Methods", value: (s) => s.spec.methods.join(" "), render: (s) => s.spec.methods.join(", ") },
    { key: "sparsities", label: "Sparsities", value: (s) => s.spec.sparsities.join(" "), render: (s) => s.spec.sparsities.join(", ") },
    { key: "runs", label: "Runs", value: (s) => s.run_ids.length,
      render: (s) => h("a", { href: href("/runs", { sweep: s.id }), title: countsText(s.counts) }, `${s.run_ids.length} runs`) },
    { key: "owner", label: "Owner", value: (s) => s.owner_name },
    { key: "tags", label: "Tags", value: (s) => (s.tags || []).join(" "), render: (s) => h("span", {}, tagChips(s.tags),
      s.notes && h("span", { class: "has-notes", title: s.notes, "data-notes": "" }, "✎")) },
    { key: "notes", label: "Notes", hidden: true, value: (s) => s.notes || "" },
    { key: "created", label: "Created", value: (s) => s.created, render: (s) => h("span", { title: dateTime(s.created) }, ago(s.created)) },
    { key: "id", label: "Id", value: (s) => s.id, render: (s) => h("code", { class: "id" }, s.id.slice(0, 8)) },
  ];
  // Filters live in the URL (bookmark or share the filtered list); the API applies them.
  const NAMES = filterNames(ctx.openapi, "/sweeps");
  const filters = Object.fromEntries(NAMES.map((n) => [n, ctx.query[n] || ""]));
  const filtered = () => NAMES.some((n) => filters[n]);
  const table = new PagedTable({ columns, name: "sweeps", selectable: !ctx.readOnly,
    fetchPage: (page) => api.listSweeps({ ...filterParams(filters, ctx.me?.id), ...page }),
    emptyText: filtered() ? "No sweep matches these filters." : "No sweeps yet: start one with New experiment." });
  const bar = filterBar(listFilters(ctx.openapi, "/sweeps", { mine: !ctx.share }), filters, () => {
    replaceQuery("/sweeps", filters);
    table.emptyText = filtered() ? "No sweep matches these filters." : "No sweeps yet: start one with New experiment.";
    table.reset();
  });

  const bulk = (fn, verb) => action(async () => {
    const ids = [...table.selected];
    if (!ids.length) return notify("Select sweeps first.");
    if (verb === "delete" && !window.confirm(`Delete ${ids.length} sweep(s) with their runs, events and results?`)) return;
    const res = await Promise.allSettled(ids.map(fn));
    const failed = res.filter((r) => r.status === "rejected");
    notify(`${verb}: ${ids.length - failed.length} done${failed.length ? `, ${failed.length} failed (${failed[0].reason.message})` : ""}`,
      failed.length ? "error" : "ok");
    await table.load();
  });

  const toolbar = h("div", { class: "toolbar" },
    h("h2", {}, "Sweeps"), h("span", { class: "spacer" }),
    !ctx.readOnly && h("button", { class: "btn", "data-action": "cancel-selected", onclick: bulk(api.cancelSweep, "cancel") }, "Cancel selected"),
    !ctx.readOnly && h("button", { class: "btn danger", "data-action": "delete-selected", onclick: bulk(api.deleteSweep, "delete") }, "Delete selected"),
    h("button", { class: "btn", "data-action": "compare-selected", onclick: () => {
      const ids = [...table.selected];
      if (!ids.length) return notify("Select sweeps to compare.");
      window.location.hash = href("/compare", { sweeps: ids.join(",") });
    } }, "Compare selected"),
    !ctx.readOnly && h("button", { class: "btn", "data-action": "save-list",
      title: "save this list with its filters as a team dashboard with a read-only share link",
      onclick: action(() => saveListDialog(shareArea, { view: "sweeps", filters, params: filterParams(filters, ctx.me?.id),
        list: api.listSweeps, sweepOf: (s) => s.id })) }, "Save as dashboard"),
    !ctx.readOnly && h("a", { class: "btn primary", href: "#/new" }, "New experiment"));
  const shareArea = h("div", { class: "share-area" });
  mount(root, toolbar, shareArea, bar, table.el);
  table.load();

  return table.refreshWhile((s) => !TERMINAL.has(s.status), REFRESH_MS);
}
