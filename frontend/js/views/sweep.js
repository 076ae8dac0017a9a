// The sweep view: clean accuracy, robust accuracy (attack selectable) and κ against sparsity,
// one trace per method, filling in live over the sweep's event stream. Hover shows the run,
// clicking a point opens it, and a box/lasso selection (or the checkboxes of the run list) is
// shared by all three charts. Above them, the seed statistics (views/summary-panel.js: bands,
// difference to a baseline, grid charts). Also used, read-only, by the share page.

import * as api from "../api.js";
import { h, mount, statusBadge, progressBar, notify, action, errorText, syncRows, everyFrame, soon, TERMINAL } from "../dom.js";
import { href, navigate } from "../router.js";
import { listen, liveIndicator, runOf } from "../live.js";
import { draw, purge, chartCard } from "../plot.js";
import {
  sweepPoints, sweepFigure, attackNames, defaultAttack, pointRows, fmtAcc, fmtKappa, fmtSparsity, WORST_ATTACK,
  withEmptyNote,
} from "../charts.js";
import { shareDialog } from "./dashboards.js";
import { annotationBox, canEdit } from "../annotate.js";
import { summaryPanel } from "./summary-panel.js";

const METRICS = ["clean", "robust", "kappa"];
const REFRESH_MS = 1500;

export function render(root, ctx) {
  mount(root, h("div", { class: "card" }, "Loading sweep…"));
  let panel = null;
  let alive = true;
  api.getSweep(ctx.params.id).then((sweep) => {
    if (!alive) return;
    panel = sweepPanel(root, sweep, ctx, { attack: ctx.query.attack, selected: (ctx.query.selected || "").split(",").filter(Boolean) });
  }, (e) => mount(root, h("div", { class: "card error" }, errorText(e))));
  return () => {
    alive = false;
    if (panel) panel.close();
  };
}

/**
 * Draw the sweep view for `sweep` (a SweepDetail) into `container` and keep it live.
 * state: {attack, selected: [run ids]}. Returns {close(), state()}.
 */
