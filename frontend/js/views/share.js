// The read-only page behind a share link: the dashboard's sweeps as they are now (and live
// while they run), with the saved chart settings. No write controls: ctx.readOnly is set.

import { h, mount } from "../dom.js";
import { sweepPanel } from "./sweep.js";
import { comparePanel } from "./compare.js";

export function render(root, ctx) {
  const { dashboard, sweeps } = ctx.share.data;
  const state = dashboard.state || {};
  mount(root, h("p", { class: "muted share-note" },
    `Shared dashboard “${dashboard.name}”, read-only. Created ${new Date(dashboard.created * 1000).toLocaleString()}.`));
  const panels = [];
  if (state.view === "compare") {
    const box = h("div");
    root.append(box);
    panels.push(comparePanel(box, { sweeps, runIds: state.runs || [] }, ctx, state));
  } else {
    for (const s of sweeps) {
      const box = h("div", { class: "share-sweep" });
      root.append(box);
      panels.push(sweepPanel(box, s, ctx, state));
    }
  }
  return () => panels.forEach((p) => p.close());
}
