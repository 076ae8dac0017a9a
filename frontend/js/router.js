// Hash routing for the single page: "#/sweep/<id>?attack=pgd" → {path, params, query}.

/** Parse a location hash against route patterns like "/sweep/:id". */
export function match(hash, patterns) {
  const raw = (hash || "").replace(/^#/, "") || "/";
  const [path, qs = ""] = raw.split("?");
  const query = Object.fromEntries(new URLSearchParams(qs));
  const parts = path.split("/").filter(Boolean);
  for (const pattern of patterns) {
    const pp = pattern.split("/").filter(Boolean);
    if (pp.length !== parts.length) continue;
    const params = {};
    let ok = true;
    pp.forEach((p, i) => {
      if (p.startsWith(":")) params[p.slice(1)] = decodeURIComponent(parts[i]);
      else if (p !== parts[i]) ok = false;
    });
    if (ok) return { pattern, params, query };
  }
  return null;
}

/** Build a hash: href("/runs", {sweep: "abc"}) → "#/runs?sweep=abc" (empty values dropped). */
export function href(path, query = {}) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(query)) if (v !== undefined && v !== null && v !== "") q.set(k, v);
  const s = q.toString();
  return `#${path}${s ? `?${s}` : ""}`;
}

export function navigate(path, query) {
  window.location.hash = href(path, query);
}

/** Change the query of the current hash without re-rendering the view (replaceState). */
export function replaceQuery(path, query) {
  history.replaceState(null, "", href(path, query));
}
