// A filter bar for the sweeps and runs lists. The values live in the URL (#/runs?q=..&tag=..),
// so a filtered view can be bookmarked or shared; the API applies them to all rows.

import { h } from "./dom.js";

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
