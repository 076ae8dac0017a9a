// Export of what a table or chart shows: CSV and JSON text (pure), PNG of a chart (Plotly).

const FORMULA_START = /^[=+\-@\t\r]/;
const PLAIN_NUMBER = /^[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?$/;

/**
 * Text a spreadsheet will not evaluate: text starting with = + - @, tab or CR gets a leading
 * single quote (OWASP's advice against CSV formula injection), e.g. "=cmd|' /C calc'!A0" →
 * "'=cmd|' /C calc'!A0"; a plain number written as text ("-0.5") is left as it is. The API's
 * CSV applies the same rule (backend/views.py spreadsheet_safe).
 */
export function spreadsheetSafe(text) {
  return FORMULA_START.test(text) && !PLAIN_NUMBER.test(text) ? `'${text}` : text;
}

/**
 * CSV (RFC 4180) of `rows` (objects); `columns` defaults to the keys of all rows in order.
 * Numbers are written in their shortest exact form and infinities as inf, like the API's CSV;
 * text (names, keys, column names) goes through spreadsheetSafe.
 */
export function toCSV(rows, columns) {
  const cols = columns || [...new Set(rows.flatMap((r) => Object.keys(r)))];
  const quote = (s) => (/[",\n\r]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s);
  const cell = (v) => {
    if (v === null || v === undefined) return "";
    if (typeof v === "number") return Number.isFinite(v) ? String(v) : Number.isNaN(v) ? "nan" : v > 0 ? "inf" : "-inf";
    if (typeof v === "boolean") return String(v);
    return quote(spreadsheetSafe(typeof v === "object" ? JSON.stringify(v) : String(v)));
  };
  return [cols.map((c) => quote(spreadsheetSafe(String(c)))).join(","),
    ...rows.map((r) => cols.map((c) => cell(r[c])).join(","))].join("\n") + "\n";
}

/** JSON with infinite numbers as the API writes them ("Infinity"). */
export function toJSON(value) {
  return JSON.stringify(value, (_, v) => (typeof v === "number" && !Number.isFinite(v) ? String(v) : v), 2);
}

/** Download a chart as PNG (Plotly's own exporter). */
export function chartPNG(graphDiv, filename) {
  return window.Plotly.downloadImage(graphDiv, { format: "png", filename, width: 1000, height: 500 });
}
