// Pure chart code: data in, Plotly figure ({data, layout}) out. No DOM, no network, no Plotly
// calls, so every function here can be unit-tested by evaluating it in a page.
//
// Metric definitions are the ones of DESIGN §3.5; values that may be infinite (κ) arrive as
// the string "Infinity" and are shown as ∞, never dropped.

// The methods' order and colours are the API's (tscnc/palette.py, which the static report draws
// with too), read from the OpenAPI document by main.js and set here once with usePalette. Until
// then (and in tests without an API) methods sort by name and take the plotting defaults.
export const METHOD_ORDER = [];
export const METHOD_COLORS = {};
/** Colours of the training stages (the API's Stage values that train), in their order. */
const STAGE_COLORS = { pretrain: "#2563eb", prune: "#f59e0b", finetune: "#16a34a" };
export const STAGE_ORDER = Object.keys(STAGE_COLORS);
/** Colours of groups that are not one method's (by position). */
export const EXTRA_COLORS = ["#0891b2", "#be185d", "#65a30d", "#7c3aed", "#ea580c", "#0f766e", "#a16207", "#4338ca"];

/** Draw with the methods' palette {order, colors} (specform.methodPalette of the OpenAPI document). */
export function usePalette({ order = [], colors = {} } = {}) {
  METHOD_ORDER.splice(0, METHOD_ORDER.length, ...order);
  for (const m of Object.keys(METHOD_COLORS)) delete METHOD_COLORS[m];
  Object.assign(METHOD_COLORS, colors);
}

/** Position of a method in the palette's order; unknown names after every method. */
export function methodRank(method) {
  const i = METHOD_ORDER.indexOf(method);
  return i < 0 ? METHOD_ORDER.length : i;
}
/** Robust accuracy choice meaning "the lowest accuracy over all attacks". */
export const WORST_ATTACK = "worst";

// ---- numbers ---------------------------------------------------------------------------------

/** A number from the API: "Infinity"/"-Infinity"/"NaN" strings become numbers; null stays null. */
export function num(v) {
  if (v === null || v === undefined) return null;
  if (typeof v === "number") return v;
  if (v === "Infinity") return Infinity;
  if (v === "-Infinity") return -Infinity;
  if (v === "NaN") return NaN;
  const x = Number(v);
  return Number.isNaN(x) ? null : x;
}

export function fmtAcc(v) {
  const x = num(v);
  return x === null || Number.isNaN(x) ? "–" : `${(100 * x).toFixed(1)}%`;
}

export function fmtKappa(v) {
  const x = num(v);
  if (x === null || Number.isNaN(x)) return "–";
  if (!Number.isFinite(x)) return "∞";
  return x >= 1e4 ? x.toExponential(2) : x.toPrecision(3);
}

/** Sparsity as a short label: 0.9 → "0.9", 0.99 → "0.99", 0 → "0". */
export function fmtSparsity(v) {
  const x = num(v);
  return x === null ? "–" : String(Number(x.toPrecision(6)));
}

// ---- sweep points ----------------------------------------------------------------------------

/**
 * One point per run that has a result.
 * runs: RunPublic[]; results: Map or object run id → ResultPublic; sweeps: optional map
 * sweep id → name (for labels across sweeps).
 */
export function sweepPoints(runs, results, sweeps = {}) {
  const get = (rid) => (results instanceof Map ? results.get(rid) : results[rid]);
  const out = [];
  for (const run of runs) {
    const r = get(run.id);
    if (!r) continue;
    const robust = {};
    for (const [k, v] of Object.entries(r.robust_accuracy || {})) robust[k] = num(v);
    out.push({
      run_id: run.id,
      key: run.key,
      sweep: run.sweep_id,
      sweep_name: sweeps[run.sweep_id] || run.sweep_id,
      method: run.method,
      sparsity: num(run.sparsity),
      sparsity_actual: num(r.sparsity_actual),
      seed: run.seed,
      clean: num(r.clean_accuracy),
      robust,
      kappa_median: num(r.condition_number?.median),
      kappa_max: num(r.condition_number?.max),
      flags: r.flags || [],
    });
  }
  return out;
}