export function sweepPanel(container, sweep, ctx, state = {}) {
  const runs = new Map(sweep.runs.map((r) => [r.id, r]));
  const results = new Map();
  const fetching = new Set();
  const selected = new Set(state.selected || []);
  let attack = state.attack || null;
  let attackChosen = Boolean(state.attack); // else follow the default (PGD) as results arrive
  let closed = false;
  let latest = sweep; // the last SweepDetail fetched: aggregate status and progress

  const live = liveIndicator();
  const headerInfo = h("div", { class: "sweep-meta" });
  const attackSelect = h("select", { id: "attack", "data-control": "attack", onchange: (e) => { attack = e.target.value; attackChosen = true; redraw(); } });
  const selectionInfo = h("span", { class: "muted", "data-selection": "" });
  const charts = Object.fromEntries(METRICS.map((m) => [m, chartCard(`chart-${m}`, `${sweep.name}-${m}`, () => pointRows(points()))]));
  const runList = h("tbody");
  const notesBox = annotationBox(sweep, { editable: canEdit(ctx, sweep.owner),
    save: (body) => api.annotateSweep(sweep.id, body) });

  const points = () => sweepPoints([...runs.values()], results, { [sweep.id]: sweep.name });
  // Seed statistics (bands, difference, grid charts): refetched when a run finishes.
  const summary = summaryPanel({ sweepIds: [sweep.id], sweepNames: { [sweep.id]: sweep.name }, points }, state.summary || {});

  // ---- drawing ----------------------------------------------------------------------------
  const redraw = everyFrame(drawNow, () => closed);
  function drawNow() {
    const pts = points();
    const names = attackNames(pts);
    if (!attackChosen || (attack !== WORST_ATTACK && names.length && !names.includes(attack))) attack = defaultAttack(pts);
    mount(attackSelect, [...names, WORST_ATTACK].map((n) =>
      h("option", { value: n, selected: n === attack }, n === WORST_ATTACK ? "worst over attacks" : n)));
    for (const m of METRICS) {
      draw(charts[m].graph, withEmptyNote(sweepFigure(pts, { metric: m, attack, selected }),
        "No run evaluated yet: each point appears when its run is evaluated"));
    }
    drawHeader();
    drawRuns();
    summary.redraw();
  }

  function drawHeader() {
    const all = [...runs.values()];
    if (cancelBtn) cancelBtn.hidden = TERMINAL.has(latest.status);
    // Why runs failed, once per distinct reason (the table has each run's own).
    const reasons = new Map();
    for (const r of all) {
      if (r.status !== "failed") continue;
      const why = `${r.category ? `${r.category}: ` : ""}${r.message || "no message"}`;
      reasons.set(why, [...(reasons.get(why) || []), r.key]);
    }
    mount(headerInfo,
      statusBadge(latest.status), progressBar(latest.progress, latest.status),
      h("span", { class: "muted", "data-counts": "" }, latest.summary || latest.status),
      h("span", { class: "muted" }, `${sweep.spec.dataset.name} · ${sweep.spec.model.name}-${sweep.spec.model.width} · ` +
        `${sweep.spec.adversarial.objective} · ${results.size}/${all.length} evaluated`),
      reasons.size > 0 && h("div", { class: "card error failures", id: "sweep-failures" },
        h("strong", {}, `Why ${[...reasons.values()].flat().length} run(s) failed:`),
        h("ul", {}, [...reasons].map(([why, keys]) => h("li", {}, h("span", { class: "muted" }, `${keys.join(", ")}: `), why)))));
    selectionInfo.textContent = selected.size ? `${selected.size} run(s) selected` : "drag a box on a chart to select runs";
  }

  // What a run is doing: its stage and epoch, and the training monitor's values (progress,
  // not results: the result columns stay "–" until the run is evaluated).
  function progressText(r) {
    if (!r.stage || TERMINAL.has(r.status) && r.has_result) return "";
    const m = r.monitor;
    const mon = m && !r.has_result ? ` · monitor clean ${fmtAcc(m.clean_accuracy)}, robust ${fmtAcc(m.robust_accuracy)}` : "";
    return ` ${r.stage}${r.epoch ? ` ${r.epoch}` : ""}${mon}`;
  }

  function drawRuns() {
    const order = [...runs.values()].sort((a, b) => a.method.localeCompare(b.method) || a.sparsity - b.sparsity || a.seed - b.seed);
    syncRows(runList, order, (r) => r.id, (r) => {
      const res = results.get(r.id);
      const robust = res ? Math.min(...Object.values(res.robust_accuracy)) : null;
      const isSel = selected.has(r.id);
      const cells = [
        { class: "check", sig: String(isSel), render: () => h("input", { type: "checkbox", checked: isSel, "data-select": r.id,
          onchange: (e) => { if (e.target.checked) selected.add(r.id); else selected.delete(r.id); redraw(); } }) },
        { sig: r.key, render: () => h("a", { href: href(`/run/${r.id}`) }, r.key) },
        { col: "status", sig: `${r.status}|${r.message}|${r.cancel_requested}`, render: () => statusBadge(r.status, r.message) },
        { col: "progress", sig: `${r.progress}|${r.status}|${progressText(r)}`, render: () => [progressBar(r.progress, r.status),
          h("small", { class: "muted" }, progressText(r))] },
        { class: "num", sig: String(r.sparsity), render: () => fmtSparsity(r.sparsity) },
        { class: "num", col: "clean", sig: String(res ? res.clean_accuracy : null), render: () => fmtAcc(res ? res.clean_accuracy : null) },
        { class: "num", col: "robust", sig: String(robust), render: () => fmtAcc(robust) },
        { class: "num", col: "kappa", sig: String(res ? res.condition_number.median : null), render: () => fmtKappa(res ? res.condition_number.median : null) },
      ];
      if (!ctx.readOnly) {
        // A run asked to stop says so until the worker confirms (no second Cancel button).
        cells.push({ sig: `${TERMINAL.has(r.status)}|${r.cancel_requested}`, render: () => !TERMINAL.has(r.status) && (r.cancel_requested
          ? h("span", { class: "muted", "data-stopping": "" }, "stopping…")
          : h("button", { class: "btn small", "data-action": "cancel",
            onclick: action(async () => { runs.set(r.id, await api.cancelRun(r.id)); redraw(); refreshSoon(); }) }, "Cancel")) });
      }
      return cells;
    }, (r) => (selected.has(r.id) ? "selected" : null));
  }

  // ---- data ---------------------------------------------------------------------------------
  async function fetchResult(runId) {
    if (results.has(runId) || fetching.has(runId)) return;
    fetching.add(runId);
    try {
      results.set(runId, await api.runResult(runId));
      redraw();
      summary.refresh();
    } catch (e) {
      if (e.status !== 404) notify(`result of ${runId}: ${errorText(e)}`, "error");
    } finally {
      fetching.delete(runId);
    }
  }

  // Run rows (progress, stage, status) are refreshed from the API while events arrive.
  const refreshSoon = soon(async () => {
    const fresh = await api.getSweep(sweep.id);
    latest = fresh;
    notesBox.update(fresh);
    for (const r of fresh.runs) runs.set(r.id, r);
    for (const r of fresh.runs) if (r.has_result && !results.has(r.id)) fetchResult(r.id);
    redraw();
  }, REFRESH_MS, () => closed);

  // A result is asked for only once the API says the run has one (has_result): no 404s.
  function onStatus(ev) {
    const r = runs.get(runOf(ev));
    // A status event's message belongs to that status: none clears the previous one.
    if (r) runs.set(runOf(ev), { ...r, status: ev.status, message: ev.message ?? null, category: ev.category ?? null });
    if (TERMINAL.has(ev.status)) summary.refresh();
    redraw();
    refreshSoon();
  }

  const stop = listen(api.sweepEvents(sweep.id), {
    status: onStatus,
    evaluation: () => refreshSoon(),
    epoch: () => refreshSoon(),
    stage_started: () => refreshSoon(),
    progress: () => refreshSoon(),
    finished: () => [...runs.values()].every((r) => TERMINAL.has(r.status)),
    onState: (s) => {
      live.set(s);
      if (s === "closed") refreshSoon();
    },
  });

  api.sweepResults(sweep.id).then((res) => {
    for (const r of res.items) results.set(r.run_id, r);
    redraw();
  }, (e) => notify(errorText(e), "error"));

  // ---- layout -------------------------------------------------------------------------------
  const shareState = () => ({ view: "sweep", attack, selected: [...selected], summary: summary.state() });
  const cancelBtn = !ctx.readOnly && h("button", { class: "btn danger", "data-action": "cancel-sweep", onclick: action(async () => {
    if (!window.confirm(`Cancel every unfinished run of ${sweep.name}?`)) return;
    const res = await api.cancelSweep(sweep.id);
    notify(`${res.cancelled.length} cancelled, ${res.cancel_requested.length} asked to stop`, "ok");
    refreshSoon();
  }) }, "Cancel sweep");
  const toolbar = h("div", { class: "toolbar" },
    h("h2", {}, sweep.name), live.el, h("span", { class: "spacer" }),
    !ctx.share && h("a", { class: "btn", href: href("/runs", { sweep: sweep.id }), "data-action": "runs" }, "Runs table"),
    h("button", { class: "btn", "data-action": "results-csv", title: "all results as the API writes them",
      onclick: action(() => api.downloadSweepResultsCsv(sweep.id, `${sweep.name}-results.csv`)) }, "Results CSV"),
    !ctx.share && h("button", { class: "btn", "data-action": "compare", onclick: () => {
      navigate("/compare", selected.size ? { runs: [...selected].join(",") } : { sweeps: sweep.id });
    } }, "Compare"),
    !ctx.share && h("button", { class: "btn", "data-action": "diff", title: "the spec fields in which the selected runs differ", onclick: () => {
      if (selected.size < 2) return notify("Select two or more runs (tick them in the list) to diff.");
      return navigate("/diff", { runs: [...selected].join(",") });
    } }, "Diff"),
    !ctx.readOnly && h("button", { class: "btn", "data-action": "share", onclick: () =>
      shareDialog(shareArea, { name: sweep.name, sweepIds: [sweep.id], state: shareState() }) }, "Share…"),
    cancelBtn);
  const shareArea = h("div", { class: "share-area" });
  const controls = h("div", { class: "chart-controls" },
    h("label", {}, "Robust accuracy under ", attackSelect), selectionInfo,
    h("button", { class: "btn small", "data-action": "clear-selection", onclick: () => { selected.clear(); redraw(); } }, "Clear selection"));

  const head = ["", "Run", "Status", "Progress", "Sparsity", "Clean", "Robust (worst)", "κ median"];
  if (!ctx.readOnly) head.push("");
  const panel = h("section", { class: "sweep-panel", "data-sweep": sweep.id },
    toolbar, headerInfo, notesBox.el, shareArea, summary.el,
    h("div", { class: "toolbar per-run" }, h("h3", {}, "Each run"),
      h("span", { class: "muted" }, "one point per run, seeds joined; κ bars: median → max over the run's layers")),
    controls,
    h("div", { class: "chart-grid three" }, METRICS.map((m) => charts[m].card)),
    h("div", { class: "card" }, h("h3", {}, "Runs"),
      h("div", { class: "table-scroll" }, h("table", { class: "data compact", id: "sweep-runs" },
        h("thead", {}, h("tr", {}, head.map((t) => h("th", {}, t)))), runList))));
  mount(container, panel);

  for (const m of METRICS) {
    const gd = charts[m].graph;
    draw(gd, sweepFigure([], { metric: m })).then(() => {
      gd.on("plotly_click", (ev) => {
        const id = ev?.points?.[0]?.customdata;
        if (id) navigate(`/run/${id}`);
      });
      gd.on("plotly_selected", (ev) => {
        if (!ev) return;
        selected.clear();
        for (const p of ev.points || []) if (p.customdata) selected.add(p.customdata);
        redraw();
      });
      gd.on("plotly_deselect", () => { selected.clear(); redraw(); });
    });
  }
  redraw();

  return {
    state: shareState,
    close() {
      closed = true;
      stop();
      refreshSoon.cancel();
      summary.close();
      for (const m of METRICS) purge(charts[m].graph);
    },
  };
}
