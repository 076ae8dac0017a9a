// Seed statistics of a sweep (or several) in the sweep view and on share pages (issue #12):
// accuracy bands (mean, 95 % interval), κ geometric mean with min–max, a "show seeds" toggle,
// group-by and baseline pickers, the difference chart, and for grid sweeps a parallel-
// coordinates chart and a heatmap over two knobs. The numbers come from the API's summary
// (GET /sweeps/{id}/summary); the figures from the pure charts_summary.js. The panel refetches
// the summary (debounced) when its owner says a run finished, and its settings are part of
// the owner's share state.

import * as api from "../api.js";
import { h, mount, notify, action, errorText, everyFrame } from "../dom.js";
import { navigate } from "../router.js";
import { draw, purge, chartCard } from "../plot.js";
import { attackNames, fmtSparsity, num, WORST_ATTACK } from "../charts.js";
import {
  summaryRows, bandFigure, differenceFigure, parcoordsFigure, heatmapFigure, summaryExportRows, gridKnobs, knobName,
} from "../charts_summary.js";

const BAND_METRICS = ["clean", "robust", "kappa"];
const REFETCH_MS = 1000;
/** The API's name of "the lowest accuracy over each run's attacks". */
const MIN_ATTACK = "min";

/**
 * opts: {sweepIds, sweepNames: {id: name}, points(): seed points (charts.sweepPoints), title}.
 * state: {groupBy: [keys] | null (the API's default), baseline: method | "" | undefined
 * (undefined: hydra when present), attack, showSeeds, heat: {x, y, sparsity, method}}.
 * Returns {el, refresh() (refetch, debounced), redraw() (new seed points), state(), close()}.
 */