/** Attacks present in any point, sorted, for the robust-accuracy selector. */
export function attackNames(points) {
  const s = new Set();
  for (const p of points) for (const k of Object.keys(p.robust)) s.add(k);
  return [...s].sort();
}

/** Default attack to show: PGD if present, else the first one, else worst-case. */
export function defaultAttack(points) {
  const names = attackNames(points);
  return names.find((n) => n.toLowerCase().startsWith("pgd")) || names[0] || WORST_ATTACK;
}

/** The robust accuracy of a point for `attack` (or the minimum over attacks). */
export function robustValue(point, attack) {
  const vals = Object.values(point.robust).filter((v) => v !== null);
  if (attack === WORST_ATTACK) return vals.length ? Math.min(...vals) : null;
  const v = point.robust[attack];
  return v === undefined ? null : v;
}

/** Label of the κ = ∞ band and marker of an ∞ point (the static report uses the same). */
export const INF_LABEL = "∞";
export const INF_SYMBOL = "triangle-up";

/**
 * Log κ axis with an "∞" band on top (the rule of tscnc.report.kappa_axis): the finite values
 * padded to whole decades [low, topFinite] (log10 units), half a decade of gap, then a one-decade
 * band [bandFrom, high] in which ∞ is drawn at infAt. Example: [3, 120, ∞] → low 0, topFinite 3,
 * bandFrom 3.5, infAt 4, high 4.5.
 */
export function kappaAxis(values) {
  const logs = values.filter((v) => Number.isFinite(v) && v !== null).map((v) => Math.log10(Math.max(v, 1)));
  const low = logs.length ? Math.floor(Math.min(...logs)) : 0;
  const top = logs.length ? Math.max(Math.ceil(Math.max(...logs)), low + 1) : 1;
  return { low, topFinite: top, bandFrom: top + 0.5, infAt: top + 1, high: top + 1.5 };
}

function sortMethods(names) {
  return [...names].sort((a, b) => methodRank(a) - methodRank(b) || a.localeCompare(b));
}

/** Colour of a group: the method's colour, else one from a fixed list by position. */
function groupColor(name, method, index) {
  return METHOD_COLORS[name] || (index < 0 ? undefined : EXTRA_COLORS[index % EXTRA_COLORS.length]) || METHOD_COLORS[method];
}

const METRICS = {
  clean: { title: "Clean accuracy", axis: "clean accuracy" },
  robust: { title: "Robust accuracy", axis: "robust accuracy" },
  kappa: { title: "Condition number κ (median, max)", axis: "κ (log scale)" },
};

/**
 * Figure of one metric against sparsity, one trace per group (method by default).
 * opts.metric: "clean" | "robust" | "kappa"; opts.attack: attack name or WORST_ATTACK;
 * opts.selected: array or Set of run ids (drawn highlighted in every chart);
 * opts.groupBy: "method" (default) or "sweep-method" (compare across sweeps).
 * Each point's customdata is its run id.
 */
