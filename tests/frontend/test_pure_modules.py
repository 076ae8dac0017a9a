"""Unit tests of the front end's pure modules (charts.js, specform.js, export.js, router.js, and
filters.js's field lists), run in Chromium on a plain static server: data in, figure/value out,
no API involved (the vocabularies are read from the API's own OpenAPI document, built here)."""

from __future__ import annotations

import math
from typing import Any

import pytest

from tscnc import palette
from tscnc.spec import Method

INF = "Infinity"



def run(rid: str, method: str, sparsity: float, seed: int = 0) -> dict[str, Any]:
    return {"id": rid, "key": f"{method}-s{sparsity:g}-seed{seed}", "sweep_id": "sw1",
            "method": method, "sparsity": sparsity, "seed": seed, "status": "succeeded"}


def result(clean: float, robust: dict[str, float], med: Any, mx: Any) -> dict[str, Any]:
    return {"clean_accuracy": clean, "robust_accuracy": robust, "sparsity_actual": 0.5,
            "condition_number": {"median": med, "max": mx, "per_layer": {}}, "flags": []}


RUNS = [run("a", "tscnc", 0.9), run("b", "hydra", 0.5), run("c", "dense", 0.0),
        run("d", "tscnc", 0.5), run("e", "hydra", 0.9)]
RESULTS = {
    "a": result(0.7, {"fgsm": 0.5, "pgd": 0.4}, 12.0, 30.0),
    "b": result(0.8, {"fgsm": 0.6, "pgd": 0.45}, 8.0, INF),
    "c": result(0.9, {"fgsm": 0.55, "pgd": 0.5}, 5.0, 9.0),
    "d": result(0.85, {"fgsm": 0.65, "pgd": 0.55}, INF, INF),
    # "e" has no result yet: it is not a point
}


def test_sweep_figures_one_trace_per_method_sorted_by_sparsity(js: Any) -> None:
    figs = js("""
        const pts = charts.sweepPoints(arg.runs, arg.results);
        return ['clean', 'robust', 'kappa'].map((m) => charts.sweepFigure(pts, {metric: m, attack: 'pgd', selected: ['a']}));
    """, {"runs": RUNS, "results": RESULTS})
    clean, robust, kappa = figs
    assert [t["name"] for t in clean["data"]] == ["dense", "hydra", "tscnc"]  # method order
    tscnc = clean["data"][2]
    assert tscnc["x"] == ["0.5", "0.9"] and tscnc["y"] == [0.85, 0.7]
    assert tscnc["customdata"] == ["d", "a"]
    assert clean["layout"]["xaxis"]["categoryarray"] == ["0", "0.5", "0.9"]
    assert robust["data"][2]["y"] == [0.55, 0.4]
    assert "pgd" in robust["layout"]["title"]["text"]
    # the selection is drawn in every chart, by point index within each trace
    for fig in figs:
        assert [t.get("selectedpoints") for t in fig["data"]] == [[], [], [1]]
    # κ: log axis, max as an upward error bar, ∞ drawn on the ∞ band above every finite value
    assert kappa["layout"]["yaxis"]["type"] == "log"
    cap = 10.0 ** 3        # finite values up to 30: decades to 10^2, the ∞ band at 10^3
    hydra, tsc = kappa["data"][1], kappa["data"][2]
    assert hydra["y"] == [8.0] and hydra["error_y"]["array"] == [cap - 8.0]
    assert tsc["y"] == [cap, 12.0] and tsc["error_y"]["array"] == [0, 18.0]
    assert tsc["marker"]["symbol"] == ["triangle-up", "circle"]
    assert "∞" in tsc["text"][0]


