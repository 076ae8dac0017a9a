"""DESIGN §2 boundary 5 and §6: one front-end module knows the API's URLs, the chart code is
pure, and nothing is loaded from the network (no CDN: it must work offline)."""

from __future__ import annotations

import re
from pathlib import Path

FRONTEND = Path(__file__).resolve().parents[2] / "frontend"
SOURCES = sorted(p for p in FRONTEND.rglob("*") if p.suffix in {".js", ".html", ".css"})


def test_only_api_js_spells_api_urls() -> None:
    offenders = [p.relative_to(FRONTEND).as_posix() for p in SOURCES
                 if p.suffix == ".js" and "/api/" in p.read_text() and p.name != "api.js"]
    assert offenders == []
    assert "/api/v1" in (FRONTEND / "js" / "api.js").read_text()


def test_chart_and_form_logic_is_pure() -> None:
    impure = re.compile(r"\b(document|window|fetch|EventSource|Plotly|localStorage|import)\b")
    for name in ("charts.js", "specform.js"):
        code = re.sub(r"//.*|/\*.*?\*/", "", (FRONTEND / "js" / name).read_text(), flags=re.S)
        assert not impure.findall(code), f"{name} uses {set(impure.findall(code))}"


def test_nothing_comes_from_another_origin() -> None:
    remote = re.compile(r"""(src|href)\s*=\s*["'](https?:)?//|url\(\s*["']?(https?:)?//|import\s*\(?\s*["']https?:""")
    offenders = [p.name for p in SOURCES if remote.search(p.read_text())]
    assert offenders == []
    assert 'PLOTLY_JS = "/static/plotly.min.js"' in (FRONTEND / "js" / "api.js").read_text()
