// Pure helpers reading the API's OpenAPI document, and of the experiment form: the field list,
// bounds, choices and descriptions read from the schema (so the form is validated and documented
// like the API without copying its numbers or words), the lists' vocabularies (query parameters'
// choices, the methods' palette), value parsing/checking, and mapping a 422 `loc` back to a form
// field. No DOM here.

/** A form section: fields {name: [kind, label]} under the SweepSpec path `prefix` ("" for the top). */
const section = (title, prefix, fields) => ({ title, fields: Object.entries(fields).map(([name, [kind, label]]) =>
  ({ path: prefix ? `${prefix}.${name}` : name, kind, label })) });

/**
 * The fields the form shows, by section: {title, fields: [{path, kind, label}]}. path: the
 * SweepSpec path; kind: text | int | float | enum | enums (checkboxes) | floats | ints
 * (comma-separated lists). What each field means, its bounds and choices, and what a blank
 * nullable field stands for are the API's (its schema's description and bounds).
 */
export const SECTIONS = [
  section("Experiment", "", { name: ["text", "Name"] }),
  section("Grid", "", { methods: ["enums", "Methods"], sparsities: ["floats", "Sparsities"], seeds: ["ints", "Seeds"] }),
  section("Data and model", "", {
    "dataset.name": ["enum", "Dataset"], "dataset.train_subset": ["int", "Train subset"], "dataset.test_subset": ["int", "Test subset"],
    "model.name": ["enum", "Model"], "model.width": ["int", "Width"] }),
  section("Training", "training", {
    pretrain_epochs: ["int", "Pretrain epochs"], prune_epochs: ["int", "Prune epochs"], finetune_epochs: ["int", "Finetune epochs"],
    batch_size: ["int", "Batch size"], lr: ["float", "Learning rate"], prune_lr: ["float", "Score learning rate"],
    finetune_lr: ["float", "Finetune learning rate"], monitor_examples: ["int", "Monitor examples"], device: ["enum", "Device"] }),
  section("Adversarial training", "adversarial", {
    objective: ["enum", "Objective"], epsilon: ["float", "ε (L∞)"], steps: ["int", "Attack steps"], beta: ["float", "TRADES β"] }),
  section("Constraints", "constraints", {
    lambda_tsc: ["float", "λ TSC"], a: ["float", "TSC a"], tsc_variant: ["enum", "TSC variant"], tsc_reduction: ["enum", "TSC reduction"],
    lambda_cnc: ["float", "λ CNC"], cnc_kind: ["enum", "CNC kind"], cnc_layers: ["enum", "CNC layers"],
    cnc_every: ["int", "CNC every k steps"], cnc_layer_subset: ["int", "CNC layers per step"], lambda_lcc: ["float", "λ Lipschitz"] }),
  section("Evaluation", "evaluation", {
    attacks: ["enums", "Attacks"], examples: ["int", "Examples"], epsilon: ["float", "ε"], pgd_steps: ["int", "PGD steps"],
    cw_steps: ["int", "CW steps"], security_curve: ["floats", "Security curve"] }),
];

export const FIELDS = SECTIONS.flatMap((s) => s.fields);

// ---- the OpenAPI schema ----------------------------------------------------------------------

const SPEC_NAMES = ["SweepSpec", "SweepSpec-Input", "SweepSpec-Output"];

function deref(openapi, schema) {
  let s = schema;
  for (let i = 0; s && s.$ref && i < 10; i += 1) {
    const name = s.$ref.split("/").pop();
    s = { ...openapi.components.schemas[name], ...Object.fromEntries(Object.entries(s).filter(([k]) => k !== "$ref")) };
  }
  return s;
}

/**
 * The JSON schema of a SweepSpec field, with $refs resolved and `anyOf [X, null]` unwrapped:
 * {schema, nullable}, or null when the schema does not have the field.
 */
export function fieldSchema(openapi, path) {
  const schemas = openapi?.components?.schemas || {};
  const rootName = SPEC_NAMES.find((n) => schemas[n]);
  if (!rootName) return null;
  let s = schemas[rootName];
  for (const part of path.split(".")) {
    s = deref(openapi, s);
    s = s?.properties?.[part];
    if (!s) return null;
  }
  return unwrap(openapi, deref(openapi, s));
}

