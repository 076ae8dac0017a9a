// Run detail: live training curves per stage, per-layer κ over epochs, singular-value spectra,
// security curve, sanity flags, the resolved spec, checkpoint download and the run's log.

import * as api from "../api.js";
import { h, mount, statusBadge, progressBar, dateTime, notify, action, errorText, everyFrame, soon, TERMINAL } from "../dom.js";
import { href } from "../router.js";
import { listen, liveIndicator } from "../live.js";
import { draw, purge, chartCard } from "../plot.js";
import { toJSON } from "../export.js";
import { annotationBox, canEdit } from "../annotate.js";
import {
  epochSeries, trainingFigure, kappaHeatmapFigure, spectraFigure, securityFigure, fmtAcc, fmtKappa, fmtSparsity,
  withEmptyNote,
} from "../charts.js";

const REFRESH_MS = 1500;
const MAX_LOG_LINES = 500;

export function render(root, ctx) {
  const runId = ctx.params.id;
  let run = null;
  let sweep = null;
  let result = null;
  let evaluation = null;
  let closed = false;
  let stop = () => {};
  const epochs = [];
  const stageEpochs = {};
  const logs = [];

  const live = liveIndicator();
  const title = h("h2", {}, "Run");
  const actions = h("span", { class: "actions" });
  const info = h("div", { class: "card run-info" }, "Loading run…");
  const evalBox = h("div", { class: "card", id: "evaluation" }, h("h3", {}, "Evaluation"), h("p", { class: "muted" }, "Not evaluated yet."));
  const specBox = h("pre", { class: "spec", id: "resolved-spec" }, "…");
  const logBox = h("div", { class: "log", id: "run-log" });
  const series = () => epochSeries(epochs, stageEpochs);
  const curveRows = () => series().map(({ kappas, penalties, ...r }) => ({ ...r, ...penalties,
    ...Object.fromEntries(Object.entries(kappas).map(([k, v]) => [`kappa_${k}`, v])) }));
  const charts = {
    loss: chartCard("chart-loss", `${runId}-loss`, curveRows),
    accuracy: chartCard("chart-accuracy", `${runId}-accuracy`, curveRows),
    kappa: chartCard("chart-kappa-layers", `${runId}-kappa-layers`, curveRows),
    spectra: chartCard("chart-spectra", `${runId}-spectra`, () => (evaluation?.spectra || []).flatMap((s) =>
      s.singular_values.map((v, i) => ({ layer: s.layer, index: i + 1, singular_value: v, condition_number: s.condition_number })))),
    security: chartCard("chart-security", `${runId}-security`, () => (evaluation?.security_curve || []).map(([e, a]) => ({ epsilon: e, accuracy: a }))),
  };

  // Back to where the run belongs: its sweep (the link is set once the run is known).
  const back = ctx.share ? h("a", { class: "btn", href: "#/" }, "‹ Dashboard") : h("a", { class: "btn", href: "#/runs", "data-action": "back" }, "‹ Runs");
  mount(root,
    h("div", { class: "toolbar" }, back, title, live.el, h("span", { class: "spacer" }), actions),
    info,
    h("div", { class: "chart-grid two" }, charts.loss.card, charts.accuracy.card, charts.kappa.card, charts.spectra.card, charts.security.card, evalBox),
    h("div", { class: "chart-grid two" },
      h("div", { class: "card" }, h("h3", {}, "Log"), logBox),
      h("div", { class: "card" }, h("h3", {}, "Resolved spec"), specBox)));

  // ---- drawing ----------------------------------------------------------------------------
  const redraw = everyFrame(drawNow, () => closed);
  function drawNow() {
    const s = series();
    const noEpoch = "No epoch finished yet";
    const notEvaluated = run && TERMINAL.has(run.status) && !run.has_result
      ? `Not evaluated: the run ${run.status} before its evaluation` : "Appears once the run is evaluated";
    draw(charts.loss.graph, withEmptyNote(trainingFigure(s, "loss"), noEpoch));
    draw(charts.accuracy.graph, withEmptyNote(trainingFigure(s, "accuracy"), noEpoch));
    draw(charts.kappa.graph, kappaHeatmapFigure(s));
    draw(charts.spectra.graph, withEmptyNote(spectraFigure(evaluation?.spectra || []), notEvaluated));
    draw(charts.security.graph, withEmptyNote(securityFigure(evaluation ? [{ name: run?.key || runId, points: evaluation.security_curve }] : []), notEvaluated));
    drawInfo();
    drawEvaluation();
    drawLog();
  }

  // The target sparsity, and the one reached: the result's, or the monitor's once pruning
  // started (before that nothing is pruned yet, which is not a result of "actual 0").
  function sparsityText(r, res) {
    const actual = res?.sparsity_actual ?? r.sparsity_actual;
    if (actual != null) return `${fmtSparsity(r.sparsity)} (actual ${fmtSparsity(actual)})`;
    const m = r.monitor;
    if (m && m.stage !== "pretrain" && m.sparsity != null) return `${fmtSparsity(r.sparsity)} (now ${fmtSparsity(m.sparsity)})`;
    return `${fmtSparsity(r.sparsity)} (not pruned yet)`;
  }

  let notesBox = null; // made once the run is known; kept across redraws (an open editor stays)
  function drawInfo() {
    if (!run) return;
    if (!notesBox) {
      notesBox = annotationBox(run, { editable: canEdit(ctx, run.owner), save: (body) => api.annotateRun(run.id, body),
        onSaved: (r) => { run = r; } });
    } else notesBox.update(run);
    title.textContent = run.key;
    if (!ctx.share) {
      back.setAttribute("href", href(`/sweep/${run.sweep_id}`));
      back.textContent = `‹ ${sweep ? sweep.name : "Sweep"}`;
    }
    document.title = `${run.key} · TSCNC`;
    const row = (k, v) => h("div", {}, h("dt", {}, k), h("dd", {}, v));
    mount(info,
      h("div", { class: "run-status" }, statusBadge(run.status), progressBar(run.progress, run.status),
        h("span", { class: "muted" }, run.stage ? `${run.stage}${run.epoch ? ` epoch ${run.epoch}` : ""}` : ""),
        run.cancel_requested && !TERMINAL.has(run.status) && h("span", { class: "notice" }, "cancel requested")),
      run.message && h("p", { class: `message ${run.status === "failed" ? "error" : ""}`, id: "run-message" },
        run.category ? `${run.category}: ` : "", run.message),
      h("dl", { class: "facts" },
        row("sweep", h("a", { href: ctx.share ? "#/" : href(`/sweep/${run.sweep_id}`) }, sweep ? sweep.name : run.sweep_id)),
        row("method", run.method), row("sparsity", sparsityText(run, result)),
        row("seed", run.seed), row("clean / robust", run.has_result ? `${fmtAcc(run.clean_accuracy)} / ${fmtAcc(run.robust_accuracy)}` : "– (not evaluated yet)"),
        row("κ median", run.has_result ? fmtKappa(run.kappa_median) : "–"),
        run.monitor && !run.has_result && row("monitor", h("span", { id: "run-monitor", title: "the training monitor's last epoch: progress, not results" },
          `${run.monitor.stage} epoch ${run.monitor.epoch}: clean ${fmtAcc(run.monitor.clean_accuracy)}, robust ${fmtAcc(run.monitor.robust_accuracy)}, ` +
          `κ median ${fmtKappa(run.monitor.kappa_median)}`)),
        row("worker", run.worker ? `${run.worker} (${run.device || "?"})` : "–"), row("attempts", run.attempts),
        row("created", dateTime(run.created)), row("started", dateTime(run.started)), row("finished", dateTime(run.finished)),
        row("id", h("code", {}, run.id))),
      notesBox.el);
    mount(actions,
      h("a", { class: "btn", href: `#/compare?runs=${run.id}`, hidden: Boolean(ctx.share) }, "Compare…"),
      run.has_checkpoint && !(ctx.share && !ctx.share.dashboard?.allow_checkpoints) && h("button", { class: "btn", id: "checkpoint",
        onclick: action(() => api.downloadCheckpoint(run.id, `${run.key}.pt`)) }, "Checkpoint"),
      !ctx.readOnly && !TERMINAL.has(run.status) && !run.cancel_requested && h("button", { class: "btn danger", "data-action": "cancel",
        onclick: action(async () => { run = await api.cancelRun(run.id); redraw(); }) }, "Cancel"),
      !ctx.readOnly && (run.status === "failed" || run.status === "cancelled") && h("button", { class: "btn", "data-action": "retry",
        onclick: action(async () => { run = await api.retryRun(run.id); notify("Queued again", "ok"); restart(); }) }, "Retry"));
  }

  function drawEvaluation() {
    const ev = evaluation;
    if (!ev) return;
    const flags = ev.flags || [];
    mount(evalBox, h("h3", {}, "Evaluation"),
      h("p", {}, `clean accuracy ${fmtAcc(ev.clean_accuracy)}`,
        ev.lipschitz_upper != null ? ` · Lipschitz bound ${Number(ev.lipschitz_upper).toPrecision(3)}` : "",
        ev.lipschitz_empirical != null ? ` · empirical ${Number(ev.lipschitz_empirical).toPrecision(3)}` : ""),
      h("div", { id: "flags", class: flags.length ? "flags warn" : "flags ok" },
        flags.length ? ["⚠ sanity flags: ", flags.map((f) => h("span", { class: "flag", "data-flag": f }, f))]
          : "✓ no sanity flags (no sign of gradient masking)"),
      h("table", { class: "data compact" },
        h("thead", {}, h("tr", {}, ["attack", "ε", "steps", "accuracy", "examples", "seed", "library"].map((t) => h("th", {}, t)))),
        h("tbody", {}, (ev.attacks || []).map((a) => h("tr", {},
          h("td", {}, a.attack), h("td", { class: "num" }, Number(a.epsilon).toPrecision(3)), h("td", { class: "num" }, a.steps),
          h("td", { class: "num" }, fmtAcc(a.accuracy)), h("td", { class: "num" }, a.examples), h("td", { class: "num" }, a.seed),
          h("td", {}, a.library))))));
  }

  function drawLog() {
    mount(logBox, logs.length ? logs.slice(-MAX_LOG_LINES).map((l) => h("div", { class: `log-line level-${l.level}` },
      h("span", { class: "log-time" }, new Date(l.time * 1000).toLocaleTimeString()), " ", h("span", {}, l.text)))
      : h("p", { class: "muted" }, "No log lines yet."));
  }

  // ---- data ---------------------------------------------------------------------------------
  const refreshSoon = soon(async () => {
    run = await api.getRun(runId);
    if (run.has_result && !result) {
      result = await api.runResult(runId);
      showSpec();
    }
    redraw();
  }, REFRESH_MS, () => closed);

  function showSpec() {
    const spec = result?.spec || sweep?.spec;
    if (spec) specBox.textContent = toJSON(spec);
  }

  const log = (ev, text, level = "info") => logs.push({ time: ev.time, level, text });

  function connect() {
    stop = listen(api.runEvents(runId), {
      stage_started: (ev) => {
        stageEpochs[ev.stage] = ev.epochs;
        log(ev, `${ev.stage} started${ev.epochs ? ` (${ev.epochs} epochs)` : ""}${ev.resumed_from_epoch ? `, resumed after epoch ${ev.resumed_from_epoch}` : ""}`);
        refreshSoon();
        redraw();
      },
      stage_finished: (ev) => { log(ev, `${ev.stage} finished in ${ev.seconds.toFixed(1)} s`); redraw(); },
      epoch: (ev) => { epochs.push(ev); refreshSoon(); redraw(); },
      progress: () => refreshSoon(),
      evaluation: (ev) => { evaluation = ev.evaluation; redraw(); },
      status: (ev) => {
        log(ev, `status ${ev.status}${ev.category ? ` (${ev.category})` : ""}${ev.message ? `: ${ev.message}` : ""}`,
          ev.status === "failed" ? "error" : "info");
        // A status event's message belongs to that status: none clears the previous one.
        if (run) run = { ...run, status: ev.status, message: ev.message ?? null, category: ev.category ?? null };
        refreshSoon();
        redraw();
      },
      log: (ev) => { log(ev, ev.message, ev.level); redraw(); },
      onState: (s) => live.set(s),
      finished: () => Boolean(run && TERMINAL.has(run.status)),
    });
  }

  function restart() {
    stop();
    epochs.length = 0;
    logs.length = 0;
    evaluation = null;
    result = null;
    connect();
    refreshSoon();
  }

  api.getRun(runId).then(async (r) => {
    run = r;
    redraw();
    try {
      sweep = await api.getSweep(r.sweep_id);
      showSpec();
      redraw();
    } catch { /* the spec also arrives with the result */ }
  }, (e) => mount(info, h("span", { class: "error" }, errorText(e))));
  connect();

  return () => {
    closed = true;
    stop();
    refreshSoon.cancel();
    for (const c of Object.values(charts)) purge(c.graph);
  };
}