export function sweepFigure(points, opts = {}) {
  const metric = opts.metric || "clean";
  const attack = opts.attack || WORST_ATTACK;
  const selected = new Set(opts.selected || []);
  const bySweep = opts.groupBy === "sweep-method";
  const groupOf = (p) => (bySweep ? `${p.sweep_name} · ${p.method}` : p.method);

  const value = (p) => {
    if (metric === "clean") return p.clean;
    if (metric === "robust") return robustValue(p, attack);
    return p.kappa_median;
  };
  // Infinite κ is drawn as ∞: a triangle on the labelled "∞" band above every finite value.
  const kAxis = kappaAxis(metric === "kappa" ? points.flatMap((p) => [p.kappa_median, p.kappa_max]) : []);
  const cap = 10 ** kAxis.infAt;

  const groups = new Map();
  for (const p of points) {
    const g = groupOf(p);
    if (!groups.has(g)) groups.set(g, { method: p.method, points: [] });
    groups.get(g).points.push(p);
  }
  const names = bySweep ? [...groups.keys()].sort() : sortMethods(groups.keys());
  const categories = [...new Set(points.map((p) => p.sparsity))].sort((a, b) => a - b).map(fmtSparsity);

  const data = names.map((name, gi) => {
    const pts = [...groups.get(name).points].sort((a, b) => a.sparsity - b.sparsity || a.seed - b.seed);
    const method = groups.get(name).method;
    const ys = pts.map((p) => {
      const v = value(p);
      if (metric === "kappa" && v !== null && !Number.isFinite(v)) return cap;
      return v;
    });
    const trace = {
      type: "scatter",
      mode: "lines+markers",
      name,
      x: pts.map((p) => fmtSparsity(p.sparsity)),
      y: ys,
      customdata: pts.map((p) => p.run_id),
      text: pts.map((p) => hoverText(p, metric, attack)),
      hovertemplate: "%{text}<extra></extra>",
      marker: {
        color: groupColor(bySweep ? null : name, method, bySweep ? gi : -1),
        symbol: pts.map((p) => (metric === "kappa" && !Number.isFinite(p.kappa_median ?? 0) ? INF_SYMBOL : "circle")),
        size: pts.map((p) => (metric === "kappa" && !Number.isFinite(p.kappa_median ?? 0) ? 13 : 9)),
      },
      line: { color: groupColor(bySweep ? null : name, method, bySweep ? gi : -1), width: 2 },
      selected: { marker: { size: 14, opacity: 1 } },
      unselected: { marker: { opacity: 0.3 } },
    };
    if (metric === "kappa") {
      trace.error_y = {
        type: "data",
        symmetric: false,
        array: pts.map((p, i) => {
          const mx = p.kappa_max === null ? null : Number.isFinite(p.kappa_max) ? p.kappa_max : cap;
          return mx === null || ys[i] === null ? 0 : Math.max(0, mx - ys[i]);
        }),
        arrayminus: pts.map(() => 0),
        thickness: 1.5,
        width: 4,
      };
    }
    if (selected.size) {
      trace.selectedpoints = pts.map((p, i) => (selected.has(p.run_id) ? i : -1)).filter((i) => i >= 0);
    }
    return trace;
  });

  const m = METRICS[metric];
  const title = metric === "robust" ? `${m.title} (${attack === WORST_ATTACK ? "worst attack" : attack})` : m.title;
  const decades = [];
  for (let d = kAxis.low; d <= kAxis.topFinite; d += 1) decades.push(d);
  const yaxis = metric === "kappa"
    ? {
      title: { text: m.axis }, type: "log", zeroline: false, range: [kAxis.low, kAxis.high],
      tickvals: [...decades.map((d) => 10 ** d), cap],
      ticktext: [...decades.map((d) => (d < 5 ? String(10 ** d) : `1e${d}`)), INF_LABEL],
    }
    : { title: { text: m.axis }, range: [0, 1.02], tickformat: ".0%", zeroline: false };
  const band = metric === "kappa" ? {
    shapes: [{ type: "rect", xref: "paper", x0: 0, x1: 1, yref: "y", y0: 10 ** kAxis.bandFrom, y1: 10 ** kAxis.high,
      fillcolor: "#888", opacity: 0.15, line: { width: 0 }, layer: "below" }],
    annotations: [{ text: `κ = ${INF_LABEL} (rank-deficient)`, xref: "paper", x: 0.01, xanchor: "left",
      yref: "y", y: kAxis.high - 0.1, yanchor: "top", showarrow: false, font: { size: 11, color: "#444" } }],
  } : {};
  return {
    data,
    layout: {
      ...band,
      title: { text: title, font: { size: 14 } },
      xaxis: { title: { text: "sparsity" }, type: "category", categoryorder: "array", categoryarray: categories },
      yaxis,
      margin: { l: 60, r: 10, t: 40, b: 45 },
      legend: { orientation: "h", y: -0.22 },
      hovermode: "closest",
      dragmode: "select",
      uirevision: `sweep-${metric}`,
      height: 340,
    },
  };
}

