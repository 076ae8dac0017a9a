// The form's grid editor (issue #12): rows of (knob, values), the knob picked from the paths
// the API's schema allows (grid.js), each value list checked against that knob's schema as it
// is typed. The form multiplies its run count by the grid's size and sends `spec.grid`.

import { h, mount } from "../dom.js";
import { fieldSchema, boundsText, choices, describe } from "../specform.js";
import { griddablePaths, knobKind, parseGridValues } from "../grid.js";

/**
 * A grid editor for `openapi`; onchange() is called after every edit.
 * Returns {el, get() → {grid, error}, set(grid), showError(path | null, message), clearErrors()}.
 */
export function gridEditor(openapi, onchange = () => {}) {
  const paths = griddablePaths(openapi);
  const schemas = Object.fromEntries(paths.map((p) => [p, fieldSchema(openapi, p)]));
  const rowsEl = h("div", { class: "grid-rows", id: "grid-rows" });
  const general = h("div", { class: "field-error", id: "grid-error", role: "alert" });
  const rows = [];

  function hintOf(path) {
    const fs = schemas[path];
    const kind = knobKind(fs);
    if (kind === "enum") return `one or more of ${choices(fs).join(", ")}`;
    if (kind === "bool") return "true, false";
    return [kind === "int" ? "whole numbers" : "numbers", boundsText(fs?.schema)].filter(Boolean).join(", ");
  }

  function addRow(path = null, values = null) {
    const used = new Set(rows.map((r) => r.path()));
    const first = path || paths.find((p) => !used.has(p)) || paths[0];
    const select = h("select", { class: "grid-path", "data-grid-path": "", "aria-label": "grid knob" },
      [...paths, ...(paths.includes(first) ? [] : [first])].map((p) => h("option", { value: p, selected: p === first,
        title: describe(schemas[p]) || null }, p)));
    const input = h("input", { type: "text", class: "grid-values", "data-grid-values": "", size: 28, autocomplete: "off",
      "aria-label": "values, comma-separated" });
    const hint = h("small", { class: "hint" });
    const error = h("div", { class: "field-error", role: "alert" });
    const row = {
      path: () => select.value,
      text: () => input.value,
      error,
      el: h("div", { class: "field grid-row", "data-grid-row": "" }, h("div", { class: "inline" }, select, input,
        h("button", { class: "btn small", type: "button", "data-action": "grid-remove", title: "remove this knob",
          onclick: () => { rows.splice(rows.indexOf(row), 1); row.el.remove(); onchange(); } }, "✕")), hint, error),
    };
    const refreshHint = () => {
      hint.textContent = hintOf(select.value);
      select.title = describe(schemas[select.value]); // what the knob does (the API's description)
    };
    select.addEventListener("change", () => { refreshHint(); check(row); onchange(); });
    input.addEventListener("input", () => { check(row); onchange(); });
    if (values) input.value = values.map(String).join(", ");
    refreshHint();
    rows.push(row);
    rowsEl.append(row.el);
    return row;
  }

  function check(row) {
    const res = parseGridValues(row.text(), schemas[row.path()]);
    const dup = rows.filter((r) => r.path() === row.path()).length > 1;
    const error = res.error || (dup ? "this knob is already in the grid" : null);
    showRowError(row, error);
    return { ...res, error };
  }

  function showRowError(row, message) {
    row.error.textContent = message || "";
    row.el.classList.toggle("invalid", Boolean(message));
  }

  const el = h("fieldset", { class: "card grid-editor", id: "grid-editor", "data-field": "grid" },
    h("legend", {}, "Hyperparameter grid"),
    h("p", { class: "muted" }, "Each knob's values multiply the runs (with methods × sparsities × seeds); " +
      "the summary then compares the configurations across seeds."),
    rowsEl, general,
    paths.length
      ? h("button", { class: "btn small", type: "button", id: "grid-add", "data-action": "grid-add",
        onclick: () => { addRow(); onchange(); } }, "Add knob")
      : h("p", { class: "muted" }, "The server's schema names no griddable knob."));

  return {
    el,
    /** The grid as the API takes it ({} without rows), and the first problem (null if none). */
    get() {
      const grid = {};
      let error = null;
      for (const row of rows) {
        const res = check(row);
        if (res.error && !error) error = `${row.path()}: ${res.error}`;
        if (!res.error) grid[row.path()] = res.value;
      }
      return { grid, error };
    },
    set(grid) {
      rows.splice(0, rows.length);
      mount(rowsEl);
      general.textContent = "";
      for (const [path, values] of Object.entries(grid || {})) addRow(path, values);
    },
    /** A server error: on the row of `path`, else under the grid. */
    showError(path, message) {
      const row = path && rows.find((r) => r.path() === path);
      if (row) showRowError(row, message);
      else general.textContent = path ? `${path}: ${message}` : message;
    },
    clearErrors() {
      general.textContent = "";
      for (const r of rows) showRowError(r, null);
    },
    size: () => rows.length,
  };
}
