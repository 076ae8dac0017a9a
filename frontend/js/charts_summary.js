// Pure chart code for seed statistics and grids (issue #12): the API's summary (GET
// /sweeps/{id}/summary) in, Plotly figures ({data, layout}) out. No DOM, no network.
//
// Statistics are computed by the API (DESIGN §3.5, "Across seeds"): accuracies as the mean with
// a 95 % Student-t interval over seeds, κ as the geometric mean of the runs' median κ with its
// min and max (∞ if any run's is ∞), a method against a baseline as the paired-by-seed
// difference with its interval and a verdict. This module only draws them.

import {
  num, fmtAcc, fmtKappa, fmtSparsity, kappaAxis, INF_LABEL, INF_SYMBOL, METHOD_COLORS, EXTRA_COLORS, methodRank,
  robustValue,
} from "./charts.js";

// A legend under the plot, below the x-axis title (placed in the figure's own coordinates).
const LEGEND_BELOW = { orientation: "h", x: 0, xanchor: "left", yref: "container", y: 0, yanchor: "bottom" };
// Fixed colours are mid greys or saturated hues that read on the light and the dark theme; text
// has no colour of its own, so it takes the theme's font colour (plot.themed).

/** Colours of the difference verdicts: one per value of the API's Verdict (a test keeps them the same). */
export const VERDICT_COLORS = { better: "#16a34a", worse: "#dc2626", tie: "#6b7280", insufficient: "#d1d5db" };
export const VERDICTS = Object.keys(VERDICT_COLORS);

// ---- the summary, normalised -----------------------------------------------------------------

function stat(s) {
  if (!s) return { mean: null, lo: null, hi: null };
  return { mean: num(s.mean), lo: num(s.ci_low), hi: num(s.ci_high) };
}

/** Short name of a grid path: "constraints.lambda_cnc" → "lambda_cnc". */
export function knobName(path) {
  return String(path).split(".").pop();
}

/** Label of a group: its method and its grid values, e.g. "tscnc · lambda_cnc=0.1". */
export function groupLabel(method, params = {}) {
  const bits = Object.keys(params).sort().map((k) => `${knobName(k)}=${params[k]}`);
  return [method, ...bits].filter((x) => x !== null && x !== undefined && x !== "").join(" · ");
}

/**
 * The API's summary (SummaryPublic) → one row per (group, sparsity):
 * {label, key, method, params, sweep, sparsity, n, runIds, clean: {mean, lo, hi},
 *  robust: {mean, lo, hi}, kappa: {gmean, min, max}, diff: {mean, lo, hi, n, verdict} | null}.
 * A group's `values` hold its group_by keys: "method", "sweep" and grid paths (→ params).
 * `diff` is the difference of robust accuracy to the baseline. Infinite κ arrives as
 * "Infinity" and becomes Infinity.
 */
export function summaryRows(summary, sweepNames = {}) {
  return (summary?.groups || []).map((g) => {
    const values = g.values || {};
    const params = Object.fromEntries(Object.entries(values).filter(([k]) => k !== "method" && k !== "sweep"));
    const k = g.kappa || {};
    const d = g.difference?.robust_accuracy;
    const sweep = values.sweep ?? null;
    const method = values.method ?? null;
    const label = [sweep !== null ? sweepNames[sweep] || sweep : null, groupLabel(method, params)].filter(Boolean).join(" · ") || "all";
    return {
      label,
      key: g.key,
      method,
      params,
      sweep,
      sparsity: num(g.sparsity),
      n: g.n ?? 0,
      runIds: g.run_ids || [],
      clean: stat(g.clean_accuracy),
      robust: stat(g.robust_accuracy),
      kappa: { gmean: num(k.geo_mean), min: num(k.min), max: num(k.max) },
      diff: d ? { mean: num(d.mean), lo: num(d.ci_low), hi: num(d.ci_high), n: d.n ?? 0, verdict: d.verdict } : null,
    };
  });
}