def test_infinite_kappa_sits_on_the_labelled_band(js: Any) -> None:
    """κ = ∞ (issue 10, item 5): a triangle on an "∞" band at the top of the κ axis, labelled ∞,
    above every finite value; not a finite number on a plain log axis."""
    runs = [run("h", "hydra", 0.99), run("t", "tscnc", 0.99), run("u", "tscnc", 0.9)]
    results = {"h": result(0.4, {"pgd": 0.3}, INF, INF), "t": result(0.4, {"pgd": 0.3}, INF, INF),
               "u": result(0.9, {"pgd": 0.7}, 1500.0, 4000.0)}
    out = js("""
        const pts = charts.sweepPoints(arg.runs, arg.results);
        return [charts.sweepFigure(pts, {metric: 'kappa'}), charts.kappaAxis([3, 120, Infinity]),
                charts.kappaAxis([Infinity])];
    """, {"runs": runs, "results": results})
    fig, axis, only_inf = out
    assert axis == {"low": 0, "topFinite": 3, "bandFrom": 3.5, "infAt": 4, "high": 4.5}
    assert only_inf["infAt"] > 0
    y = fig["layout"]["yaxis"]
    # finite values up to 4000: decades 10^3..10^4, the band from 10^4.5, ∞ drawn at 10^5
    assert y["type"] == "log" and y["range"] == [3, 5.5]
    labels = dict(zip(y["ticktext"], y["tickvals"], strict=True))
    assert labels["∞"] == 1e5 and max(v for k, v in labels.items() if k != "∞") == 1e4
    (band,) = fig["layout"]["shapes"]
    assert band["yref"] == "y" and band["y0"] == pytest.approx(10 ** 4.5)
    assert band["y0"] < 1e5 < band["y1"] == pytest.approx(10 ** 5.5)
    assert any("∞" in a["text"] for a in fig["layout"]["annotations"])
    on_band = [(t["name"], x) for t in fig["data"]
               for x, yy, sym in zip(t["x"], t["y"], t["marker"]["symbol"], strict=True)
               if yy == 1e5 and sym == "triangle-up"]
    assert sorted(on_band) == [("hydra", "0.99"), ("tscnc", "0.99")]
    tscnc = next(t for t in fig["data"] if t["name"] == "tscnc")
    assert tscnc["y"] == [1500.0, 1e5] and tscnc["marker"]["symbol"] == ["circle", "triangle-up"]
    assert tscnc["error_y"]["array"][0] == pytest.approx(4000.0 - 1500.0)


def test_robust_value_worst_attack_and_default_attack(js: Any) -> None:
    out = js("""
        const pts = charts.sweepPoints(arg.runs, arg.results);
        const p = pts.find((x) => x.run_id === 'b');
        return [charts.robustValue(p, charts.WORST_ATTACK), charts.robustValue(p, 'fgsm'),
                charts.robustValue(p, 'cw'), charts.attackNames(pts), charts.defaultAttack(pts),
                charts.defaultAttack([])];
    """, {"runs": RUNS, "results": RESULTS})
    assert out == [0.45, 0.6, None, ["fgsm", "pgd"], "pgd", "worst"]


def test_point_rows_and_csv_follow_the_api_csv(js: Any) -> None:
    text = js("""
        const pts = charts.sweepPoints(arg.runs, arg.results);
        return exp.toCSV(charts.pointRows(pts));
    """, {"runs": RUNS, "results": RESULTS})
    lines = text.strip().split("\n")
    assert lines[0] == ("run,key,sweep,method,sparsity,sparsity_actual,seed,clean_accuracy,"
                        "robust_fgsm,robust_pgd,kappa_median,kappa_max,flags")
    assert len(lines) == 5
    assert lines[2].startswith("b,hydra-s0.5-seed0,sw1,hydra,0.5,0.5,0,0.8,0.6,0.45,8,inf,")
    assert js("""return exp.toCSV([{a: 'x,"y"', b: null, c: [1, 2]}]);""") == 'a,b,c\n"x,""y""",,"[1,2]"\n'
    assert js("return exp.toJSON({k: Infinity});") == '{\n  "k": "Infinity"\n}'