export function summaryPanel(opts, state = {}) {
  const { sweepIds, sweepNames = {}, points = () => [] } = opts;
  let groupBy = Array.isArray(state.groupBy) ? [...state.groupBy] : null;
  let baseline = typeof state.baseline === "string" ? state.baseline : undefined;
  let attack = state.attack || MIN_ATTACK;
  let showSeeds = Boolean(state.showSeeds);
  const heat = { ...(state.heat || {}) };
  let data = null; // the last SummaryPublic
  let closed = false;
  let seq = 0;

  const name = sweepIds.length === 1 ? sweepNames[sweepIds[0]] || sweepIds[0] : "sweeps";
  const cards = Object.fromEntries(BAND_METRICS.map((m) => [m, chartCard(`chart-band-${m}`, `${name}-${m}-seeds`, () => exportRows())]));
  const diffCard = chartCard("chart-difference", `${name}-difference`, () => exportRows().filter((r) => r.verdict));
  const parCard = chartCard("chart-parcoords", `${name}-parcoords`, () => exportRows());
  const heatCard = chartCard("chart-heatmap", `${name}-heatmap`, () => exportRows());
  const exportRows = () => summaryExportRows(data ? summaryRows(data, sweepNames) : []);

  const groupBox = h("span", { class: "checks inline", "data-control": "group-by" });
  const baselineSelect = h("select", { id: "baseline", "data-control": "baseline", onchange: (e) => { baseline = e.target.value; refresh(0); } });
  const attackSelect = h("select", { id: "summary-attack", "data-control": "summary-attack", onchange: (e) => { attack = e.target.value; refresh(0); } });
  const seedsBox = h("input", { type: "checkbox", id: "show-seeds", "data-control": "show-seeds", checked: showSeeds,
    onchange: (e) => { showSeeds = e.target.checked; drawAll(); } });
  const info = h("span", { class: "muted", "data-summary-info": "" }, "Loading the summary…");
  const heatControls = h("div", { class: "chart-controls", "data-control": "heatmap" });
  const diffBox = h("div", { "data-box": "difference", hidden: true }, diffCard.card);
  const heatNote = h("p", { class: "muted", "data-heatmap-note": "" }, "The heatmap needs two gridded knobs.");
  const heatWrap = h("div", { class: "card" }, heatControls, heatCard.card);
  const gridBox = h("div", { class: "chart-grid two", "data-box": "grid", hidden: true }, parCard.card, heatWrap, heatNote);

  const el = h("section", { class: "summary-panel", "data-summary": sweepIds.join(",") },
    h("div", { class: "toolbar" }, h("h3", {}, "Across seeds"),
      h("span", { class: "muted" }, "mean with its 95 % interval; κ: geometric mean, min–max"), h("span", { class: "spacer" }),
      h("button", { class: "btn small", "data-action": "summary-csv", title: "the summary as the API writes it",
        onclick: action(() => api.downloadSummary(sweepIds, query(), "csv", `${name}-summary.csv`)) }, "Summary CSV"),
      h("button", { class: "btn small", "data-action": "summary-json", title: "the summary as the API writes it",
        onclick: action(() => api.downloadSummary(sweepIds, query(), "json", `${name}-summary.json`)) }, "Summary JSON")),
    h("div", { class: "chart-controls" },
      h("span", {}, "Group by ", groupBox),
      h("label", {}, "Baseline ", baselineSelect),
      h("label", {}, "Robust accuracy under ", attackSelect),
      h("label", {}, seedsBox, " show seeds"), info),
    h("div", { class: "chart-grid three" }, BAND_METRICS.map((m) => cards[m].card)),
    diffBox, gridBox);

  // ---- data ---------------------------------------------------------------------------------
  function query() {
    return { group_by: groupBy, baseline: baseline || null, attack: attack === MIN_ATTACK ? null : attack };
  }

  let timer = null;
  /**
   * Refetch the summary within `delay` ms: calls while one is pending join it (at most one
   * request per REFETCH_MS while runs keep finishing, and never postponed indefinitely);
   * delay 0 (a changed setting) fetches at once.
   */
  function refresh(delay = REFETCH_MS) {
    if (closed) return;
    if (timer && delay > 0) return;
    clearTimeout(timer);
    timer = setTimeout(load, delay);
  }

  async function load() {
    timer = null;
    const mine = ++seq;
    try {
      const s = await api.summary(sweepIds, query());
      if (closed || mine !== seq) return;
      // Unless chosen, compare with hydra as soon as the answer holds hydra and another method.
      if (baseline === undefined) {
        const methods = new Set(s.groups.map((g) => g.values.method));
        if (methods.has("hydra") && methods.size > 1 && s.group_by.includes("method")) {
          baseline = "hydra";
          refresh(0);
          return;
        }
      }
      data = s;
      drawAll();
    } catch (e) {
      if (closed || mine !== seq) return;
      info.textContent = `summary: ${errorText(e)}`;
      if (e.status === 422 && (groupBy || baseline)) notify(`summary: ${errorText(e)}`, "error");
    }
  }

  // ---- drawing ------------------------------------------------------------------------------
  const drawAll = everyFrame(drawNow, () => closed);

  function drawNow() {
    const rows = data ? summaryRows(data, sweepNames) : [];
    const pts = points().map((p) => ({ ...p }));
    drawControls(rows, pts);
    const attackLabel = attack === MIN_ATTACK ? "worst attack" : attack;
    const seedAttack = attack === MIN_ATTACK ? WORST_ATTACK : attack;
    for (const m of BAND_METRICS) {
      draw(cards[m].graph, bandFigure(rows, { metric: m, seeds: pts, showSeeds, attack: seedAttack, attackLabel }));
    }
    const hasDiff = Boolean(data?.baseline);
    diffBox.hidden = !hasDiff;
    if (hasDiff) draw(diffCard.graph, differenceFigure(rows, { baseline: data.baseline }));
    const knobs = gridKnobs(rows);
    gridBox.hidden = knobs.length === 0;
    if (knobs.length) {
      draw(parCard.graph, parcoordsFigure(rows, { knobs }));
      heatWrap.hidden = knobs.length < 2;
      heatNote.hidden = knobs.length >= 2;
      if (knobs.length >= 2) draw(heatCard.graph, heatmapFigure(rows, heatOptions(rows, knobs)));
    }
    if (data) {
      const n = rows.reduce((a, r) => a + r.n, 0);
      info.dataset.evaluated = String(n);
      info.textContent = `${rows.length} group·sparsity cell(s) over ${n} evaluated run(s)` +
        (data.missing ? `, ${data.missing} without a result yet` : "");
    }
  }

  // The heatmap's knobs, sparsity and method: the chosen ones (`heat`, kept in the share state)
  // while they exist, else the first knobs, the first method other than the baseline and the
  // highest sparsity.
  function heatOptions(rows, knobs) {
    const pick = (v, list) => (list.some((x) => String(x) === String(v)) ? list.find((x) => String(x) === String(v)) : list[0]);
    const x = pick(heat.x, knobs);
    const y = pick(heat.y, knobs.filter((k) => k !== x));
    const withBoth = rows.filter((r) => x in r.params && y in r.params);
    const methods = [...new Set(withBoth.map((r) => r.method))];
    const method = pick(heat.method, [...methods.filter((m) => m !== baseline), ...methods.filter((m) => m === baseline)]);
    const sparsities = [...new Set(withBoth.filter((r) => r.method === method).map((r) => r.sparsity))].sort((a, b) => b - a);
    const sparsity = pick(heat.sparsity, sparsities);
    mount(heatControls,
      h("label", {}, "x ", select("heat-x", knobs, x, (v) => { heat.x = v; drawAll(); }, knobName)),
      h("label", {}, "y ", select("heat-y", knobs, y, (v) => { heat.y = v; drawAll(); }, knobName)),
      h("label", {}, "sparsity ", select("heat-sparsity", sparsities, sparsity, (v) => { heat.sparsity = num(v); drawAll(); }, fmtSparsity)),
      methods.length > 1 && h("label", {}, "method ", select("heat-method", methods, method, (v) => { heat.method = v; drawAll(); })));
    return { x, y, sparsity, method };
  }

  function select(id, values, current, onchange, label = String) {
    return h("select", { id, "data-control": id, onchange: (e) => onchange(e.target.value) },
      values.map((v) => h("option", { value: String(v), selected: String(v) === String(current) }, label(v))));
  }

  function drawControls(rows, pts) {
    // group-by: method, each grid path, and sweep when several sweeps are shown
    const keys = ["method", ...(data?.params || []), ...(sweepIds.length > 1 ? ["sweep"] : [])];
    const active = data?.group_by || groupBy || keys;
    mount(groupBox, keys.map((k) => h("label", { class: "check-option", title: k },
      h("input", { type: "checkbox", value: k, "data-group-by": k, checked: active.includes(k), onchange: () => {
        groupBy = [...groupBox.querySelectorAll("input:checked")].map((i) => i.value);
        if (!groupBy.includes("method")) baseline = "";
        refresh(0);
      } }), ` ${k === "method" || k === "sweep" ? k : knobName(k)}`)));
    const methods = [...new Set(rows.map((r) => r.method).filter(Boolean))];
    if (baseline && !methods.includes(baseline)) methods.push(baseline);
    mount(baselineSelect, h("option", { value: "" }, "none"),
      methods.map((m) => h("option", { value: m, selected: m === baseline }, m)));
    baselineSelect.disabled = !active.includes("method");
    const names = attackNames(pts);
    if (attack !== MIN_ATTACK && !names.includes(attack)) names.push(attack);
    mount(attackSelect, [MIN_ATTACK, ...names].map((n) =>
      h("option", { value: n, selected: n === attack }, n === MIN_ATTACK ? "worst over attacks" : n)));
  }

  // Seed points are the owner's runs: clicking one opens the run.
  for (const m of BAND_METRICS) {
    const gd = cards[m].graph;
    draw(gd, bandFigure([], { metric: m })).then(() => {
      gd.on("plotly_click", (ev) => {
        const id = ev?.points?.[0]?.customdata;
        if (typeof id === "string" && id) navigate(`/run/${id}`);
      });
    });
  }
  load();

  let lastSeeds = "";
  return {
    el,
    refresh,
    /** Draw again if the owner's seed points changed (shown with "show seeds"). */
    redraw() {
      const sig = points().map((p) => p.run_id).sort().join(",");
      if (sig !== lastSeeds) {
        lastSeeds = sig;
        drawAll();
      }
    },
    state: () => ({ groupBy, baseline: baseline ?? null, attack, showSeeds, heat: { ...heat } }),
    close() {
      closed = true;
      clearTimeout(timer);
      for (const c of [...Object.values(cards), diffCard, parCard, heatCard]) purge(c.graph);
    },
  };
}