/** {schema, nullable} of a schema: `anyOf [X, null]` becomes X, nullable; items resolved. */
function unwrap(openapi, schema) {
  let s = schema;
  let nullable = false;
  if (s.anyOf) {
    const rest = s.anyOf.filter((x) => x.type !== "null");
    nullable = rest.length < s.anyOf.length;
    s = { ...deref(openapi, rest[0] || {}), ...Object.fromEntries(Object.entries(s).filter(([k]) => k !== "anyOf")) };
  }
  if (s.items) s = { ...s, items: deref(openapi, s.items) };
  return { schema: s, nullable };
}

/** A named schema of the document's components ($refs resolved), or null. */
export function namedSchema(openapi, name) {
  const s = openapi?.components?.schemas?.[name];
  return s ? deref(openapi, s) : null;
}

/** Values of the enumeration schema `name` (e.g. "RunStatus"), in the API's order; [] when absent. */
export function enumOf(openapi, name) {
  return namedSchema(openapi, name)?.enum || [];
}

/**
 * The schema of query parameter `name` of `GET path` (the API's path without its prefix, e.g.
 * "/runs"), $refs resolved and `anyOf [X, null]` unwrapped: {schema, nullable}, or null.
 */
export function queryParam(openapi, path, name) {
  const paths = openapi?.paths || {};
  // The API prefix + "/runs" ends with "/runs"; "…/sweeps/{sweep_id}/runs" does not count.
  const key = Object.keys(paths).find((k) => k.endsWith(path) && !k.slice(0, -path.length).includes("{"));
  const param = (paths[key]?.get?.parameters || []).find((p) => p.name === name && p.in === "query");
  return param ? unwrap(openapi, deref(openapi, param.schema)) : null;
}

/**
 * The methods' order and colours: the `x-palette` the API adds to its Method schema (from
 * tscnc/palette.py, which the static report draws with too): {order, colors}.
 */
export function methodPalette(openapi) {
  const s = namedSchema(openapi, "Method");
  return { order: s?.["x-palette"]?.order || s?.enum || [], colors: s?.["x-palette"]?.colors || {} };
}

/** First paragraph of a schema's `description` (the API's documentation of a knob), or "". */
export function describe(fs) {
  return (fs?.schema?.description || "").split(/\n\s*\n/)[0].replace(/\s+/g, " ").trim();
}

/** Choices of an enum or list-of-enum field. */
export function choices(fs) {
  if (!fs) return [];
  return fs.schema.enum || fs.schema.items?.enum || [];
}

/** "0 ≤ x ≤ 1000" style description of a numeric schema's bounds ("" when unbounded). */
export function boundsText(s) {
  if (!s) return "";
  const lo = s.minimum !== undefined ? `${s.minimum} ≤ ` : s.exclusiveMinimum !== undefined ? `${s.exclusiveMinimum} < ` : "";
  const hi = s.maximum !== undefined ? ` ≤ ${s.maximum}` : s.exclusiveMaximum !== undefined ? ` < ${s.exclusiveMaximum}` : "";
  return lo || hi ? `${lo}x${hi}` : "";
}

// ---- values ----------------------------------------------------------------------------------

export function getPath(obj, path) {
  return path.split(".").reduce((o, k) => (o === null || o === undefined ? undefined : o[k]), obj);
}

export function setPath(obj, path, value) {
  const keys = path.split(".");
  let o = obj;
  for (const k of keys.slice(0, -1)) {
    if (typeof o[k] !== "object" || o[k] === null) o[k] = {};
    o = o[k];
  }
  o[keys[keys.length - 1]] = value;
  return obj;
}

/** Deep merge (objects key by key; lists and scalars replace), as the API merges specs. */
export function deepMerge(base, over) {
  if (typeof base !== "object" || base === null || Array.isArray(base) ||
      typeof over !== "object" || over === null || Array.isArray(over)) return over;
  const out = { ...base };
  for (const [k, v] of Object.entries(over)) out[k] = k in base ? deepMerge(base[k], v) : v;
  return out;
}

