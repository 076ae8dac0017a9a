// The read-only page behind a share link: the dashboard's sweeps as they are now (and live
// while they run), with the saved chart settings; a saved runs list shows, sweep by sweep,
// the runs its filters match. No write controls: ctx.readOnly is set.

import { h, mount } from "../dom.js";
import * as runsView from "./runs.js";
import { sweepPanel } from "./sweep.js";
import { comparePanel } from "./compare.js";

export function render(root, ctx) {
  const { dashboard, sweeps } = ctx.share.data;
  const state = dashboard.state || {};
  mount(root, h("p", { class: "muted share-note" },
    `Shared dashboard “${dashboard.name}”, read-only. Created ${new Date(dashboard.created * 1000).toLocaleString()}.`));
  const panels = [];
  const filters = state.filters || {};
  const what = Object.entries(filters).map(([k, v]) => `${k}=${v}`).join(", ") || "no filters";
  if (state.view === "runs") {
    // A share link may list the runs of one of its sweeps at a time (GET /runs?sweep=...).
    root.append(h("p", { class: "muted", "data-saved-filters": "" }, `Runs matching ${what}, by sweep.`));
    for (const s of sweeps) {
      const table = h("div");
      root.append(h("section", { class: "share-sweep", "data-share-sweep": s.id }, h("h3", {}, s.name), table));
      const close = runsView.render(table, { ...ctx, embedded: true, query: { ...filters, sweep: s.id } });
      panels.push({ close });
    }
  } else if (state.view === "compare") {
    const box = h("div");
    root.append(box);
    panels.push(comparePanel(box, { sweeps, runIds: state.runs || [] }, ctx, state));
  } else {
    if (state.view === "sweeps") {
      root.append(h("p", { class: "muted", "data-saved-filters": "" }, `The sweeps that matched ${what} when the list was saved.`));
    }
    for (const s of sweeps) {
      const box = h("div", { class: "share-sweep" });
      root.append(box);
      panels.push(sweepPanel(box, s, ctx, state));
    }
  }
  return () => panels.forEach((p) => p.close());
}