def test_epoch_series_dedupes_resumed_epochs_and_lays_stages_end_to_end(js: Any) -> None:
    def ev(stage: str, epoch: int, epochs: int, loss: float) -> dict[str, Any]:
        return {"type": "epoch", "stage": stage, "epoch": epoch, "epochs": epochs, "loss": loss,
                "clean_accuracy": 0.5, "robust_accuracy": 0.3, "lr": 0.1, "sparsity": 0.0,
                "condition_numbers": {"fc1": 3.0, "fc2": INF}, "penalties": {}}
    events = [ev("pretrain", 1, 3, 2.0), ev("pretrain", 2, 3, 1.5), ev("pretrain", 2, 3, 1.4),
              {"type": "progress"}, ev("finetune", 1, 2, 1.0), ev("prune", 1, 1, 1.2)]
    rows, heat, loss = js("""
        const s = charts.epochSeries(arg);
        return [s.map((r) => [r.stage, r.epoch, r.x, r.loss]), charts.kappaHeatmapFigure(s),
                charts.trainingFigure(s, 'loss')];
    """, events)
    assert rows == [["pretrain", 1, 1, 2.0], ["pretrain", 2, 2, 1.4], ["prune", 1, 4, 1.2],
                    ["finetune", 1, 5, 1.0]]
    z = heat["data"][0]["z"]
    assert heat["data"][0]["y"] == ["fc1", "fc2"]
    assert z[0] == [pytest.approx(math.log10(3.0))] * 4
    assert z[1] == [pytest.approx(math.log10(3.0) + 1)] * 4  # ∞ drawn at the top of the scale
    assert "∞" in heat["data"][0]["text"][1][0]
    assert [t["name"] for t in loss["data"]] == ["pretrain", "prune", "finetune"]


def test_spectra_and_security_figures(js: Any) -> None:
    spec, sec, count = js("""
        const sp = charts.spectraFigure([{layer: 'fc1', shape: [4, 3], singular_values: [3, 2, 1],
                                         condition_number: 3, sparsity: 0.5}]);
        const se = charts.securityFigure([{name: 'r', points: [[0, 0.9], [0.1, 0.5]]}]);
        return [sp, se, charts.pointCount(se)];
    """)
    assert spec["data"][0]["x"] == [1, 2, 3] and spec["layout"]["yaxis"]["type"] == "log"
    assert sec["data"][0]["y"] == [0.9, 0.5] and count == 2


def test_spec_form_reads_bounds_from_the_openapi_schema_and_places_422s(js: Any) -> None:
    schema = {"components": {"schemas": {
        "SweepSpec": {"properties": {
            "training": {"$ref": "#/components/schemas/TrainingSpec"},
            "methods": {"type": "array", "minItems": 1, "items": {"$ref": "#/components/schemas/Method"}},
            "sparsities": {"type": "array", "minItems": 1, "maxItems": 3,
                           "items": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1}},
        }},
        "TrainingSpec": {"properties": {"pretrain_epochs": {"type": "integer", "minimum": 0, "maximum": 1000}}},
        "AdversarialSpec": {"properties": {}},
        "Method": {"type": "string", "enum": ["dense", "tscnc"]},
    }}}
    out = js("""
        const f = (p) => specform.FIELDS.find((x) => x.path === p);
        const fs = (p) => specform.fieldSchema(arg, p);
        return [
            specform.choices(fs('methods')),
            specform.parseField(f('training.pretrain_epochs'), '1001', fs('training.pretrain_epochs')).error,
            specform.parseField(f('training.pretrain_epochs'), '2.5', fs('training.pretrain_epochs')).error,
            specform.parseField(f('training.pretrain_epochs'), '12', fs('training.pretrain_epochs')),
            specform.parseField(f('sparsities'), '0.5, 1', fs('sparsities')).error,
            specform.parseField(f('sparsities'), '0.5 0.9', fs('sparsities')),
            specform.parseField(f('methods'), [], fs('methods')).error,
            specform.boundsText(fs('training.pretrain_epochs').schema),
            specform.locateError({loc: ['body', 'spec', 'sparsities', 1], msg: 'bad'}),
            specform.locateError({loc: ['body', 'spec', 'training', 'pretrain_epochs'], msg: 'too many'}),
            specform.locateError({loc: ['body', 'spec'], msg: 'expands to 2000 runs'}),
            specform.locateError({loc: ['body', 'preset'], msg: 'unknown preset'}),
            specform.locateError({loc: ['body', 'spec', 'pruning', 'skip_layers'], msg: 'x'}),
            specform.runCount(['dense', 'hydra', 'tscnc'], [0.5, 0.9], [0, 1]),
            specform.deepMerge({a: {b: 1, c: [1]}, d: 1}, {a: {c: [2]}, e: 2}),
        ];
    """, schema)
    assert out[0] == ["dense", "tscnc"]
    assert out[1] == "must be ≤ 1000" and out[2] == "must be a whole number"
    assert out[3] == {"value": 12, "error": None}
    assert out[4] == "“1” must be < 1"
    assert out[5] == {"value": [0.5, 0.9], "error": None}
    assert out[6] == "choose at least 1"
    assert out[7] == "0 ≤ x ≤ 1000"
    assert out[8] == {"path": "sparsities", "message": "value 2: bad"}
    assert out[9] == {"path": "training.pretrain_epochs", "message": "too many"}
    assert out[10] == {"path": None, "message": "expands to 2000 runs"}
    assert out[11] == {"path": "preset", "message": "unknown preset"}
    assert out[12] == {"path": None, "message": "pruning.skip_layers: x"}
    assert out[13] == 10
    assert out[14] == {"a": {"b": 1, "c": [2]}, "d": 1, "e": 2}


