// Queue and workers: who is online (and on which device), what each one runs, how many
// messages wait per queue and how many runs are in each state. Refreshed every few seconds.

import * as api from "../api.js";
import { h, mount, statusBadge, ago, errorText } from "../dom.js";
import { enumOf } from "../specform.js";
import { href } from "../router.js";

const REFRESH_MS = 3000;

export function render(root, ctx) {
  const statuses = enumOf(ctx.openapi, "RunStatus");
  const updated = h("span", { class: "muted", id: "queue-updated" });
  const body = h("div", { id: "queue-body" }, h("div", { class: "card" }, "Loading…"));
  mount(root, h("div", { class: "toolbar" }, h("h2", {}, "Queue and workers"), h("span", { class: "spacer" }), updated), body);

  const runNames = new Map(); // run id → key, to label what each worker runs

  async function refresh() {
    let q;
    try {
      q = await api.queue();
    } catch (e) {
      updated.textContent = `update failed: ${errorText(e)}`;
      return;
    }
    await Promise.all(q.workers.filter((w) => w.run && !runNames.has(w.run)).map((w) =>
      api.getRun(w.run).then((r) => runNames.set(r.id, r.key), () => runNames.set(w.run, w.run.slice(0, 8)))));
    const now = Date.now() / 1000;
    mount(body,
      h("div", { class: "stat-row" },
        Object.entries(q.queues).map(([name, n]) => h("div", { class: "card stat", "data-queue": name },
          h("div", { class: "stat-value" }, n), h("div", { class: "stat-label" }, `waiting on ${name}`))),
        statuses.map((s) => h("a", { class: "card stat", href: href("/runs", { status: s }), "data-runs": s },
          h("div", { class: "stat-value" }, q.runs[s] || 0), h("div", { class: "stat-label" }, statusBadge(s))))),
      h("div", { class: "card" }, h("h3", {}, `Workers online: ${q.workers.length}`),
        h("table", { class: "data", id: "workers" },
          h("thead", {}, h("tr", {}, ["Worker", "Device", "Running", "Last heartbeat"].map((t) => h("th", {}, t)))),
          h("tbody", {}, q.workers.length ? q.workers.map((w) => h("tr", { "data-worker": w.name },
            h("td", { class: "strong" }, w.name),
            h("td", {}, h("span", { class: `device ${w.device.startsWith("cuda") ? "gpu" : "cpu"}` }, w.device)),
            h("td", {}, w.run ? h("a", { href: href(`/run/${w.run}`) }, runNames.get(w.run) || w.run) : h("span", { class: "muted" }, "idle")),
            h("td", {}, ago(w.last_seen, now))))
            : h("tr", {}, h("td", { colspan: 4, class: "empty" }, "No worker online: start one with `tscnc worker` (runs stay queued)."))))));
    updated.textContent = `updated ${new Date().toLocaleTimeString()} · every ${REFRESH_MS / 1000} s`;
  }

  refresh();
  const timer = setInterval(() => { if (!document.hidden) refresh(); }, REFRESH_MS);
  return () => clearInterval(timer);
}