/** Text shown in an input for a spec value. */
export function formatValue(field, v) {
  if (v === null || v === undefined) return "";
  if (field.kind === "floats" || field.kind === "ints") return v.join(", ");
  return String(v);
}

function checkNumber(s, x, integer) {
  if (!Number.isFinite(x)) return "must be a number";
  if (integer && !Number.isInteger(x)) return "must be a whole number";
  if (!s) return null;
  if (s.minimum !== undefined && x < s.minimum) return `must be ≥ ${s.minimum}`;
  if (s.exclusiveMinimum !== undefined && x <= s.exclusiveMinimum) return `must be > ${s.exclusiveMinimum}`;
  if (s.maximum !== undefined && x > s.maximum) return `must be ≤ ${s.maximum}`;
  if (s.exclusiveMaximum !== undefined && x >= s.exclusiveMaximum) return `must be < ${s.exclusiveMaximum}`;
  return null;
}

/**
 * Parse the raw input of a field (a string, or for `enums` an array of checked values) and
 * check it against the field's schema: {value, error} (error null when fine).
 */
export function parseField(field, raw, fs) {
  const s = fs?.schema;
  const text = typeof raw === "string" ? raw.trim() : raw;
  if (field.kind === "text") {
    if (s?.minLength && text.length < s.minLength) return { value: text, error: "required" };
    if (s?.maxLength && text.length > s.maxLength) return { value: text, error: `at most ${s.maxLength} characters` };
    return { value: text, error: null };
  }
  if (field.kind === "enum") return { value: text, error: null };
  if (field.kind === "enums") {
    const n = raw.length;
    if (s?.minItems && n < s.minItems) return { value: raw, error: `choose at least ${s.minItems}` };
    return { value: raw, error: null };
  }
  if (field.kind === "int" || field.kind === "float") {
    if (text === "") return fs?.nullable ? { value: null, error: null } : { value: null, error: "required" };
    const x = Number(text);
    return { value: x, error: checkNumber(s, x, field.kind === "int") };
  }
  // floats / ints: comma- or space-separated lists
  const parts = text === "" ? [] : text.split(/[\s,;]+/).filter(Boolean);
  const values = parts.map(Number);
  if (s?.minItems && values.length < s.minItems) return { value: values, error: `give at least ${s.minItems} value(s)` };
  if (s?.maxItems && values.length > s.maxItems) return { value: values, error: `at most ${s.maxItems} values` };
  for (let i = 0; i < values.length; i += 1) {
    const e = checkNumber(s?.items, values[i], field.kind === "ints");
    if (e) return { value: values, error: `“${parts[i]}” ${e}` };
  }
  return { value: values, error: null };
}

/**
 * Where a 422 error belongs: {path, message} with path a form field's path, "preset", or null
 * (a whole-spec error such as "sweep expands to 1200 runs"). loc is the API's list, e.g.
 * ["body", "spec", "sparsities", 0]; list indices go into the message.
 */
export function locateError(err, paths = FIELDS.map((f) => f.path)) {
  let loc = [...(err.loc || [])];
  if (loc[0] === "body") loc = loc.slice(1);
  if (loc[0] === "preset") return { path: "preset", message: err.msg };
  if (loc[0] === "spec") loc = loc.slice(1);
  const names = [];
  const indices = [];
  for (const part of loc) {
    if (typeof part === "number" || /^\d+$/.test(String(part))) indices.push(Number(part));
    else if (!indices.length) names.push(String(part));
  }
  for (let n = names.length; n > 0; n -= 1) {
    const p = names.slice(0, n).join(".");
    if (paths.includes(p)) {
      const where = indices.length ? `value ${indices[0] + 1}: ` : "";
      return { path: p, message: where + err.msg };
    }
  }
  const where = loc.length ? `${loc.join(".")}: ` : "";
  return { path: null, message: where + err.msg };
}

/** Number of runs a grid expands to (dense once per seed at sparsity 0), for the form's hint. */
export function runCount(methods, sparsities, seeds) {
  const pruning = methods.filter((m) => m !== "dense").length;
  return seeds.length * ((methods.includes("dense") ? 1 : 0) + pruning * sparsities.length);
}