def test_router_matches_and_builds_hashes(js: Any) -> None:
    out = js("""
        const pats = ['/', '/sweeps', '/sweep/:id', '/run/:id'];
        return [router.match('#/sweep/abc?attack=pgd', pats), router.match('', pats),
                router.match('#/nope/x/y', pats), router.href('/runs', {sweep: 'a b', status: ''})];
    """)
    assert out[0] == {"pattern": "/sweep/:id", "params": {"id": "abc"}, "query": {"attack": "pgd"}}
    assert out[1]["pattern"] == "/"
    assert out[2] is None
    assert out[3] == "#/runs?sweep=a+b"


def test_csv_neutralises_formulas_in_text_and_keeps_numbers(js: Any) -> None:
    rows = [{"name": "=cmd|' /C calc'!A0", "key": "+1+1", "tag": "-2+3", "who": "@SUM(A1)",
             "tab": "\tx", "cr": "\rx", "text_number": "-0.5", "x": -0.5, "k": -math.inf,
             "plain": "tscnc-s0.9", "flags": None}]
    text = js("return exp.toCSV(arg);", rows)
    header, line, end = text.split("\n")
    assert end == "" and header == ",".join(rows[0])
    # Each text cell that a spreadsheet would evaluate gets a leading quote (and CSV quoting
    # where it holds a double quote, CR or comma); numbers, plain numeric text and other text
    # do not.
    assert line == ("'=cmd|' /C calc'!A0,'+1+1,'-2+3,'@SUM(A1),'\tx,\"'\rx\",-0.5,-0.5,"
                    "-inf,tscnc-s0.9,")
    assert js("return exp.toCSV([{'=x': 1}]);") == "'=x\n1\n"
    assert js("return [exp.spreadsheetSafe('-1e-3'), exp.spreadsheetSafe('- 1'), "
              "exp.spreadsheetSafe('a=b')];") == ["-1e-3", "'- 1", "a=b"]


def test_sse_parser_handles_split_lines_crlf_comments_and_retry(page: Any,
                                                               static_frontend: str) -> None:
    page.goto(static_frontend + "/js/")
    chunks = [": keep-alive\r", "\nretry: 1500\n\nid: 1-0\nevent: ep", "och\ndata: {\"a\":",
              "1}\r\n\r", "\nid: 2-0\ndata: line one\ndata: line two\n\n", "event: log\n\n",
              "id: 3-0\nevent: status\ndata:\n\ndata: no type\nid: 4-0\n", "\n"]
    out = page.evaluate("""async (chunks) => {
        const { SSEParser } = await import('/js/sse.js');
        const events = [], retries = [];
        const p = new SSEParser((e) => events.push(e), (ms) => retries.push(ms));
        for (const c of chunks) p.feed(c);
        return { events, retries };
    }""", chunks)
    assert out["retries"] == [1500]
    assert out["events"] == [
        {"type": "epoch", "data": '{"a":1}', "lastEventId": "1-0"},
        {"type": "message", "data": "line one\nline two", "lastEventId": "2-0"},
        # "event: log" with no data dispatches nothing; an empty data line is an event
        {"type": "status", "data": "", "lastEventId": "3-0"},
        {"type": "message", "data": "no type", "lastEventId": "4-0"},
    ]


