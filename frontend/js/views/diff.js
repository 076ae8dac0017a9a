// Run diff: two or more runs side by side, the spec fields in which they differ (or all of
// them, with the toggle) above their results. The runs are in the URL: #/diff?runs=a,b,c.

import * as api from "../api.js";
import { h, mount, statusBadge, errorText } from "../dom.js";
import { href } from "../router.js";
import { fmtAcc, fmtKappa, fmtSparsity } from "../charts.js";
import { diffRows, runSpec } from "../diff.js";

const show = (v) => (v === undefined ? "–" : v === null ? "null" : typeof v === "object" ? JSON.stringify(v) : String(v));

export function render(root, ctx) {
  const ids = (ctx.query.runs || "").split(",").map((s) => s.trim()).filter(Boolean);
  let all = ctx.query.all === "1";
  if (ids.length < 2) {
    mount(root, h("div", { class: "card" }, "Select two or more runs (in a sweep or the runs table) and press Diff."));
    return () => {};
  }
  mount(root, h("div", { class: "card" }, "Loading runs…"));
  let alive = true;
  let data = [];
  function draw() {
    const specs = data.map((d) => runSpec(d.sweep.spec, d.run));
    const rows = diffRows(specs, all);
    const head = h("tr", {}, h("th", {}, "field"), data.map((d) => h("th", {},
      h("a", { href: href(`/run/${d.run.id}`) }, `${d.sweep.name} · ${d.run.key}`))));
    const toggle = h("label", { class: "filter" }, h("input", { type: "checkbox", id: "diff-all", checked: all,
      onchange: (e) => { all = e.target.checked; history.replaceState(null, "", href("/diff", { runs: ids.join(","), all: all ? "1" : "" })); draw(); } }),
    " show all fields");
    const result = (d) => d.result;
    const worst = (r) => (r && Object.keys(r.robust_accuracy || {}).length ? Math.min(...Object.values(r.robust_accuracy)) : null);
    const resRow = (label, cell) => h("tr", { "data-result": label }, h("td", { class: "strong" }, label), data.map((d) => h("td", { class: "num" }, cell(d))));
    mount(root,
      h("div", { class: "toolbar" }, h("h2", {}, `Diff of ${data.length} runs`), h("span", { class: "spacer" }), toggle,
        h("a", { class: "btn", href: href("/compare", { runs: ids.join(",") }) }, "Compare charts")),
      h("div", { class: "card" }, h("h3", {}, all ? "Spec (all fields; differing ones marked)" : "Spec fields that differ"),
        h("div", { class: "table-scroll" }, h("table", { class: "data compact", id: "diff-spec" }, h("thead", {}, head),
          h("tbody", {}, rows.length ? rows.map((r) => h("tr", { "data-path": r.path, class: r.differs ? "differs" : null },
            h("td", { class: "strong" }, r.path), r.values.map((v) => h("td", {}, show(v)))))
            : h("tr", {}, h("td", { colspan: data.length + 1, class: "empty" }, "Their specs are the same.")))))),
      h("div", { class: "card" }, h("h3", {}, "Results"),
        h("div", { class: "table-scroll" }, h("table", { class: "data compact", id: "diff-results" }, h("thead", {}, head.cloneNode(true)),
          h("tbody", {},
            resRow("status", (d) => statusBadge(d.run.status, d.run.message)),
            resRow("clean accuracy", (d) => fmtAcc(result(d)?.clean_accuracy)),
            resRow("robust accuracy (worst)", (d) => fmtAcc(worst(result(d)))),
            resRow("κ median", (d) => fmtKappa(result(d)?.condition_number?.median)),
            resRow("sparsity reached", (d) => fmtSparsity(result(d)?.sparsity_actual)))))));
  }
  load(ids).then((loaded) => {
    data = loaded;
    if (alive) draw();
  }, (e) => mount(root, h("div", { class: "card error" }, errorText(e))));
  return () => { alive = false; };
}

async function load(ids) {
  const sweeps = new Map();
  return Promise.all(ids.map(async (id) => {
    const run = await api.getRun(id);
    if (!sweeps.has(run.sweep_id)) sweeps.set(run.sweep_id, api.getSweep(run.sweep_id));
    const sweep = await sweeps.get(run.sweep_id);
    const result = run.has_result ? await api.runResult(id) : null;
    return { run, sweep, result };
  }));
}
