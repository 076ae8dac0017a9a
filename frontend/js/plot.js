// The impure side of the charts: draws the pure figures of charts.js with Plotly and puts
// export buttons (PNG, CSV, JSON) around them. Plotly.js (4.8 MB) is loaded on the first
// draw, so views without charts (tables, form, queue) do not wait for it.

import { PLOTLY_JS } from "./api.js";
import { h, download } from "./dom.js";
import { toCSV, toJSON, chartPNG } from "./export.js";

const CONFIG = {
  responsive: true,
  displaylogo: false,
  modeBarButtonsToRemove: ["toImage"], // our own PNG button names the file
};

let loading = null;

/** Load Plotly.js once (a classic script that defines window.Plotly). */
export function loadPlotly() {
  if (window.Plotly) return Promise.resolve(window.Plotly);
  if (!loading) {
    loading = new Promise((resolve, reject) => {
      const s = h("script", { src: PLOTLY_JS });
      s.onload = () => resolve(window.Plotly);
      s.onerror = () => { loading = null; reject(new Error(`could not load ${PLOTLY_JS}`)); };
      document.head.append(s);
    });
  }
  return loading;
}

// Dark mode: the figures (pure, light) get the dark colours here when the browser prefers
// them; every chart drawn is drawn again when the preference changes.
const DARK = window.matchMedia ? window.matchMedia("(prefers-color-scheme: dark)") : null;
const drawn = new Map(); // graph div → its last figure
const DARK_AXIS = { gridcolor: "#2b3442", linecolor: "#4b5563", zerolinecolor: "#4b5563" };

/** The layout in the browser's colour scheme (unchanged in light mode). */
export function themed(layout, dark = Boolean(DARK && DARK.matches)) {
  if (!dark) return layout;
  const out = { ...layout, paper_bgcolor: "#161d27", plot_bgcolor: "#161d27",
    font: { ...(layout.font || {}), color: "#e5e7eb" } };
  for (const k of Object.keys(layout)) if (/^[xy]axis\d*$/.test(k)) out[k] = { ...DARK_AXIS, ...layout[k] };
  if (!Object.keys(layout).some((k) => /^[xy]axis/.test(k))) {
    out.xaxis = { ...DARK_AXIS };
    out.yaxis = { ...DARK_AXIS };
  }
  return out;
}

if (DARK && DARK.addEventListener) {
  DARK.addEventListener("change", () => {
    for (const [gd, fig] of drawn) if (gd.isConnected) draw(gd, fig); else drawn.delete(gd);
  });
}

/** Draw (or update in place, keeping zoom and selection UI) a figure into a graph div. */
export async function draw(graphDiv, figure) {
  const Plotly = await loadPlotly();
  drawn.set(graphDiv, figure);
  graphDiv.dataset.theme = DARK && DARK.matches ? "dark" : "light";
  return Plotly.react(graphDiv, figure.data, themed(figure.layout), CONFIG);
}

export function purge(graphDiv) {
  drawn.delete(graphDiv);
  if (window.Plotly && graphDiv) window.Plotly.purge(graphDiv);
}

/** The chart as PNG once it is drawn (before its first draw there is nothing to export, and
 * Plotly may not be loaded yet: the click is ignored instead of throwing). */
async function pngOf(graphDiv, filename) {
  if (!drawn.has(graphDiv)) return;
  await loadPlotly();
  return chartPNG(graphDiv, filename);
}

/** The rows as an HTML table (a chart's text alternative): one column per key. */
export function rowsTable(rows) {
  const keys = [...new Set(rows.flatMap((r) => Object.keys(r)))];
  const cell = (v) => (v === null || v === undefined ? "–" : typeof v === "number" ? String(Number(v.toPrecision(6))) : String(v));
  return h("table", { class: "data compact" },
    h("thead", {}, h("tr", {}, keys.map((k) => h("th", { scope: "col" }, k)))),
    h("tbody", {}, rows.length ? rows.map((r) => h("tr", {}, keys.map((k) => h("td", {}, cell(r[k])))))
      : h("tr", {}, h("td", { class: "empty" }, "No data yet."))));
}

/**
 * A chart card: a graph div plus export buttons. `rows()` returns what the chart shows as
 * table rows for CSV/JSON; omit it for charts where only PNG makes sense.
 */
export function chartCard(id, filename, rows) {
  const graph = h("div", { class: "chart", id, "data-chart": id, role: "img",
    "aria-label": rows ? `chart ${filename}; its data: the Table button` : `chart ${filename}` });
  // The chart's data as a table, on demand (shown as of when it is opened; again to refresh).
  const table = h("div", { class: "chart-table", hidden: true, "data-table-of": id });
  const tableBtn = rows && h("button", { class: "btn small", title: "Show the chart's data as a table", "data-export": "table",
    "aria-expanded": "false", onclick: () => {
      const open = table.hidden;
      table.hidden = !open;
      tableBtn.setAttribute("aria-expanded", String(open));
      tableBtn.textContent = open ? "Hide table" : "Table";
      if (open) table.replaceChildren(rowsTable(rows()));
    } }, "Table");
  const tools = h("div", { class: "chart-tools" }, tableBtn,
    h("button", { class: "btn small", title: "Download this chart as PNG", onclick: () => pngOf(graph, filename), "data-export": "png" }, "PNG"),
    rows && h("button", { class: "btn small", title: "Download the chart's points as CSV", "data-export": "csv",
      onclick: () => download(`${filename}.csv`, toCSV(rows()), "text/csv") }, "CSV"),
    rows && h("button", { class: "btn small", title: "Download the chart's points as JSON", "data-export": "json",
      onclick: () => download(`${filename}.json`, toJSON(rows()), "application/json") }, "JSON"));
  return { card: h("div", { class: "card chart-card" }, graph, tools, table), graph };
}