function hoverText(p, metric, attack) {
  const lines = [
    `<b>${escapeHtml(p.key)}</b>`,
    `method ${p.method}, seed ${p.seed}`,
    `sparsity ${fmtSparsity(p.sparsity)} (actual ${fmtSparsity(p.sparsity_actual)})`,
  ];
  if (metric === "clean") lines.push(`clean accuracy ${fmtAcc(p.clean)}`);
  if (metric === "robust") {
    const v = robustValue(p, attack);
    lines.push(`robust accuracy ${fmtAcc(v)} (${attack === WORST_ATTACK ? "worst attack" : attack})`);
  }
  if (metric === "kappa") lines.push(`κ median ${fmtKappa(p.kappa_median)}, max ${fmtKappa(p.kappa_max)}`);
  if (p.flags.length) lines.push(`⚠ ${p.flags.join(", ")}`);
  lines.push("<i>click to open</i>");
  return lines.join("<br>");
}

function escapeHtml(s) {
  return String(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
}

/**
 * Rows of what the sweep charts show (one per point), for CSV/JSON export. Columns follow the
 * API's results CSV (run = run id, robust_<attack>, flags joined with ";"), plus key and sweep.
 */
export function pointRows(points) {
  return [...points]
    .sort((a, b) => a.method.localeCompare(b.method) || a.sparsity - b.sparsity || a.seed - b.seed)
    .map((p) => {
      const row = {
        run: p.run_id, key: p.key, sweep: p.sweep, method: p.method, sparsity: p.sparsity,
        sparsity_actual: p.sparsity_actual, seed: p.seed, clean_accuracy: p.clean,
      };
      for (const a of Object.keys(p.robust).sort()) row[`robust_${a}`] = p.robust[a];
      row.kappa_median = p.kappa_median;
      row.kappa_max = p.kappa_max;
      row.flags = p.flags.join(";");
      return row;
    });
}

// ---- run events: training curves, κ heatmap --------------------------------------------------

/**
 * Epoch events → one row per (stage, epoch), deduplicated (a resumed stage may repeat an
 * epoch: the last report wins), in training order, with a cumulative x position.
 * Stage lengths come from the events' `epochs` (or `stageEpochs`, e.g. from stage_started)
 * so x positions do not move while a run is live.
 */
export function epochSeries(events, stageEpochs = {}) {
  const byKey = new Map();
  const lengths = { ...stageEpochs };
  for (const e of events) {
    if (e.type !== "epoch") continue;
    byKey.set(`${e.stage}:${e.epoch}`, e);
    lengths[e.stage] = Math.max(lengths[e.stage] || 0, e.epochs || 0);
  }
  const offsets = {};
  let acc = 0;
  for (const s of STAGE_ORDER) {
    offsets[s] = acc;
    acc += lengths[s] || 0;
  }
  const rank = (s) => (STAGE_ORDER.includes(s) ? STAGE_ORDER.indexOf(s) : STAGE_ORDER.length);
  return [...byKey.values()]
    .sort((a, b) => rank(a.stage) - rank(b.stage) || a.epoch - b.epoch)
    .map((e) => ({
      stage: e.stage,
      epoch: e.epoch,
      x: (offsets[e.stage] ?? acc) + e.epoch,
      loss: num(e.loss),
      clean: num(e.clean_accuracy),
      robust: num(e.robust_accuracy),
      lr: num(e.lr),
      sparsity: num(e.sparsity),
      kappas: Object.fromEntries(Object.entries(e.condition_numbers || {}).map(([k, v]) => [k, num(v)])),
      penalties: e.penalties || {},
    }));
}

/** Whole-number epoch ticks: every epoch for short runs, Plotly's choice beyond 15. */
function epochTicks(series) {
  const last = Math.max(0, ...series.map((r) => r.x));
  return last <= 15 ? { dtick: 1, tick0: 0 } : { tickformat: "d" };
}

function epochHover(r, extra) {
  return `${r.stage} epoch ${r.epoch}<br>${extra}`;
}

// A legend under the plot, below the x-axis title (tick labels and title take about 45 px):
// a bottom margin with room for both, the legend's top 70 px under the axis. Spread it into a
// layout after its own margin.
const LEGEND_BELOW = {
  legend: { orientation: "h", x: 0, xanchor: "left", y: -0.38, yanchor: "top" },
  margin: { l: 60, r: 10, t: 40, b: 105 },
};

/**
 * Training curves of one run, one trace per stage.
 * metric "loss": the training loss; "accuracy": clean (solid) and robust (dashed) accuracy on
 * the monitor slice.
 */
export function trainingFigure(series, metric = "loss") {
  const stages = STAGE_ORDER.filter((s) => series.some((r) => r.stage === s));
  const data = [];
  for (const s of stages) {
    const rows = series.filter((r) => r.stage === s);
    const base = { type: "scatter", mode: "lines+markers", x: rows.map((r) => r.x), hovertemplate: "%{text}<extra></extra>" };
    if (metric === "loss") {
      data.push({ ...base, name: s, y: rows.map((r) => r.loss), line: { color: STAGE_COLORS[s] },
        text: rows.map((r) => epochHover(r, `loss ${r.loss?.toFixed(4)}`)) });
    } else {
      data.push({ ...base, name: `${s} clean`, y: rows.map((r) => r.clean), line: { color: STAGE_COLORS[s] },
        text: rows.map((r) => epochHover(r, `clean ${fmtAcc(r.clean)}`)) });
      data.push({ ...base, name: `${s} robust`, y: rows.map((r) => r.robust), line: { color: STAGE_COLORS[s], dash: "dash" },
        text: rows.map((r) => epochHover(r, `robust ${fmtAcc(r.robust)}`)) });
    }
  }
  return {
    data,
    layout: {
      title: { text: metric === "loss" ? "Training loss" : "Monitor accuracy (clean solid, robust dashed)", font: { size: 14 } },
      xaxis: { title: { text: "epoch (all stages)" }, rangemode: "tozero", ...epochTicks(series) },
      yaxis: metric === "loss" ? { title: { text: "loss" } } : { title: { text: "accuracy" }, range: [0, 1.02], tickformat: ".0%" },
      margin: { l: 60, r: 10, t: 40, b: 45 },
      ...LEGEND_BELOW,
      uirevision: `train-${metric}`,
      height: 320,
    },
  };
}

/** Per-layer κ over epochs: heatmap of log10 κ (∞ drawn at the top of the scale, labelled ∞). */
export function kappaHeatmapFigure(series) {
  const layers = [];
  for (const r of series) for (const k of Object.keys(r.kappas)) if (!layers.includes(k)) layers.push(k);
  const finite = [];
  for (const r of series) for (const v of Object.values(r.kappas)) if (Number.isFinite(v) && v > 0) finite.push(Math.log10(v));
  const top = finite.length ? Math.max(...finite) + 1 : 6;
  const z = layers.map((l) => series.map((r) => {
    const v = r.kappas[l];
    if (v === undefined || v === null || Number.isNaN(v)) return null;
    return Number.isFinite(v) ? Math.log10(Math.max(v, 1)) : top;
  }));
  const text = layers.map((l) => series.map((r) => `${l}, ${r.stage} epoch ${r.epoch}<br>κ ${fmtKappa(r.kappas[l])}`));
  return {
    data: [{
      type: "heatmap",
      x: series.map((r) => r.x),
      y: layers,
      z,
      text,
      hovertemplate: "%{text}<extra></extra>",
      colorscale: "Viridis",
      colorbar: { title: { text: "log10 κ" } },
    }],
    layout: {
      title: { text: "Per-layer condition number over epochs", font: { size: 14 } },
      xaxis: { title: { text: "epoch (all stages)" }, ...epochTicks(series) },
      yaxis: { automargin: true, type: "category" },
      margin: { l: 80, r: 10, t: 40, b: 45 },
      uirevision: "kappa-heatmap",
      height: 320,
    },
  };
}

/** Singular values of each layer (descending), log scale. spectra: LayerSpectrum[]. */
export function spectraFigure(spectra) {
  const data = (spectra || []).map((s, i) => ({
    type: "scatter",
    mode: "lines",
    name: `${s.layer} (κ ${fmtKappa(s.condition_number)})`,
    x: s.singular_values.map((_, j) => j + 1),
    y: s.singular_values.map(num),
    line: { color: EXTRA_COLORS[i % EXTRA_COLORS.length] },
    hovertemplate: `${escapeHtml(s.layer)} ${s.shape[0]}×${s.shape[1]}, sparsity ${fmtSparsity(s.sparsity)}<br>σ%{x} = %{y:.4g}<extra></extra>`,
  }));
  return {
    data,
    layout: {
      title: { text: "Singular-value spectra per layer", font: { size: 14 } },
      xaxis: { title: { text: "index (largest first)" } },
      yaxis: { title: { text: "singular value" }, type: "log" },
      margin: { l: 60, r: 10, t: 40, b: 45 },
      ...LEGEND_BELOW,
      uirevision: "spectra",
      height: 320,
    },
  };
}

/** Security curves: curves = [{name, points: [[epsilon, accuracy], ...]}]. */
export function securityFigure(curves) {
  const data = curves.map((c, i) => ({
    type: "scatter",
    mode: "lines+markers",
    name: c.name,
    x: c.points.map((p) => num(p[0])),
    y: c.points.map((p) => num(p[1])),
    line: { color: c.color || EXTRA_COLORS[i % EXTRA_COLORS.length] },
    hovertemplate: `${escapeHtml(c.name)}<br>ε %{x:.4g}: %{y:.1%}<extra></extra>`,
  }));
  return {
    data,
    layout: {
      title: { text: "Security curve (PGD accuracy against ε)", font: { size: 14 } },
      xaxis: { title: { text: "ε (L∞)" }, rangemode: "tozero" },
      yaxis: { title: { text: "robust accuracy" }, range: [0, 1.02], tickformat: ".0%" },
      margin: { l: 60, r: 10, t: 40, b: 45 },
      ...LEGEND_BELOW,
      uirevision: "security",
      height: 320,
    },
  };
}

/**
 * Training curves of several runs overlaid (compare view), one trace per run.
 * runs: [{name, series}] with series from epochSeries; metric: loss | clean | robust.
 */
export function compareTrainingFigure(runs, metric = "robust") {
  const label = { loss: "training loss", clean: "clean accuracy (monitor)", robust: "robust accuracy (monitor)" }[metric];
  return {
    data: runs.map((r, i) => ({
      type: "scatter",
      mode: "lines+markers",
      name: r.name,
      x: r.series.map((e) => e.x),
      y: r.series.map((e) => e[metric]),
      text: r.series.map((e) => `${escapeHtml(r.name)}<br>${e.stage} epoch ${e.epoch}`),
      hovertemplate: "%{text}<br>%{y:.4g}<extra></extra>",
      line: { color: EXTRA_COLORS[i % EXTRA_COLORS.length] },
    })),
    layout: {
      title: { text: `Training curves: ${label}`, font: { size: 14 } },
      xaxis: { title: { text: "epoch (all stages)" }, ...epochTicks(runs.flatMap((r) => r.series)) },
      yaxis: metric === "loss" ? { title: { text: "loss" } } : { title: { text: "accuracy" }, range: [0, 1.02], tickformat: ".0%" },
      margin: { l: 60, r: 10, t: 40, b: 45 },
      ...LEGEND_BELOW,
      uirevision: `compare-${metric}`,
      height: 340,
    },
  };
}

/**
 * The figure, with `text` written across it when it has no point to show (an empty chart
 * says why it is empty, e.g. "no run evaluated yet"); unchanged otherwise.
 */
export function withEmptyNote(figure, text) {
  if (pointCount(figure) > 0) return figure;
  const note = { text, xref: "paper", yref: "paper", x: 0.5, y: 0.5, showarrow: false, font: { size: 13, color: "#6b7280" } };
  return { ...figure, layout: { ...figure.layout, annotations: [...(figure.layout.annotations || []), note] } };
}

/** Number of plotted (non-null) points in a figure's traces: handy for views and tests. */
export function pointCount(figure) {
  let n = 0;
  for (const t of figure.data) for (const y of t.y || []) if (y !== null && y !== undefined) n += 1;
  return n;
}