def test_event_stream_resumes_with_last_event_id_and_rides_out_503(page: Any,
                                                                     static_frontend: str) -> None:
    # The server's answers, in order (real Response objects handed to the reader): 503 while
    # the service restarts, a stream that ends after two events, then 204 (finished).
    page.goto(static_frontend + "/js/")
    out = page.evaluate("""async () => {
        const { EventStream } = await import('/js/sse.js');
        const sse = { 'Content-Type': 'text/event-stream' };
        const answers = [
          () => new Response('unavailable', { status: 503 }),
          () => new Response('retry: 10\\nid: 5-0\\nevent: epoch\\ndata: {"e":1}\\n\\n' +
                             'id: 6-0\\nevent: status\\ndata: {"s":"x"}\\n\\n', { status: 200, headers: sse }),
          () => new Response(null, { status: 204 }),
        ];
        const sent = [];
        const fetchImpl = async (url, init) => { sent.push({ ...init.headers }); return answers[sent.length - 1](); };
        return await new Promise((resolve) => {
          const got = [], states = [];
          const s = new EventStream('/x/events', { headers: () => ({ Authorization: 'Bearer t' }), retryMs: 10, fetchImpl });
          for (const t of ['epoch', 'status']) s.addEventListener(t, (m) => got.push([m.type, m.data, m.lastEventId]));
          s.onopen = () => states.push('open');
          s.onerror = (e) => { states.push(`error ${e.status}`); if (s.readyState === s.CLOSED) resolve({ got, states, sent }); };
        });
    }""")
    assert out["got"] == [["epoch", '{"e":1}', "5-0"], ["status", '{"s":"x"}', "6-0"]]
    assert out["states"] == ["error 0", "open", "error 0", "error 204"]
    assert [h.get("Last-Event-ID") for h in out["sent"]] == [None, None, "6-0"]
    assert all(h["Authorization"] == "Bearer t" for h in out["sent"])


# ---- vocabularies from the OpenAPI document (issue 15): no copies in the front end -------------

@pytest.fixture(scope="module")
def openapi() -> dict[str, Any]:
    """The API's own OpenAPI document."""
    from backend.app import create_app
    return create_app().openapi()


def test_the_api_publishes_the_one_palette(openapi: dict[str, Any], js: Any) -> None:
    assert [m.value for m in Method] == palette.METHOD_ORDER
    assert set(palette.METHOD_COLORS) == set(palette.METHOD_ORDER)
    got = js("return specform.methodPalette(arg);", openapi)
    assert got == {"order": palette.METHOD_ORDER, "colors": palette.METHOD_COLORS}


def test_charts_draw_in_the_palettes_order_and_colours(openapi: dict[str, Any], js: Any) -> None:
    runs = [{"id": m, "key": m, "sweep_id": "s", "method": m, "sparsity": 0.0 if m == "dense" else 0.5,
             "seed": 0, "status": "succeeded"} for m in ("tscnc", "dense", "hydra")]
    results = {r["id"]: {"clean_accuracy": 0.9, "robust_accuracy": {"pgd": 0.5}, "sparsity_actual": 0.5,
                         "condition_number": {"median": 3.0, "max": 4.0, "per_layer": {}}, "flags": []}
               for r in runs}
    out = js("""
        const names = () => charts.sweepFigure(charts.sweepPoints(arg.runs, arg.results), {metric: 'clean'})
            .data.map((t) => [t.name, t.marker.color]);
        charts.usePalette(specform.methodPalette(arg.openapi));
        const api = names();
        const order = [...charts.METHOD_ORDER].reverse();
        charts.usePalette({order, colors: {hydra: '#000000'}});
        const reversed = names();
        return [api, reversed];
    """, {"runs": runs, "results": results, "openapi": openapi})
    api, reversed = out
    assert api == [[m, palette.METHOD_COLORS[m]] for m in ("dense", "hydra", "tscnc")]
    assert [n for n, _ in reversed] == ["tscnc", "hydra", "dense"] and reversed[1][1] == "#000000"


