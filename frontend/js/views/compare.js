// Compare runs across sweeps: their sweep points (clean, robust, κ against sparsity) overlaid,
// with one trace per sweep and method, plus their training curves and security curves.
// The picked runs and sweeps live in the URL (#/compare?runs=a,b&sweeps=c), so a comparison
// can be bookmarked, or saved as a dashboard.

import * as api from "../api.js";
import { h, mount, notify, errorText } from "../dom.js";
import { href, navigate } from "../router.js";
import { draw, purge, chartCard } from "../plot.js";
import {
  sweepPoints, sweepFigure, attackNames, defaultAttack, pointRows, epochSeries, compareTrainingFigure,
  securityFigure, WORST_ATTACK,
} from "../charts.js";
import { shareDialog } from "./dashboards.js";

const MAX_CURVES = 12; // training curves are fetched per run: keep the overlay readable
const EVENT_PAGES = 20;

const split = (s) => (s || "").split(",").map((x) => x.trim()).filter(Boolean);

export function render(root, ctx) {
  const runIds = split(ctx.query.runs);
  const sweepIds = split(ctx.query.sweeps);
  const go = (runs, sweeps) => navigate("/compare", { runs: runs.join(","), sweeps: sweeps.join(",") });

  const addInput = h("input", { id: "compare-add", placeholder: "run or sweep id", size: 36 });
  const sweepPick = h("select", { id: "compare-sweep" }, h("option", { value: "" }, "add a sweep…"));
  api.listSweeps({ limit: 100 }).then((p) => p.items.forEach((s) =>
    sweepPick.append(h("option", { value: s.id }, `${s.name} (${s.id.slice(0, 8)})`))), () => {});
  sweepPick.addEventListener("change", () => sweepPick.value && go(runIds, [...new Set([...sweepIds, sweepPick.value])]));
  const add = async () => {
    const id = addInput.value.trim();
    if (!id) return;
    try {
      await api.getRun(id);
      go([...new Set([...runIds, id])], sweepIds);
    } catch {
      try {
        await api.getSweep(id);
        go(runIds, [...new Set([...sweepIds, id])]);
      } catch (e) {
        notify(`${id}: not a run or sweep id (${errorText(e)})`, "error");
      }
    }
  };
  // Chips name what they stand for (the id until the name has arrived).
  const named = (el, load) => { load().then((t) => { el.textContent = t; }, () => {}); return el; };
  const chips = [
    ...sweepIds.map((id) => h("span", { class: "chip", "data-chip": id },
      named(h("span", { title: id }, `sweep ${id.slice(0, 8)}`), async () => `sweep ${(await api.getSweep(id)).name}`),
      h("button", { class: "chip-x", title: "remove", onclick: () => go(runIds, sweepIds.filter((x) => x !== id)) }, "×"))),
    ...runIds.map((id) => h("span", { class: "chip", "data-chip": id },
      named(h("a", { href: href(`/run/${id}`), title: id }, `run ${id.slice(0, 8)}`), async () => {
        const r = await api.getRun(id);
        return `${r.sweep_name || "run"} · ${r.key}`;
      }),
      h("button", { class: "chip-x", title: "remove", onclick: () => go(runIds.filter((x) => x !== id), sweepIds) }, "×"))),
  ];
  const box = h("div");
  mount(root,
    h("div", { class: "toolbar" }, h("h2", {}, "Compare")),
    h("div", { class: "card compare-pick" },
      h("div", { class: "inline" }, sweepPick, addInput, h("button", { class: "btn", onclick: add }, "Add")),
      h("div", { class: "chips" }, chips.length ? chips : h("span", { class: "muted" },
        "Pick sweeps, or select runs in a sweep view or the runs table and press Compare."))),
    box);
  if (!runIds.length && !sweepIds.length) return () => {};
  const panel = comparePanel(box, { sweepIds, runIds }, ctx);
  return () => panel.close();
}