/** The grid paths that vary in the rows (sorted): the knobs for parcoords and the heatmap. */
export function gridKnobs(rows) {
  const values = new Map();
  for (const r of rows) {
    for (const [k, v] of Object.entries(r.params)) {
      if (!values.has(k)) values.set(k, new Set());
      values.get(k).add(JSON.stringify(v));
    }
  }
  return [...values.keys()].sort();
}

function sortLabels(rows) {
  const first = new Map();
  for (const r of rows) if (!first.has(r.label)) first.set(r.label, r);
  return [...first.values()]
    .sort((a, b) => methodRank(a.method) - methodRank(b.method) || a.label.localeCompare(b.label, undefined, { numeric: true }))
    .map((r) => r.label);
}

/** Colour of a group: its method's colour when it is the only group of that method, else by position. */
function colorsFor(labels, rows) {
  const methodOf = new Map(rows.map((r) => [r.label, r.method]));
  const perMethod = new Map();
  for (const l of labels) perMethod.set(methodOf.get(l), (perMethod.get(methodOf.get(l)) || 0) + 1);
  return new Map(labels.map((l, i) => {
    const m = methodOf.get(l);
    return [l, perMethod.get(m) === 1 && METHOD_COLORS[m] ? METHOD_COLORS[m] : EXTRA_COLORS[i % EXTRA_COLORS.length]];
  }));
}

/** "#rrggbb" → "rgba(r,g,b,alpha)" for translucent bands. */
export function translucent(hex, alpha = 0.18) {
  const m = /^#([0-9a-f]{2})([0-9a-f]{2})([0-9a-f]{2})$/i.exec(hex || "");
  if (!m) return `rgba(128,128,128,${alpha})`;
  return `rgba(${parseInt(m[1], 16)},${parseInt(m[2], 16)},${parseInt(m[3], 16)},${alpha})`;
}

/**
 * A sparsity axis on which groups stand side by side: sparsities are evenly spaced (index 0, 1,
 * ...; labelled by their value) and group gi of n is shifted by (gi − (n − 1)/2)·w, w = min(0.15,
 * 0.6/(n − 1)), so intervals of several groups at one sparsity do not hide one another.
 * Example: sparsities [0.5, 0.9], 2 groups → group 1 at 0.5 is drawn at x = 0.075.
 * Returns {x(sparsity, gi), axis (Plotly x-axis ticks and range)}.
 */
export function dodgedAxis(sparsities, groups) {
  const cats = [...new Set(sparsities.filter((v) => v !== null))].sort((a, b) => a - b);
  const w = groups > 1 ? Math.min(0.15, 0.6 / (groups - 1)) : 0;
  return {
    x: (sparsity, gi) => cats.indexOf(sparsity) + (gi - (groups - 1) / 2) * w,
    axis: { tickvals: cats.map((_, i) => i), ticktext: cats.map(fmtSparsity), range: [-0.5, Math.max(cats.length, 1) - 0.5],
      showgrid: false, zeroline: false },
  };
}

// ---- bands: mean with its 95 % interval, κ geometric mean with min–max -----------------------

const BAND_TITLES = {
  clean: "Clean accuracy: mean, 95 % interval over seeds",
  robust: "Robust accuracy: mean, 95 % interval over seeds",
  kappa: "Condition number κ: geometric mean of the runs' median, min–max over seeds",
};

/**
 * Figure of one metric against sparsity with seeds aggregated, per group three traces: the
 * band's lower edge (invisible), its upper edge filled down to the lower one, and the centre
 * line (mean; for κ the geometric mean). For accuracies the band is the 95 % t-interval (no
 * band where n < 2: the edges sit on the mean); for κ it is the seeds' min–max, and ∞ is drawn
 * on the labelled ∞ band (kappaAxis). opts.metric: clean | robust | kappa;
 * opts.seeds: points of charts.sweepPoints to draw as individual runs (the "show seeds"
 * toggle), each drawn with the group whose run_ids hold it; opts.attack: the attack
 * of those points' robust value. Each seed point's customdata is its run id.
 * Example: rows of tscnc at 0.5 with mean 0.6, interval [0.5, 0.7] → a tscnc line through 0.6
 * with a band from 0.5 to 0.7.
 */
