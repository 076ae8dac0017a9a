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


def strip_comments(code: str) -> str:
    """JS without its comments: /* blocks */ (across lines), then // to the end of a line."""
    return re.sub(r"//[^\n]*", "", re.sub(r"/\*.*?\*/", "", code, flags=re.S))


def test_chart_and_form_logic_is_pure() -> None:
    impure = re.compile(r"\b(document|window|fetch|EventSource|Plotly|localStorage|import)\b")
    for name in ("charts.js", "specform.js"):
        code = strip_comments((FRONTEND / "js" / name).read_text())
        assert not impure.findall(code), f"{name} uses {set(impure.findall(code))}"


def test_summary_charts_and_grid_logic_are_pure() -> None:
    """charts_summary.js and grid.js (issue #12) may import only the pure modules above."""
    impure = re.compile(r"\b(document|window|fetch|EventSource|Plotly|localStorage)\b")
    for name in ("charts_summary.js", "grid.js"):
        code = strip_comments((FRONTEND / "js" / name).read_text())
        assert not impure.findall(code), f"{name} uses {set(impure.findall(code))}"
        imported = re.findall(r"""\bimport\b[^;]*?from\s*["']([^"']+)["']""", code, flags=re.S)
        assert imported and set(imported) <= {"./charts.js", "./specform.js"}, (name, imported)
        assert len(re.findall(r"\bimport\b", code)) == len(imported), f"{name}: a dynamic import"


def test_nothing_comes_from_another_origin() -> None:
    remote = re.compile(r"""(src|href)\s*=\s*["'](https?:)?//|url\(\s*["']?(https?:)?//|import\s*\(?\s*["']https?:""")
    offenders = [p.name for p in SOURCES if remote.search(p.read_text())]
    assert offenders == []
    assert 'PLOTLY_JS = "/static/plotly.min.js"' in (FRONTEND / "js" / "api.js").read_text()
