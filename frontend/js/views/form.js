// New experiment: a form over the sweep spec. Starts from a preset; bounds, choices and each
// knob's description come from the API's schema; the server's 422 errors appear next to the
// field they name.

import * as api from "../api.js";
import { h, mount, notify, errorText } from "../dom.js";
import { navigate } from "../router.js";
import {
  SECTIONS, FIELDS, fieldSchema, choices, describe, boundsText, getPath, setPath, deepMerge, formatValue,
  parseField, locateError,
} from "../specform.js";
import { gridRunCount, gridError } from "../grid.js";
import { gridEditor } from "./grid-editor.js";

function newKey() {
  if (window.crypto?.randomUUID) return window.crypto.randomUUID();
  const b = window.crypto.getRandomValues(new Uint8Array(16));
  return [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
}

export function render(root, ctx) {
  if (ctx.readOnly) {
    mount(root, h("div", { class: "card" }, "Your token is read-only (viewer): it cannot submit experiments."));
    return () => {};
  }
  mount(root, h("div", { class: "card" }, "Loading presets…"));
  let alive = true;
  Promise.all([api.presets(), api.datasets().catch(() => null)]).then(([presets, datasets]) => {
    if (alive) build(root, presets, ctx.openapi, ctx.query.preset, datasets);
  }, (e) => mount(root, h("div", { class: "card error" }, errorText(e))));
  return () => { alive = false; };
}

function build(root, presets, openapi, wanted, datasets) {
  // What the online workers can read (null: the API could not tell; then every name is offered).
  const readable = datasets ? new Map(datasets.datasets.filter((d) => d.workers > 0).map((d) => [d.name, d])) : null;
  const schemas = Object.fromEntries(FIELDS.map((f) => [f.path, fieldSchema(openapi, f.path)]));
  const inputs = {}; // path → {get(), set(value), row, error, hint}
  const grid = gridEditor(openapi, () => update());
  let preset = presets.find((p) => p.name === wanted) || presets[0] || { name: null, spec: {}, description: "" };
  let lastBody = null;
  let lastKey = null;

  const presetSelect = h("select", { id: "preset", name: "preset", "data-input": "preset", onchange: (e) => {
    preset = presets.find((p) => p.name === e.target.value) || preset;
    fill(preset.spec);
  } }, presets.map((p) => h("option", { value: p.name, selected: p === preset }, p.name)));
  const presetHint = h("small", { class: "hint" });
  const presetError = h("div", { class: "field-error", role: "alert" });
  const formError = h("div", { class: "form-error", id: "form-error", role: "alert" });
  const summary = h("p", { class: "summary", id: "run-summary" });
  const extra = h("textarea", { id: "extra-json", name: "extra", rows: 4, spellcheck: "false",
    placeholder: '{"pruning": {"skip_layers": ["fc1"]}}' }, "");
  const extraError = h("div", { class: "field-error", role: "alert" });
  inputs.preset = { error: presetError };
  inputs.extra = { error: extraError };

  function widget(field) {
    const fs = schemas[field.path];
    const id = `f-${field.path.replace(/\./g, "-")}`;
    const opts = choices(fs);
    let get;
    let set;
    let el;
    if (field.kind === "enums") {
      const boxes = opts.map((o) => h("label", { class: "check-option" },
        h("input", { type: "checkbox", name: field.path, value: o, "data-option": o }), ` ${o}`));
      el = h("div", { class: "checks", id, "data-input": field.path }, boxes);
      get = () => [...el.querySelectorAll("input:checked")].map((i) => i.value);
      set = (v) => el.querySelectorAll("input").forEach((i) => { i.checked = (v || []).includes(i.value); });
    } else if (field.path === "dataset.name" && opts.length && readable) {
      // Only datasets some online worker can read can be chosen; the others say why.
      el = h("select", { id, name: field.path, "data-input": field.path }, opts.map((o) => h("option", { value: o, disabled: !readable.has(o) },
        readable.has(o) ? o : `${o} (no worker has it)`)));
      get = () => el.value;
      set = (v) => { el.value = readable.has(v) ? v : ([...readable.keys()][0] ?? opts[0]); };
    } else if (field.kind === "enum" && opts.length) {
      el = h("select", { id, name: field.path, "data-input": field.path }, opts.map((o) => h("option", { value: o }, o)));
      get = () => el.value;
      set = (v) => { el.value = v ?? opts[0]; };
    } else {
      const numeric = field.kind === "int" || field.kind === "float";
      el = h("input", { id, name: field.path, "data-input": field.path, type: "text", inputmode: numeric ? "decimal" : null,
        autocomplete: "off", size: field.kind === "text" ? 30 : numeric ? 10 : 24 });
      get = () => el.value;
      set = (v) => { el.value = formatValue(field, v); };
    }
    // What the knob does (the API's description of it, which names what a blank means), its bounds.
    const list = field.kind === "floats" || field.kind === "ints";
    const bits = [list && "comma-separated", describe(fs), boundsText(list ? fs?.schema.items : fs?.schema)].filter(Boolean);
    if (field.path === "dataset.name" && datasets) {
      bits.push(datasets.workers ? `workers can read: ${[...readable.keys()].join(", ") || "none"}` : "no worker online to ask: start one");
    }
    const hint = h("small", { class: "hint" }, bits.join(" · "));
    const more = field.path === "dataset.name" && datasets
      && h("details", { class: "how-to-add", id: "dataset-how" }, h("summary", {}, "How to add a dataset"), h("p", {}, datasets.how_to_add));
    const error = h("div", { class: "field-error", role: "alert" });
    const row = h("div", { class: "field", "data-field": field.path },
      h("label", { for: id, title: fs?.schema.description || null }, field.label), el, hint, more, error);
    el.addEventListener("change", () => { check(field); update(); });
    el.addEventListener("input", () => { error.textContent = ""; row.classList.remove("invalid"); });
    inputs[field.path] = { get, set, row, error, hint, field, fs };
    return row;
  }

  function check(field) {
    const inp = inputs[field.path];
    const { value, error } = parseField(field, inp.get(), inp.fs);
    showError(field.path, error, "client");
    return { value, error };
  }

  function showError(path, message, source) {
    const inp = inputs[path];
    if (!inp) return;
    inp.error.textContent = message || "";
    inp.error.dataset.source = message ? source : "";
    if (inp.row) inp.row.classList.toggle("invalid", Boolean(message));
  }

  function clearErrors() {
    for (const path of Object.keys(inputs)) showError(path, null);
    grid.clearErrors();
    formError.textContent = "";
  }

  function fill(spec) {
    clearErrors();
    for (const f of FIELDS) inputs[f.path].set(getPath(spec, f.path));
    grid.set(spec.grid || {});
    presetHint.textContent = preset.description || "";
    update();
  }

  // The run count counts valid values only: with an invalid grid field it says which to fix.
  function update() {
    const parsed = Object.fromEntries(["methods", "sparsities", "seeds"].map((path) =>
      [path, parseField(inputs[path].field, inputs[path].get(), inputs[path].fs)]));
    const bad = Object.entries(parsed).filter(([, p]) => p.error).map(([path]) => inputs[path].field.label.toLowerCase());
    const knobs = grid.get();
    if (knobs.error) bad.push("the grid");
    if (bad.length) {
      summary.textContent = `Fix ${bad.join(" and ")} to count the runs of this sweep.`;
      return;
    }
    const methods = parsed.methods.value || [];
    const n = gridRunCount(methods, parsed.sparsities.value || [], parsed.seeds.value || [], knobs.grid);
    const sizes = Object.entries(knobs.grid).map(([p, v]) => `${v.length} ${p.split(".").pop()}`);
    summary.textContent = `This sweep expands to ${n} run${n === 1 ? "" : "s"} (${methods.join(", ") || "no methods"}` +
      `${sizes.length ? ` × ${sizes.join(" × ")}` : ""}).`;
  }

  // The JSON box overrides fields: show the values it sets in those fields, so the form never
  // shows a value that will not be sent. Returns the parsed object (null if invalid).
  function applyExtra() {
    const text = extra.value.trim();
    showError("extra", null);
    if (!text) return {};
    let more;
    try {
      more = JSON.parse(text);
      if (typeof more !== "object" || Array.isArray(more) || more === null) throw new Error("must be a JSON object");
    } catch (e) {
      showError("extra", `not valid JSON: ${e.message}`, "client");
      return null;
    }
    for (const f of FIELDS) {
      const v = getPath(more, f.path);
      if (v !== undefined) inputs[f.path].set(v);
    }
    update();
    return more;
  }
  extra.addEventListener("change", applyExtra);

  // Bring the first field in error into view and give it the focus.
  function focusFirstError() {
    const first = root.querySelector(".field.invalid");
    if (!first) return;
    first.scrollIntoView({ block: "center" });
    const control = first.querySelector("input, select, textarea");
    if (control) control.focus({ preventScroll: true });
  }

  function collect() {
    clearErrors();
    const spec = {};
    let bad = 0;
    const more = applyExtra(); // first: the fields then show (and send) what it overrides
    if (more === null) bad += 1;
    for (const f of FIELDS) {
      const { value, error } = check(f);
      if (error) bad += 1;
      else setPath(spec, f.path, value);
    }
    const knobs = grid.get();
    if (knobs.error) bad += 1;
    else if (Object.keys(knobs.grid).length) spec.grid = knobs.grid;
    if (bad) {
      formError.textContent = `Fix the ${bad} highlighted field${bad === 1 ? "" : "s"} first.`;
      focusFirstError();
      return null;
    }
    // A dataset the workers hold in a folder under their data root: name that folder.
    const where = readable?.get(spec.dataset?.name);
    if (where && !where.data_dirs.includes(null) && where.data_dirs.length) setPath(spec, "dataset.data_dir", where.data_dirs[0]);
    return { preset: preset.name, spec: deepMerge(spec, more) };
  }

  async function submit(ev) {
    ev.preventDefault();
    const body = collect();
    if (!body) return;
    const text = JSON.stringify(body);
    if (text !== lastBody) {
      lastBody = text;
      lastKey = newKey(); // same body again (double click, retry) → same key → same sweep
    }
    submitBtn.disabled = true;
    try {
      const sweep = await api.createSweep(body, lastKey);
      const n = sweep.run_ids.length;
      notify(`Sweep ${sweep.name} submitted: ${n} run${n === 1 ? "" : "s"} queued.`, "ok");
      navigate(`/sweep/${sweep.id}`);
    } catch (e) {
      const errs = e.fieldErrors;
      if (!errs.length) {
        formError.textContent = errorText(e);
        return;
      }
      const general = [];
      for (const err of errs) {
        const g = gridError(err);
        if (g) {
          grid.showError(g.path, g.message);
          continue;
        }
        const { path, message } = locateError(err);
        if (path && inputs[path]) {
          const prev = inputs[path].error.dataset.source === "server" ? `${inputs[path].error.textContent}; ` : "";
          showError(path, prev + message, "server");
        } else general.push(message);
      }
      formError.textContent = general.length ? general.join("; ") : "The server rejected some fields (see below).";
      if (root.querySelector(".field.invalid")) focusFirstError();
      else formError.scrollIntoView({ block: "center" });
    } finally {
      submitBtn.disabled = false;
    }
  }

  const submitBtn = h("button", { class: "btn primary", type: "submit", id: "submit-sweep" }, "Submit sweep");
  const form = h("form", { id: "sweep-form", class: "sweep-form", novalidate: true, onsubmit: submit },
    h("div", { class: "toolbar" }, h("h2", {}, "New experiment"), h("span", { class: "spacer" }),
      h("button", { class: "btn", type: "button", onclick: () => fill(preset.spec) }, "Reset to preset")),
    h("div", { class: "card preset-row" },
      h("div", { class: "field", "data-field": "preset" }, h("label", { for: "preset" }, "Preset"), presetSelect, presetHint, presetError),
      h("p", { class: "muted" }, "Fields start from the preset; anything not shown keeps the preset's value.")),
    h("div", { class: "sections" }, SECTIONS.map((s) => h("fieldset", { class: "card" }, h("legend", {}, s.title), s.fields.map(widget)))),
    grid.el,
    h("details", { class: "card" }, h("summary", {}, "Other settings (JSON merged over the fields above)"),
      h("div", { class: "field", "data-field": "extra" }, extra, extraError)),
    h("div", { class: "card submit-row" }, summary, formError, h("div", { class: "actions" }, submitBtn)));
  mount(root, form);
  fill(preset.spec);
}