export function bandFigure(rows, opts = {}) {
  const metric = opts.metric || "robust";
  const isK = metric === "kappa";
  const seeds = opts.seeds || [];
  const centre = (r) => (isK ? r.kappa.gmean : r[metric].mean);
  const low = (r) => (isK ? r.kappa.min : r[metric].lo ?? r[metric].mean);
  const high = (r) => (isK ? r.kappa.max : r[metric].hi ?? r[metric].mean);
  const seedValue = (p) => (metric === "clean" ? p.clean : metric === "robust" ? robustValue(p, opts.attack || "worst") : p.kappa_median);

  const kAxis = kappaAxis(isK ? [...rows.flatMap((r) => [r.kappa.gmean, r.kappa.min, r.kappa.max]), ...seeds.map((p) => p.kappa_median)] : []);
  const cap = 10 ** kAxis.infAt;
  const y = (v) => (v === null || v === undefined ? null : isK && !Number.isFinite(v) ? cap : v);

  const labels = sortLabels(rows);
  const colors = colorsFor(labels, rows);
  const ax = dodgedAxis([...rows.map((r) => r.sparsity), ...(opts.showSeeds ? seeds.map((p) => p.sparsity) : [])], labels.length);
  const data = [];
  for (const [gi, label] of labels.entries()) {
    const rs = rows.filter((r) => r.label === label && r.sparsity !== null).sort((a, b) => a.sparsity - b.sparsity);
    const x = rs.map((r) => ax.x(r.sparsity, gi));
    const color = colors.get(label);
    const common = { type: "scatter", x, legendgroup: label, hoverinfo: "skip", showlegend: false };
    data.push({ ...common, name: `${label} low`, mode: "lines", y: rs.map((r) => y(low(r))), line: { width: 0, color } });
    data.push({ ...common, name: `${label} ${isK ? "min–max" : "95 % interval"}`, mode: "lines", y: rs.map((r) => y(high(r))),
      fill: "tonexty", fillcolor: translucent(color), line: { width: 0, color } });
    const inf = rs.map((r) => isK && r.kappa.gmean !== null && !Number.isFinite(r.kappa.gmean));
    // A band needs two sparsities to have an area: a lone point shows its interval as a bar.
    const bar = rs.length === 1 ? {
      error_y: { type: "data", symmetric: false, color, thickness: 2, width: 6,
        array: rs.map((r) => (y(high(r)) === null || y(centre(r)) === null ? 0 : y(high(r)) - y(centre(r)))),
        arrayminus: rs.map((r) => (y(low(r)) === null || y(centre(r)) === null ? 0 : y(centre(r)) - y(low(r)))) },
    } : {};
    data.push({
      ...bar,
      type: "scatter", mode: "lines+markers", name: label, legendgroup: label, x, y: rs.map((r) => y(centre(r))),
      line: { color, width: 2 },
      marker: { color, symbol: inf.map((i) => (i ? INF_SYMBOL : "circle")), size: inf.map((i) => (i ? 13 : 8)) },
      text: rs.map((r) => bandHover(r, metric)),
      hovertemplate: "%{text}<extra></extra>",
    });
    if (opts.showSeeds) {
      const ids = new Set(rs.flatMap((r) => r.runIds));
      const pts = seeds.filter((p) => ids.has(p.run_id) && seedValue(p) !== null)
        .sort((a, b) => a.sparsity - b.sparsity || a.seed - b.seed);
      data.push({
        type: "scatter", mode: "markers", name: `${label} seeds`, legendgroup: label, showlegend: false,
        x: pts.map((p) => ax.x(p.sparsity, gi)),
        y: pts.map((p) => y(seedValue(p))),
        customdata: pts.map((p) => p.run_id),
        text: pts.map((p) => `${p.key}<br>seed ${p.seed}: ${isK ? `κ ${fmtKappa(p.kappa_median)}` : fmtAcc(seedValue(p))}<br><i>click to open</i>`),
        hovertemplate: "%{text}<extra></extra>",
        marker: { color, size: 7, opacity: 0.75, symbol: pts.map((p) => (isK && !Number.isFinite(p.kappa_median) ? INF_SYMBOL : "circle-open")),
          line: { width: 1.5, color } },
      });
    }
  }

  const decades = [];
  for (let d = kAxis.low; d <= kAxis.topFinite; d += 1) decades.push(d);
  const yaxis = isK
    ? {
      title: { text: "κ (log scale)" }, type: "log", zeroline: false, range: [kAxis.low, kAxis.high],
      tickvals: [...decades.map((d) => 10 ** d), cap],
      ticktext: [...decades.map((d) => (d < 5 ? String(10 ** d) : `1e${d}`)), INF_LABEL],
    }
    : { title: { text: metric === "clean" ? "clean accuracy" : "robust accuracy" }, range: [0, 1.02], tickformat: ".0%", zeroline: false };
  const band = isK ? {
    shapes: [{ type: "rect", xref: "paper", x0: 0, x1: 1, yref: "y", y0: 10 ** kAxis.bandFrom, y1: 10 ** kAxis.high,
      fillcolor: "#888", opacity: 0.15, line: { width: 0 }, layer: "below" }],
    annotations: [{ text: `κ = ${INF_LABEL} (rank-deficient)`, xref: "paper", x: 0.01, xanchor: "left",
      yref: "y", y: kAxis.high - 0.1, yanchor: "top", showarrow: false, font: { size: 11 } }],
  } : {};
  const title = metric === "robust" && opts.attackLabel ? `${BAND_TITLES.robust} (${opts.attackLabel})` : BAND_TITLES[metric];
  return {
    data,
    layout: {
      ...band,
      title: { text: title, font: { size: 13 } },
      xaxis: { title: { text: "sparsity", standoff: 6 }, automargin: true, ...ax.axis },
      yaxis,
      margin: { l: 60, r: 10, t: 40, b: 45 },
      legend: LEGEND_BELOW,
      hovermode: "closest",
      uirevision: `band-${metric}`,
      height: 340,
    },
  };
}

