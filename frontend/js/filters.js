// A filter bar for the sweeps and runs lists. The values live in the URL (#/runs?q=..&tag=..),
// so a filtered view can be bookmarked or shared; the API applies them to all rows.

import { h } from "./dom.js";
import { choices, queryParam } from "./specform.js";

/**
 * The filters of the lists, in the bar's order. A list shows those whose query parameter
 * (`param`, else `name`) its API endpoint takes, by the OpenAPI document; an enumeration
 * becomes a select of the API's values (`labels` name some of them, in the order wanted, and
 * the parameter's default is the "all" entry), a number a number field.
 */
const FILTERS = [
  { name: "q", label: "Search", placeholder: "name or notes", size: 18 },
  { name: "tag", label: "Tag", size: 10 },
  { name: "status", label: "Status" },
  { name: "method", label: "Method" },
  { name: "dataset", label: "Dataset", size: 9 },
  { name: "model", label: "Model", size: 7 },
  { name: "mine", param: "owner", label: "Mine", kind: "check" },
  { name: "from", param: "created_from", label: "From", kind: "date" },
  { name: "to", param: "created_to", label: "to", kind: "date" },
  { name: "metric", label: "Metric", all: "—", title: "keep evaluated runs with this metric in [min, max]",
    labels: { robust_accuracy: "robust", clean_accuracy: "clean", kappa_median: "κ median", sparsity_actual: "sparsity" } },
  { name: "min", label: "≥" },
  { name: "max", label: "≤" },
  { name: "sweep", label: "Sweep", placeholder: "sweep id", size: 12 },
  { name: "order", label: "Order", labels: { desc: "newest first", asc: "oldest first" },
    title: "order of all pages by creation time (or click a column header)" },
];

/** Names of the filters the list at `path` takes (without the OpenAPI document: every name). */
export function filterNames(openapi, path) {
  const fields = listFilters(openapi, path);
  return fields.length ? fields.map((f) => f.name) : FILTERS.map((f) => f.name);
}

/**
 * The filter-bar fields of the list at `path` ("/runs", "/sweeps") for filterBar, from the
 * OpenAPI document (none without it); `mine` only with `mine` true.
 */
export function listFilters(openapi, path, { mine = true } = {}) {
  const out = [];
  for (const f of FILTERS) {
    const fs = queryParam(openapi, path, f.param || f.name);
    if (!fs || (f.name === "mine" && !mine)) continue;
    const { labels, param, ...field } = f;
    const values = choices(fs);
    if (!field.kind && values.length) {
      const order = Object.keys(labels || {});
      const rank = (v) => (order.includes(v) ? order.indexOf(v) : order.length);
      const shown = values.filter((v) => v !== fs.schema.default).sort((a, b) => rank(a) - rank(b));
      Object.assign(field, { kind: "select", options: shown.map((v) => [v, labels?.[v] || v]) });
      if (fs.schema.default !== undefined) field.all = labels?.[fs.schema.default] || fs.schema.default;
    } else if (!field.kind) field.kind = ["number", "integer"].includes(fs.schema.type) ? "number" : "text";
    out.push(field);
  }
  return out;
}

/** Seconds since the epoch of a yyyy-mm-dd day's start (or end, with `end`), in local time. */
export function dayToSeconds(day, end = false) {
  if (!/^\d{4}-\d{2}-\d{2}$/.test(day || "")) return null;
  const d = new Date(`${day}T${end ? "23:59:59.999" : "00:00:00"}`);
  return Number.isNaN(d.getTime()) ? null : d.getTime() / 1000;
}

/**
 * API query parameters of the URL's filter values: dates become created_from/created_to,
 * `mine` the owner (`meId`); empty values are dropped.
 */
export function filterParams(values, meId) {
  const out = {};
  for (const [k, v] of Object.entries(values)) {
    if (v === "" || v === null || v === undefined) continue;
    if (k === "from") out.created_from = dayToSeconds(v);
    else if (k === "to") out.created_to = dayToSeconds(v, true);
    else if (k === "mine") { if (v === "1" && meId) out.owner = meId; } else out[k] = v;
  }
  return out;
}

/**
 * The filter bar: fields [{name, label, kind: text | select | number | date | check, options}]
 * and `values` (from the URL, changed in place); onChange() after any edit (text: on Enter or
 * leaving the field).
 */
export function filterBar(fields, values, onChange) {
  const set = (name, v) => { values[name] = v; onChange(); };
  return h("div", { class: "filters", "data-filters": "" }, fields.map((f) => {
    const common = { name: f.name, "data-filter": f.name, title: f.title || null };
    let input;
    if (f.kind === "select") {
      input = h("select", { ...common, onchange: (e) => set(f.name, e.target.value) },
        h("option", { value: "" }, f.all || "all"), f.options.map((o) => {
          const [value, text] = Array.isArray(o) ? o : [o, o];
          return h("option", { value, selected: values[f.name] === value }, text);
        }));
    } else if (f.kind === "check") {
      input = h("input", { ...common, type: "checkbox", checked: values[f.name] === "1",
        onchange: (e) => set(f.name, e.target.checked ? "1" : "") });
    } else {
      input = h("input", { ...common, type: f.kind === "date" ? "date" : f.kind === "number" ? "number" : "search",
        step: f.kind === "number" ? "any" : null, placeholder: f.placeholder || null, value: values[f.name] || "",
        size: f.size || (f.kind === "number" ? 6 : 16), onchange: (e) => set(f.name, e.target.value.trim()) });
    }
    return h("label", { class: "filter" }, f.label ? `${f.label} ` : "", input);
  }));
}
