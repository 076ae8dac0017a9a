// Pure helpers of the form's grid editor (issue #12): which spec paths may be gridded, read
// from the API's OpenAPI schema; parsing and checking a knob's value list against that knob's
// own schema; the run count of a grid; and where a 422 about the grid belongs. No DOM here.

import { fieldSchema, choices, parseField, runCount } from "./specform.js";

/** Sections whose numeric, boolean and enumerated knobs may be gridded (docs/api.md). */
export const GRID_SECTIONS = ["training", "adversarial", "constraints", "pruning", "model"];
/** Never gridded: the queue (and so the device) is chosen per sweep. */
const NOT_GRIDDED = new Set(["training.device"]);

function sectionSchema(openapi, section) {
  const fs = fieldSchema(openapi, section);
  return fs ? fs.schema : null;
}

/**
 * The griddable paths: the schema's own list when SweepSpec.grid declares one
 * (`propertyNames.enum`), else every numeric, boolean or enumerated field of GRID_SECTIONS
 * (training.device excepted), in schema order. The server's 422 has the last word.
 * Example: ["training.pretrain_epochs", ..., "constraints.lambda_cnc", ...].
 */
export function griddablePaths(openapi) {
  const grid = fieldSchema(openapi, "grid");
  const declared = grid?.schema?.propertyNames?.enum;
  if (Array.isArray(declared) && declared.length) return [...declared];
  const out = [];
  for (const section of GRID_SECTIONS) {
    const s = sectionSchema(openapi, section);
    for (const name of Object.keys(s?.properties || {})) {
      const path = `${section}.${name}`;
      if (NOT_GRIDDED.has(path)) continue;
      const fs = fieldSchema(openapi, path);
      if (fs && knobKind(fs)) out.push(path);
    }
  }
  return out;
}

/** "int" | "float" | "bool" | "enum" for a griddable field schema, else null. */
export function knobKind(fs) {
  const s = fs?.schema;
  if (!s) return null;
  if (s.enum) return "enum";
  if (s.type === "integer") return "int";
  if (s.type === "number") return "float";
  if (s.type === "boolean") return "bool";
  return null;
}

/**
 * Parse a knob's comma-separated values and check each against the knob's schema:
 * {value: [...], error} (error null when fine). Numbers keep bounds and integrality; enums must
 * be one of the choices; booleans are true/false; values must not repeat; at least one.
 * Example: parseGridValues("0.01, 0.1, 1", fs) → {value: [0.01, 0.1, 1], error: null}.
 */
export function parseGridValues(text, fs) {
  const kind = knobKind(fs);
  const raw = String(text ?? "").trim();
  if (!raw) return { value: [], error: "give at least one value" };
  let value;
  if (kind === "int" || kind === "float") {
    const res = parseField({ kind: kind === "int" ? "ints" : "floats" }, raw, { schema: { items: fs.schema } });
    if (res.error) return res;
    value = res.value;
  } else {
    const parts = raw.split(/[\s,;]+/).filter(Boolean);
    if (kind === "bool") {
      const bad = parts.find((p) => !/^(true|false)$/i.test(p));
      if (bad !== undefined) return { value: parts, error: `“${bad}” must be true or false` };
      value = parts.map((p) => p.toLowerCase() === "true");
    } else {
      const opts = choices(fs);
      const bad = parts.find((p) => !opts.includes(p));
      if (bad !== undefined) return { value: parts, error: `“${bad}” is not one of ${opts.join(", ")}` };
      value = parts;
    }
  }
  if (new Set(value.map(String)).size !== value.length) return { value, error: "values must not repeat" };
  return { value, error: null };
}

/** Runs of a sweep with a grid: runCount × the product of the grid's list lengths. */
export function gridRunCount(methods, sparsities, seeds, grid = {}) {
  return Object.values(grid).reduce((n, values) => n * values.length, runCount(methods, sparsities, seeds));
}

/**
 * Where a 422 about the grid belongs: {path, index, message} for a loc such as
 * ["body", "spec", "grid", "constraints.lambda_cnc", 1] (path null for the whole grid, e.g.
 * too many runs; index null for the knob as a whole), or null when the error is not about it.
 */
export function gridError(err) {
  let loc = [...(err.loc || [])];
  if (loc[0] === "body") loc = loc.slice(1);
  if (loc[0] === "spec") loc = loc.slice(1);
  if (loc[0] !== "grid") return null;
  const path = loc.length > 1 ? String(loc[1]) : null;
  const index = loc.length > 2 && /^\d+$/.test(String(loc[2])) ? Number(loc[2]) : null;
  return { path, index, message: (index !== null ? `value ${index + 1}: ` : "") + err.msg };
}
