// Run diff, pure part: each run's effective spec (its sweep's spec with the run's own method,
// sparsity, seed and grid values), flattened to dotted paths, and the rows where runs differ.
// No DOM here.

/** {a: {b: 1, c: [1, 2]}} → {"a.b": 1, "a.c": [1, 2]} (lists are values). */
export function flatten(obj, prefix = "", out = {}) {
  for (const [k, v] of Object.entries(obj || {})) {
    const path = prefix ? `${prefix}.${k}` : k;
    if (v !== null && typeof v === "object" && !Array.isArray(v)) flatten(v, path, out);
    else out[path] = v;
  }
  return out;
}

/**
 * The flattened spec one run trained with: the sweep's spec without its grid axes (methods,
 * sparsities, seeds, grid), plus the run's method, sparsity, seed and grid values (params,
 * keyed by spec path).
 */
export function runSpec(sweepSpec, run) {
  const { methods, sparsities, seeds, grid, ...rest } = sweepSpec || {};
  const flat = flatten(rest);
  for (const [path, v] of Object.entries(run.params || {})) flat[path] = v;
  return { method: run.method, sparsity: run.sparsity, seed: run.seed, ...flat };
}

const same = (a, b) => JSON.stringify(a ?? null) === JSON.stringify(b ?? null);

/**
 * Rows [{path, values: [v per spec], differs}] over every path of `specs` (sorted: run fields
 * first), only the differing ones unless `all`.
 */
export function diffRows(specs, all = false) {
  const first = ["method", "sparsity", "seed"];
  const paths = [...new Set(specs.flatMap((s) => Object.keys(s)))]
    .sort((a, b) => (first.includes(a) ? first.indexOf(a) : 9) - (first.includes(b) ? first.indexOf(b) : 9) || a.localeCompare(b));
  return paths.map((path) => {
    const values = specs.map((s) => s[path]);
    return { path, values, differs: values.some((v) => !same(v, values[0])) };
  }).filter((r) => all || r.differs);
}