/**
 * Draw a comparison into `container`. what: {sweepIds, runIds} to fetch, or {sweeps}
 * (SweepDetail[] already loaded, e.g. by the share page) with optional runIds.
 * state: {attack, metric}. Returns {close()}.
 */
export function comparePanel(container, what, ctx, state = {}) {
  let closed = false;
  let attack = state.attack || null;
  let attackChosen = Boolean(state.attack); // else follow the default (PGD) as results arrive
  let metric = state.metric || "robust";
  const sweeps = new Map((what.sweeps || []).map((s) => [s.id, s]));
  const results = new Map();
  let runs = [];
  const curveIds = new Set(state.curves || []); // runs whose training curves are drawn
  const curveCache = new Map(); // run id → epoch series
  const runIds = what.runIds || [];
  const curvePick = h("details", { class: "curve-pick", id: "curve-pick" });

  const attackSelect = h("select", { id: "attack", "data-control": "attack", onchange: (e) => { attack = e.target.value; attackChosen = true; redraw(); } });
  const metricSelect = h("select", { id: "curve-metric", onchange: (e) => { metric = e.target.value; redraw(); } },
    [["robust", "robust accuracy"], ["clean", "clean accuracy"], ["loss", "loss"]].map(([v, t]) => h("option", { value: v, selected: v === metric }, t)));
  const names = () => Object.fromEntries([...sweeps.values()].map((s) => [s.id, s.name]));
  const points = () => sweepPoints(runs, results, names());
  const charts = Object.fromEntries(["clean", "robust", "kappa"].map((m) => [m, chartCard(`chart-${m}`, `compare-${m}`, () => pointRows(points()))]));
  const curveName = (r) => `${names()[r.sweep_id] || r.sweep_id.slice(0, 8)} · ${r.key}`;
  const curves = () => runs.filter((r) => curveIds.has(r.id) && curveCache.has(r.id)).map((r) => ({ name: curveName(r), series: curveCache.get(r.id) }));
  const curveChart = chartCard("chart-curves", "compare-curves", () => curves().flatMap((c) => c.series.map(({ kappas, penalties, ...r }) => ({ run: c.name, ...r }))));
  const securityChart = chartCard("chart-security", "compare-security", () => runs.filter((r) => results.has(r.id))
    .flatMap((r) => results.get(r.id).security_curve.map(([e, a]) => ({ run: r.key, epsilon: e, accuracy: a }))));
  const shareArea = h("div");
  const status = h("p", { class: "muted" }, "Loading…");

  mount(container,
    h("div", { class: "chart-controls" }, h("label", {}, "Robust accuracy under ", attackSelect), status, h("span", { class: "spacer" }),
      !ctx.readOnly && h("button", { class: "btn", "data-action": "share", onclick: () => shareDialog(shareArea, {
        name: `comparison of ${sweeps.size} sweep(s)`, sweepIds: [...new Set(runs.map((r) => r.sweep_id))],
        state: { view: "compare", runs: runIds, attack, metric, curves: [...curveIds] } }) }, "Share…")),
    shareArea,
    h("div", { class: "chart-grid three" }, charts.clean.card, charts.robust.card, charts.kappa.card),
    h("div", { class: "chart-grid two" },
      h("div", {}, h("div", { class: "chart-controls" }, h("label", {}, "Training curves: ", metricSelect)), curvePick, curveChart.card),
      h("div", {}, h("div", { class: "chart-controls" }, h("span", {}, "Security curves")), securityChart.card)));

  function redraw() {
    if (closed) return;
    const pts = points();
    const available = attackNames(pts);
    if (!attackChosen || (attack !== WORST_ATTACK && available.length && !available.includes(attack))) attack = defaultAttack(pts);
    mount(attackSelect, [...available, WORST_ATTACK].map((n) => h("option", { value: n, selected: n === attack }, n === WORST_ATTACK ? "worst over attacks" : n)));
    const groupBy = new Set(runs.map((r) => r.sweep_id)).size > 1 ? "sweep-method" : "method";
    for (const m of ["clean", "robust", "kappa"]) draw(charts[m].graph, sweepFigure(pts, { metric: m, attack, groupBy }));
    draw(curveChart.graph, compareTrainingFigure(curves(), metric));
    // The security chart shows the same runs as the training curves.
    const withCurve = runs.filter((r) => results.has(r.id) && curveIds.has(r.id));
    draw(securityChart.graph, securityFigure(withCurve.map((r) => ({ name: curveName(r), points: results.get(r.id).security_curve }))));
    const evaluated = runs.filter((r) => results.has(r.id)).length;
    status.textContent = `${runs.length} run(s) from ${new Set(runs.map((r) => r.sweep_id)).size} sweep(s), ${evaluated} evaluated`;
    drawCurvePick();
  }

  // Which runs' curves are drawn: said in the summary, chosen with the checkboxes.
  function drawCurvePick() {
    const open = curvePick.open;
    mount(curvePick,
      h("summary", { "data-curves": "" }, `Curves of ${curveIds.size} of ${runs.length} run(s)` +
        (runs.length > curveIds.size ? ` (at most ${MAX_CURVES}; choose)` : "")),
      h("div", { class: "curve-options" }, runs.map((r) => h("label", { class: "check-option" },
        h("input", { type: "checkbox", "data-curve": r.id, checked: curveIds.has(r.id),
          disabled: !curveIds.has(r.id) && curveIds.size >= MAX_CURVES,
          onchange: (e) => { if (e.target.checked) curveIds.add(r.id); else curveIds.delete(r.id); loadCurves(); redraw(); } }),
        ` ${curveName(r)}`))));
    curvePick.open = open;
  }

  // By default the first runs of each sweep in turn, so every sweep is shown.
  function defaultCurves() {
    const bySweep = new Map();
    for (const r of runs) bySweep.set(r.sweep_id, [...(bySweep.get(r.sweep_id) || []), r.id]);
    const queues = [...bySweep.values()];
    for (let i = 0; curveIds.size < MAX_CURVES && queues.some((q) => i < q.length); i += 1) {
      for (const q of queues) if (i < q.length && curveIds.size < MAX_CURVES) curveIds.add(q[i]);
    }
  }

  async function loadCurves() {
    for (const id of [...curveIds]) {
      if (closed || curveCache.has(id)) continue;
      curveCache.set(id, epochSeries(await allEvents(id)));
      redraw();
    }
  }

  async function allEvents(runId) {
    const out = [];
    let after = null;
    for (let i = 0; i < EVENT_PAGES; i += 1) {
      const page = await api.runEventsPage(runId, { after, limit: 500 });
      out.push(...page.items.map((e) => e.event));
      if (!page.next) break;
      after = page.next;
    }
    return out;
  }

  async function load() {
    for (const id of what.sweepIds || []) if (!sweeps.has(id)) sweeps.set(id, await api.getSweep(id));
    const picked = runIds.length ? await Promise.all(runIds.map((id) => api.getRun(id))) : [];
    for (const r of picked) if (!sweeps.has(r.sweep_id)) sweeps.set(r.sweep_id, await api.getSweep(r.sweep_id));
    // Picked runs when there are any; else every run of the sweeps.
    runs = picked.length ? picked : [...sweeps.values()].flatMap((s) => s.runs);
    const need = new Set(runs.map((r) => r.sweep_id));
    await Promise.all([...need].map(async (sid) => {
      const res = await api.sweepResults(sid);
      for (const r of res.items) results.set(r.run_id, r);
    }));
    const known = new Set(runs.map((r) => r.id));
    for (const id of [...curveIds]) if (!known.has(id)) curveIds.delete(id);
    if (!curveIds.size) defaultCurves();
    redraw();
    await loadCurves();
  }

  load().catch((e) => { status.textContent = errorText(e); });
  return {
    close() {
      closed = true;
      for (const c of [...Object.values(charts), curveChart, securityChart]) purge(c.graph);
    },
  };
}
