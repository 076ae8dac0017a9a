// Small DOM helpers shared by the views. Text always goes in through textContent (never
// innerHTML), so names and messages from the server cannot inject markup.

/**
 * Create an element: h("a", {href: "#/x", class: "btn", onclick: f}, "text", child, ...).
 * Attributes named on* become listeners; `dataset` takes an object; null/false children are
 * skipped; arrays are flattened.
 */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(el.dataset, v);
    else if (k === "class") el.className = v;
    else if (k === "value") el.value = v;
    else if (k === "checked" || k === "disabled" || k === "selected" || k === "multiple") el[k] = Boolean(v);
    else el.setAttribute(k, v === true ? "" : v);
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

export function clear(el) {
  while (el.firstChild) el.removeChild(el.firstChild);
  return el;
}

/** Replace the children of `el`. */
export function mount(el, ...children) {
  clear(el);
  append(el, children);
  return el;
}

// Final states: of a run, and of a sweep ("finished": its runs ended in different states).
export const TERMINAL = new Set(["succeeded", "failed", "cancelled", "finished"]);

/**
 * A function that runs `draw` once in the next animation frame however often it is called
 * before then (a burst of live events draws once), and never once `closed()` is true (the view
 * has gone).
 */
export function everyFrame(draw, closed) {
  let pending = false;
  return () => {
    if (pending || closed()) return;
    pending = true;
    requestAnimationFrame(() => {
      pending = false;
      if (!closed()) draw();
    });
  };
}

/**
 * A function that runs the async `task` `ms` after it is first called, once however often it is
 * called meanwhile, and not once `closed()` is true; a failed task is dropped (the next call
 * tries again). Its cancel() drops a pending run.
 */
export function soon(task, ms, closed) {
  let timer = null;
  const call = () => {
    if (timer || closed()) return;
    timer = setTimeout(async () => {
      timer = null;
      try { await task(); } catch { /* the next call tries again */ }
    }, ms);
  };
  call.cancel = () => { clearTimeout(timer); timer = null; };
  return call;
}

export function statusBadge(status, title) {
  return h("span", { class: `badge status-${status}`, title: title || null, "data-status": status }, status);
}

export function progressBar(fraction, status) {
  const pct = Math.round(100 * Math.max(0, Math.min(1, fraction || 0)));
  return h("div", { class: `progress status-${status || ""}`, title: `${pct}%`, role: "progressbar",
    "aria-valuenow": pct, "aria-valuemin": 0, "aria-valuemax": 100 },
  h("div", { class: "progress-fill", style: `width:${pct}%` }), h("span", { class: "progress-label" }, `${pct}%`));
}

/** "3 min ago" style age of a Unix timestamp (seconds). */
export function ago(ts, now = Date.now() / 1000) {
  if (!ts) return "–";
  const s = Math.max(0, now - ts);
  if (s < 60) return `${Math.round(s)} s ago`;
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 86400) return `${Math.round(s / 3600)} h ago`;
  return new Date(ts * 1000).toLocaleDateString();
}

export function dateTime(ts) {
  return ts ? new Date(ts * 1000).toLocaleString() : "–";
}

/** Offer `text` as a file download. */
export function download(filename, text, mime = "text/plain") {
  const url = URL.createObjectURL(new Blob([text], { type: mime }));
  const a = h("a", { href: url, download: filename, style: "display:none" });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 5000);
}

/** A transient message at the bottom of the page. kind: info | error | ok. */
export function notify(message, kind = "info") {
  let box = document.getElementById("toasts");
  if (!box) {
    box = h("div", { id: "toasts", "aria-live": "polite" });
    document.body.append(box);
  }
  const t = h("div", { class: `toast toast-${kind}` }, message);
  box.append(t);
  setTimeout(() => t.remove(), kind === "error" ? 8000 : 4000);
}

/** A message for an ApiError or any error, for notify(). */
export function errorText(e) {
  if (e && Array.isArray(e.detail)) return e.detail.map((d) => `${(d.loc || []).join(".")}: ${d.msg}`).join("; ");
  return e && e.message ? e.message : String(e);
}

/** Wrap an async action of a button: disables it while running, reports errors. */
export function action(fn) {
  return async (ev) => {
    const btn = ev && ev.currentTarget;
    if (btn) btn.disabled = true;
    try {
      await fn(ev);
    } catch (e) {
      notify(errorText(e), "error");
    } finally {
      if (btn) btn.disabled = false;
    }
  };
}

/**
 * Show `items` in `tbody`, one row per item, keyed by `key(item)`, updating rows in place: a
 * row whose item is still shown keeps its <tr> (a click, focus or text selection survives a
 * live update) and a cell is rendered again only when its signature changed.
 * cells(item) → [{sig: string, render: () → node | string | array, class?, col?}]
 * rowClass(item) → class of the row (or null). Rows without a key (placeholders) are removed.
 */
export function syncRows(tbody, items, key, cells, rowClass = () => null) {
  const old = new Map();
  for (const tr of tbody.children) if (tr.rowKey !== undefined) old.set(tr.rowKey, tr);
  const rows = items.map((item) => {
    const k = key(item);
    let tr = old.get(k);
    old.delete(k);
    if (!tr) {
      tr = document.createElement("tr");
      tr.rowKey = k;
      tr.sigs = [];
      tr.dataset.id = k;
    }
    const specs = cells(item);
    specs.forEach((c, i) => {
      let td = tr.children[i];
      if (!td) td = tr.appendChild(document.createElement("td"));
      const cls = c.class || "";
      if (td.className !== cls) td.className = cls;
      if (c.col && td.dataset.col !== c.col) td.dataset.col = c.col;
      if (tr.sigs[i] !== c.sig) {
        mount(td, c.render());
        tr.sigs[i] = c.sig;
      }
    });
    while (tr.children.length > specs.length) tr.lastChild.remove();
    const cls = rowClass(item) || "";
    if (tr.className !== cls) tr.className = cls;
    return tr;
  });
  for (const tr of [...tbody.children]) if (tr.rowKey === undefined || old.has(tr.rowKey)) tr.remove();
  rows.forEach((tr, i) => {
    if (tbody.children[i] !== tr) tbody.insertBefore(tr, tbody.children[i] || null);
  });
}
