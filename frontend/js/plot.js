// The impure side of the charts: draws the pure figures of charts.js with Plotly and puts
// export buttons (PNG, CSV, JSON) around them.

import { h, download } from "./dom.js";
import { toCSV, toJSON, chartPNG } from "./export.js";

const CONFIG = {
  responsive: true,
  displaylogo: false,
  modeBarButtonsToRemove: ["toImage"], // our own PNG button names the file
};

/** Draw (or update in place, keeping zoom and selection UI) a figure into a graph div. */
export function draw(graphDiv, figure) {
  return window.Plotly.react(graphDiv, figure.data, figure.layout, CONFIG);
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