function bandHover(r, metric) {
  const lines = [`<b>${escapeHtml(r.label)}</b>`, `sparsity ${fmtSparsity(r.sparsity)}, n = ${r.n}`];
  if (metric === "kappa") {
    lines.push(`κ geometric mean ${fmtKappa(r.kappa.gmean)}`, `min ${fmtKappa(r.kappa.min)}, max ${fmtKappa(r.kappa.max)}`);
  } else {
    const s = r[metric];
    lines.push(`mean ${fmtAcc(s.mean)}`, s.lo === null ? "no interval (n < 2)" : `95 % interval ${fmtAcc(s.lo)} – ${fmtAcc(s.hi)}`);
  }
  return lines.join("<br>");
}

function escapeHtml(s) {
  return String(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" }[c]));
}

// ---- difference to a baseline ----------------------------------------------------------------

/**
 * Δ robust accuracy against the baseline vs sparsity: per group (the baseline's own rows have
 * no difference and are left out) the paired mean difference with its 95 % interval as an
 * error bar, each point coloured by its verdict (VERDICT_COLORS), and a zero line. A point with
 * no interval (fewer than 2 pairs) has no bar. Example: mean 0.05, interval [0.02, 0.08],
 * verdict "better" → a green point at +5 % with a bar from +2 % to +8 %.
 */
export function differenceFigure(rows, opts = {}) {
  const withDiff = rows.filter((r) => r.diff && r.sparsity !== null);
  const labels = sortLabels(withDiff);
  const colors = colorsFor(labels, withDiff);
  const ax = dodgedAxis(withDiff.map((r) => r.sparsity), labels.length);
  const data = labels.map((label, gi) => {
    const rs = withDiff.filter((r) => r.label === label).sort((a, b) => a.sparsity - b.sparsity);
    return {
      type: "scatter",
      mode: "lines+markers",
      name: label,
      x: rs.map((r) => ax.x(r.sparsity, gi)),
      y: rs.map((r) => r.diff.mean),
      error_y: {
        type: "data", symmetric: false,
        array: rs.map((r) => (r.diff.hi === null || r.diff.mean === null ? 0 : r.diff.hi - r.diff.mean)),
        arrayminus: rs.map((r) => (r.diff.lo === null || r.diff.mean === null ? 0 : r.diff.mean - r.diff.lo)),
        thickness: 1.5, width: 5, color: colors.get(label),
      },
      line: { color: colors.get(label), width: 1, dash: "dot" },
      marker: {
        size: 12,
        color: rs.map((r) => VERDICT_COLORS[r.diff.verdict] || VERDICT_COLORS.insufficient),
        line: { width: 2, color: colors.get(label) },
      },
      customdata: rs.map((r) => r.diff.verdict),
      text: rs.map((r) => diffHover(r, opts.baseline)),
      hovertemplate: "%{text}<extra></extra>",
    };
  });
  const verdictNotes = VERDICTS.map((v, i) => ({
    text: `● ${v}`, xref: "paper", x: 1, xanchor: "right", yref: "paper", y: 1 - 0.07 * i, yanchor: "top",
    showarrow: false, font: { size: 11, color: v === "insufficient" ? "#9ca3af" : VERDICT_COLORS[v] },
  }));
  return {
    data,
    layout: {
      title: { text: `Δ robust accuracy vs ${opts.baseline || "baseline"} (paired by seed, 95 % interval)`, font: { size: 13 } },
      xaxis: { title: { text: "sparsity", standoff: 6 }, automargin: true, ...ax.axis },
      yaxis: { title: { text: "Δ robust accuracy" }, tickformat: "+.0%", zeroline: false },
      shapes: [{ type: "line", xref: "paper", x0: 0, x1: 1, yref: "y", y0: 0, y1: 0, line: { color: "#6b7280", width: 1.5, dash: "dash" } }],
      annotations: verdictNotes,
      margin: { l: 60, r: 10, t: 40, b: 45 },
      legend: LEGEND_BELOW,
      hovermode: "closest",
      uirevision: "difference",
      height: 340,
    },
  };
}

function diffHover(r, baseline) {
  const d = r.diff;
  const pct = (v) => (v === null ? "–" : `${v >= 0 ? "+" : ""}${(100 * v).toFixed(1)}%`);
  return [`<b>${escapeHtml(r.label)}</b> vs ${escapeHtml(baseline || "baseline")}`, `sparsity ${fmtSparsity(r.sparsity)}, ${d.n} pair(s)`,
    `Δ ${pct(d.mean)}`, d.lo === null ? "no interval (fewer than 2 pairs)" : `95 % interval ${pct(d.lo)} … ${pct(d.hi)}`,
    `verdict: <b>${d.verdict}</b>`].join("<br>");
}

// ---- grids: parallel coordinates and heatmap --------------------------------------------------

/** A numeric or categorical parallel-coordinates axis of `values` (one per line). */
function dimension(label, values) {
  const numeric = values.every((v) => typeof v === "number" && Number.isFinite(v));
  if (numeric) return { label, values };
  const cats = [...new Set(values.map(String))].sort((a, b) => a.localeCompare(b, undefined, { numeric: true }));
  return { label, values: values.map((v) => cats.indexOf(String(v))), tickvals: cats.map((_, i) => i), ticktext: cats, range: [0, Math.max(1, cats.length - 1)] };
}

/**
 * The axes of the parallel-coordinates chart, one value per (group, sparsity) row: the method
 * when several are shown, a dimension per grid knob (opts.knobs, default gridKnobs), sparsity,
 * robust accuracy (mean) and log10 κ (geometric mean; ∞ drawn at the top, ticked "∞").
 * Categorical values (methods, enumerated knobs, "–" for a group without the knob) become
 * indices with their names as tick labels. Rows without a robust mean are left out.
 * Returns {rows, dims: [{label, values, range?, tickvals?, ticktext?}]}.
 */
export function parcoordsDimensions(rows, opts = {}) {
  const rs = rows.filter((r) => r.robust.mean !== null && r.sparsity !== null);
  const knobs = opts.knobs || gridKnobs(rs);
  const dims = [];
  if (new Set(rs.map((r) => r.method)).size > 1) dims.push(dimension("method", rs.map((r) => r.method)));
  for (const k of knobs) dims.push(dimension(knobName(k), rs.map((r) => (k in r.params ? r.params[k] : "–"))));
  dims.push({ label: "sparsity", values: rs.map((r) => r.sparsity) });
  dims.push({ label: "robust accuracy", values: rs.map((r) => r.robust.mean), range: [0, 1] });
  const kAxis = kappaAxis(rs.map((r) => r.kappa.gmean));
  const logs = rs.map((r) => {
    const k = r.kappa.gmean;
    if (k === null) return null;
    return Number.isFinite(k) ? Math.log10(Math.max(k, 1)) : kAxis.infAt;
  });
  const ticks = [];
  for (let d = kAxis.low; d <= kAxis.topFinite; d += 1) ticks.push(d);
  dims.push({ label: "log10 κ", values: logs, range: [kAxis.low, kAxis.infAt],
    tickvals: [...ticks, kAxis.infAt], ticktext: [...ticks.map(String), INF_LABEL] });
  return { rows: rs, dims };
}

const VIRIDIS = [[0, [68, 1, 84]], [0.25, [59, 82, 139]], [0.5, [33, 145, 140]], [0.75, [94, 201, 98]], [1, [253, 231, 37]]];

/** The Viridis colour of t in [0, 1] (linear between five stops), as "rgb(r,g,b)". */
export function viridis(t) {
  const x = Math.min(1, Math.max(0, t ?? 0));
  let i = 0;
  while (i < VIRIDIS.length - 2 && x > VIRIDIS[i + 1][0]) i += 1;
  const [t0, c0] = VIRIDIS[i];
  const [t1, c1] = VIRIDIS[i + 1];
  const f = (x - t0) / (t1 - t0);
  return `rgb(${c0.map((c, j) => Math.round(c + f * (c1[j] - c))).join(",")})`;
}

/** A dimension's value scaled to [0, 1] on its axis (its range, else its values' min–max). */
function scaled(dim, v) {
  if (v === null || v === undefined) return null;
  const finite = dim.values.filter((x) => x !== null);
  const [lo, hi] = dim.range || [Math.min(...finite), Math.max(...finite)];
  return hi > lo ? (v - lo) / (hi - lo) : 0.5;
}

function tickLabel(v) {
  return typeof v === "number" ? String(Number(v.toPrecision(4))) : String(v);
}

/**
 * Parallel coordinates (the axes of parcoordsDimensions) drawn as an SVG chart: one line per
 * (group, sparsity) across the axes, coloured by its robust accuracy (Viridis, 0 → 100 %),
 * each axis a vertical rule with its tick labels; hovering a line names its group and values.
 * (Plotly's own `parcoords` trace renders with WebGL code generated at run time, which the
 * dashboard's Content-Security-Policy, script-src 'self' without 'unsafe-eval', forbids.)
 * layout.meta.dimensions holds the axes for exports and tests.
 */
export function parcoordsFigure(rows, opts = {}) {
  const { rows: rs, dims } = parcoordsDimensions(rows, opts);
  const xs = dims.map((_, i) => i);
  const robustDim = dims.find((d) => d.label === "robust accuracy");
  const data = rs.map((r, j) => ({
    type: "scatter",
    mode: "lines+markers",
    name: `${r.label} · s=${fmtSparsity(r.sparsity)}`,
    x: xs,
    y: dims.map((d) => scaled(d, d.values[j])),
    line: { color: viridis(robustDim.values[j]), width: 2.5 },
    marker: { size: 5, color: viridis(robustDim.values[j]) },
    text: dims.map(() => [`<b>${escapeHtml(r.label)}</b>`, ...dims.map((d) => `${d.label}: ${d.ticktext && d.label !== "log10 κ"
      ? d.ticktext[d.values[j]] : d.label === "log10 κ" ? fmtKappa(r.kappa.gmean) : tickLabel(d.values[j])}`)].join("<br>")),
    hovertemplate: "%{text}<extra></extra>",
    showlegend: false,
  }));
  // The colour bar: an invisible marker trace carrying the scale.
  data.push({ type: "scatter", mode: "markers", x: [0], y: [-10], hoverinfo: "skip", showlegend: false, name: "colour scale",
    marker: { color: [0], cmin: 0, cmax: 1, colorscale: "Viridis", showscale: true, opacity: 0,
      colorbar: { title: { text: "robust" }, tickformat: ".0%", len: 0.8 } } });
  const shapes = xs.map((x) => ({ type: "line", xref: "x", yref: "y", x0: x, x1: x, y0: 0, y1: 1, line: { color: "#9ca3af", width: 1.5 }, layer: "below" }));
  const annotations = [];
  dims.forEach((d, i) => {
    let ticks;
    if (d.tickvals) ticks = d.tickvals.map((v, k) => [scaled(d, v), d.ticktext[k]]);
    else {
      const finite = d.values.filter((v) => v !== null);
      const [lo, hi] = d.range || [Math.min(...finite), Math.max(...finite)];
      const fmt = d.label === "robust accuracy" ? (v) => `${Math.round(100 * v)}%` : tickLabel;
      ticks = lo === hi ? [[0.5, fmt(lo)]] : [[0, fmt(lo)], [1, fmt(hi)]];
    }
    for (const [y, text] of ticks) {
      annotations.push({ x: i, y, xref: "x", yref: "y", text: escapeHtml(text), showarrow: false, xanchor: "right", xshift: -4, font: { size: 10 } });
    }
  });
  return {
    data,
    layout: {
      title: { text: "Grid: knobs and sparsity against robust accuracy and κ (parallel coordinates)", font: { size: 13 } },
      xaxis: { tickvals: xs, ticktext: dims.map((d) => d.label), side: "top", range: [-0.5, Math.max(1, dims.length - 1) + 0.3],
        showgrid: false, zeroline: false, fixedrange: true },
      yaxis: { range: [-0.06, 1.06], visible: false, fixedrange: true },
      shapes,
      annotations,
      meta: { dimensions: dims },
      margin: { l: 30, r: 10, t: 70, b: 20 },
      hovermode: "closest",
      uirevision: "parcoords",
      height: 380,
    },
  };
}

/**
 * The heatmap's matrix: robust accuracy (mean over seeds) over two knobs at one sparsity,
 * for one method (opts.method, optional). Rows of the matrix are the y knob's values, columns
 * the x knob's (both sorted); a cell several groups fall into (other knobs differ) holds the
 * mean of their means, and `count` says how many; an empty cell is null.
 * Returns {x, y, z, count}.
 */
export function heatmapMatrix(rows, { x, y, sparsity, method } = {}) {
  const rs = rows.filter((r) => r.sparsity === sparsity && r.robust.mean !== null
    && (method === undefined || method === null || r.method === method) && x in r.params && y in r.params);
  const sorted = (k) => [...new Set(rs.map((r) => JSON.stringify(r.params[k])))].map((s) => JSON.parse(s))
    .sort((a, b) => (typeof a === "number" && typeof b === "number" ? a - b : String(a).localeCompare(String(b))));
  const xs = sorted(x);
  const ys = sorted(y);
  const key = (v) => JSON.stringify(v);
  const sum = ys.map(() => xs.map(() => 0));
  const count = ys.map(() => xs.map(() => 0));
  for (const r of rs) {
    const i = ys.findIndex((v) => key(v) === key(r.params[y]));
    const j = xs.findIndex((v) => key(v) === key(r.params[x]));
    sum[i][j] += r.robust.mean;
    count[i][j] += 1;
  }
  return { x: xs, y: ys, z: sum.map((row, i) => row.map((s, j) => (count[i][j] ? s / count[i][j] : null))), count };
}

/** Heatmap figure of heatmapMatrix (opts as there), the value written in each cell. */
export function heatmapFigure(rows, opts = {}) {
  const m = heatmapMatrix(rows, opts);
  const xs = m.x.map(String);
  const ys = m.y.map(String);
  return {
    data: [{
      type: "heatmap", x: xs, y: ys, z: m.z, zmin: 0, zmax: 1, colorscale: "Viridis",
      colorbar: { title: { text: "robust" }, tickformat: ".0%" },
      text: m.z.map((row, i) => row.map((v, j) => `${knobName(opts.y)}=${ys[i]}, ${knobName(opts.x)}=${xs[j]}<br>robust ${fmtAcc(v)}` +
        (m.count[i][j] > 1 ? ` (mean of ${m.count[i][j]} groups)` : ""))),
      texttemplate: "%{z:.0%}",
      hovertemplate: "%{text}<extra></extra>",
    }],
    layout: {
      title: { text: `Robust accuracy over ${knobName(opts.x)} × ${knobName(opts.y)} at sparsity ${fmtSparsity(opts.sparsity)}` +
        (opts.method ? ` (${opts.method})` : ""), font: { size: 13 } },
      xaxis: { title: { text: knobName(opts.x) }, type: "category" },
      yaxis: { title: { text: knobName(opts.y) }, type: "category" },
      margin: { l: 70, r: 10, t: 40, b: 45 },
      uirevision: "heatmap",
      height: 340,
    },
  };
}

// ---- export ----------------------------------------------------------------------------------

/**
 * The summary as flat rows for CSV/JSON (one per group and sparsity): method, one column per
 * grid path, sparsity, n, clean/robust mean and interval, κ geometric mean/min/max, and the
 * difference columns when a baseline was chosen.
 */
export function summaryExportRows(rows) {
  const knobs = gridKnobs(rows);
  const anyDiff = rows.some((r) => r.diff);
  return rows.map((r) => {
    const o = { group: r.label, method: r.method };
    for (const k of knobs) o[k] = k in r.params ? r.params[k] : null;
    Object.assign(o, {
      sparsity: r.sparsity, n: r.n,
      clean_mean: r.clean.mean, clean_ci_low: r.clean.lo, clean_ci_high: r.clean.hi,
      robust_mean: r.robust.mean, robust_ci_low: r.robust.lo, robust_ci_high: r.robust.hi,
      kappa_geomean: r.kappa.gmean, kappa_min: r.kappa.min, kappa_max: r.kappa.max,
    });
    if (anyDiff) {
      Object.assign(o, { diff_mean: r.diff?.mean ?? null, diff_ci_low: r.diff?.lo ?? null, diff_ci_high: r.diff?.hi ?? null,
        diff_n: r.diff?.n ?? null, verdict: r.diff?.verdict ?? null });
    }
    return o;
  });
}
