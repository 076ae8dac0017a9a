// Export of what a table or chart shows: CSV and JSON text (pure), PNG of a chart (Plotly).

/**
 * CSV (RFC 4180) of `rows` (objects); `columns` defaults to the keys of all rows in order.
 * Numbers are written in their shortest exact form and infinities as inf, like the API's CSV.
 */
export function toCSV(rows, columns) {
  const cols = columns || [...new Set(rows.flatMap((r) => Object.keys(r)))];
  const cell = (v) => {
    if (v === null || v === undefined) return "";
    if (typeof v === "number" && !Number.isFinite(v)) return Number.isNaN(v) ? "nan" : v > 0 ? "inf" : "-inf";
    const s = typeof v === "object" ? JSON.stringify(v) : String(v);
    return /[",\n\r]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
  };
  return [cols.join(","), ...rows.map((r) => cols.map((c) => cell(r[c])).join(","))].join("\n") + "\n";
}

/** JSON with infinite numbers as the API writes them ("Infinity"). */
export function toJSON(value) {
  return JSON.stringify(value, (_, v) => (typeof v === "number" && !Number.isFinite(v) ? String(v) : v), 2);
}

/** Download a chart as PNG (Plotly's own exporter). */
export function chartPNG(graphDiv, filename) {
  return window.Plotly.downloadImage(graphDiv, { format: "png", filename, width: 1000, height: 500 });
}
