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

/** Draw (or update in place, keeping zoom and selection UI) a figure into a graph div. */
export async function draw(graphDiv, figure) {
  const Plotly = await loadPlotly();
  return Plotly.react(graphDiv, figure.data, figure.layout, CONFIG);
}

export function purge(graphDiv) {
  if (window.Plotly && graphDiv) window.Plotly.purge(graphDiv);
}

/**
 * A chart card: a graph div plus export buttons. `rows()` returns what the chart shows as
 * table rows for CSV/JSON; omit it for charts where only PNG makes sense.
 */
export function chartCard(id, filename, rows) {
  const graph = h("div", { class: "chart", id, "data-chart": id });
  const tools = h("div", { class: "chart-tools" },
    h("button", { class: "btn small", title: "Download this chart as PNG", onclick: () => chartPNG(graph, filename), "data-export": "png" }, "PNG"),
    rows && h("button", { class: "btn small", title: "Download the chart's points as CSV", "data-export": "csv",
      onclick: () => download(`${filename}.csv`, toCSV(rows()), "text/csv") }, "CSV"),
    rows && h("button", { class: "btn small", title: "Download the chart's points as JSON", "data-export": "json",
      onclick: () => download(`${filename}.json`, toJSON(rows()), "application/json") }, "JSON"));
  return { card: h("div", { class: "card chart-card" }, graph, tools), graph };
}