def test_list_filters_and_sort_fields_are_the_apis(openapi: dict[str, Any], js: Any) -> None:
    from backend.schemas import RunSort
    from tscnc.records import RunStatus
    from tscnc.resources import SweepStatus
    runs, sweeps, names, sortable, statuses = js("""
        return [filters.listFilters(arg, '/runs'), filters.listFilters(arg, '/sweeps', {mine: false}),
                [filters.filterNames(arg, '/sweeps'), filters.filterNames(null, '/sweeps')],
                specform.choices(specform.queryParam(arg, '/runs', 'sort')), specform.enumOf(arg, 'RunStatus')];
    """, openapi)
    by = {f["name"]: f for f in runs}
    assert list(by) == ["q", "tag", "status", "method", "dataset", "model", "mine", "from", "to",
                        "metric", "min", "max", "sweep", "order"]
    assert by["status"]["kind"] == "select" and [v for v, _ in by["status"]["options"]] == [s.value for s in RunStatus]
    assert [v for v, _ in by["method"]["options"]] == palette.METHOD_ORDER
    assert by["metric"]["options"] == [["robust_accuracy", "robust"], ["clean_accuracy", "clean"],
                                       ["kappa_median", "κ median"], ["sparsity_actual", "sparsity"]]
    assert by["order"]["options"] == [["asc", "oldest first"]] and by["order"]["all"] == "newest first"
    assert by["min"]["kind"] == by["max"]["kind"] == "number" and by["mine"]["kind"] == "check"
    assert by["q"]["kind"] == "text" and by["from"]["kind"] == "date"
    sweep_by = {f["name"]: f for f in sweeps}
    assert list(sweep_by) == ["q", "tag", "status", "method", "dataset", "model", "from", "to"]
    assert [v for v, _ in sweep_by["status"]["options"]] == [s.value for s in SweepStatus]
    assert "finished" in [v for v, _ in sweep_by["status"]["options"]]
    assert names[0] == ["q", "tag", "status", "method", "dataset", "model", "mine", "from", "to"]
    assert "order" in names[1]          # without the document: every filter the URL may hold
    assert sortable == [s.value for s in RunSort]
    assert statuses == [s.value for s in RunStatus]


def test_the_charts_colours_name_the_apis_verdicts_and_stages(openapi: dict[str, Any], page: Any,
                                                               static_frontend: str) -> None:
    page.goto(static_frontend + "/js/")
    verdicts, stages, api_verdicts, api_stages = page.evaluate("""async (arg) => {
        const charts = await import('/js/charts.js');
        const cs = await import('/js/charts_summary.js');
        const specform = await import('/js/specform.js');
        return [cs.VERDICTS, charts.STAGE_ORDER, specform.enumOf(arg, 'Verdict'), specform.enumOf(arg, 'Stage')];
    }""", openapi)
    assert verdicts == api_verdicts
    assert stages == [s for s in api_stages if s != "evaluate"]      # the stages that train


def test_a_knobs_description_is_its_hint(js: Any) -> None:
    schema = {"components": {"schemas": {
        "SweepSpec": {"properties": {"training": {"$ref": "#/components/schemas/TrainingSpec"}}},
        "TrainingSpec": {"properties": {
            "lr": {"type": "number", "exclusiveMinimum": 0, "description": "SGD step size.\n\nLonger text."},
            "batch_size": {"anyOf": [{"type": "integer"}, {"type": "null"}], "description": "examples per step"},
            "epochs": {"type": "integer"}}},
    }}}
    out = js("""
        const d = (p) => specform.describe(specform.fieldSchema(arg, p));
        return [d('training.lr'), d('training.batch_size'), d('training.epochs'), d('nope')];
    """, schema)
    assert out == ["SGD step size.", "examples per step", "", ""]


def test_every_form_field_is_a_documented_knob_of_the_servers_spec(openapi: dict[str, Any],
                                                                   js: Any) -> None:
    """Each field the form shows resolves in the API's own SweepSpec schema, with a hint."""
    out = js("""
        return specform.FIELDS.map((f) => {
            const fs = specform.fieldSchema(arg, f.path);
            return [f.path, Boolean(fs), fs ? specform.describe(fs) : ""];
        });
    """, openapi)
    assert {"constraints.tsc_reduction", "constraints.cnc_every",
            "constraints.cnc_layer_subset"} <= {p for p, _, _ in out}
    assert [p for p, found, _ in out if not found] == []
    assert [p for p, _, hint in out if not hint] == []
