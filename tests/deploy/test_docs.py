"""The docs say what the code does:

- docs/api.md lists exactly the routes of the OpenAPI schema (and the pages the app serves);
- every environment variable documented in .env.example and docs/deploy.md is read by a
  settings class (backend/settings.py Settings, worker/settings.py WorkerSettings) or by the
  client, or is a docker-compose variable, and every setting is documented;
- every command shown in README.md exists: `tscnc ...` subcommands and their options, `make`
  targets, `/api/v1/...` URLs, and the Python names its snippets import and call.
"""

from __future__ import annotations

import ast
import importlib
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import typer.main
from pydantic import AliasChoices
from pydantic_settings import BaseSettings

from backend.app import create_app
from backend.settings import Settings
from worker.settings import WorkerSettings

ROOT = Path(__file__).resolve().parents[2]
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
# Variables of other software that the deployment guide tells users to set.
EXTERNAL_VARIABLES = {
    "CUDA_VISIBLE_DEVICES": "CUDA: which GPU a worker process sees (one process per GPU)",
}
ENV_NAME = re.compile(r"\b(?:TSCNC_[A-Z0-9_]+|REDIS_URL|ARTIFACTS_DIR|CUDA_VISIBLE_DEVICES)\b")


# ---- docs/api.md and OpenAPI ------------------------------------------------------------------

def _template(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "{}", path)


@pytest.fixture(scope="module")
def app() -> Any:
    return create_app(Settings(redis_url="redis://127.0.0.1:1/0"))


def test_api_md_lists_every_route_of_the_openapi_schema(app: Any) -> None:
    schema = app.openapi()
    in_schema = {(m.upper(), _template(p)) for p, ops in schema["paths"].items()
                 for m in ops if m.upper() in METHODS}
    text = (ROOT / "docs" / "api.md").read_text()
    documented = {(m, _template(p)) for m, p in re.findall(
        r"^\|\s*(GET|POST|PUT|PATCH|DELETE)\s*\|\s*`([^`]+)`", text, re.M)}
    assert in_schema - documented == set(), "routes missing from docs/api.md"
    api_rows = {r for r in documented if r[1].startswith("/api/")}
    assert api_rows - in_schema == set(), "docs/api.md lists routes the API does not have"
    # Rows outside /api (pages) must be served by the app too.
    served = {(m, _template(getattr(r, "path", ""))) for r in app.routes
              for m in (getattr(r, "methods", None) or ())}
    assert documented - api_rows - served == set(), "docs/api.md lists pages the app does " \
                                                    "not serve"


# ---- environment variables --------------------------------------------------------------------

def setting_names(cls: type[BaseSettings]) -> dict[str, set[str]]:
    """field → the environment variable names that set it."""
    prefix = cls.model_config.get("env_prefix", "")
    out: dict[str, set[str]] = {}
    for name, field in cls.model_fields.items():
        alias = field.validation_alias or field.alias
        if isinstance(alias, AliasChoices):
            names = {str(c) for c in alias.choices}
        elif isinstance(alias, str):
            names = {alias}
        else:
            names = {f"{prefix}{name}"}
        out[f"{cls.__name__}.{name}"] = {n.upper() for n in names}
    return out


def client_variables() -> set[str]:
    from tscnc import client

    return {client.ENV_SERVER, client.ENV_TOKEN}


def compose_variables() -> set[str]:
    text = (ROOT / "docker-compose.yml").read_text()
    return set(re.findall(r"\$\{([A-Z0-9_]+)", text))


def documented_variables() -> dict[str, set[str]]:
    """variable → files documenting it (.env.example: assigned or commented-out assignment)."""
    found: dict[str, set[str]] = {}
    for line in (ROOT / ".env.example").read_text().splitlines():
        m = re.match(r"^#?\s*([A-Z][A-Z0-9_]*)=", line)
        if m:
            found.setdefault(m.group(1), set()).add(".env.example")
    for name in ENV_NAME.findall((ROOT / "docs" / "deploy.md").read_text()):
        found.setdefault(name, set()).add("docs/deploy.md")
    return found


def test_documented_variables_are_read_by_something() -> None:
    settings = {n for cls in (Settings, WorkerSettings) for names in
                setting_names(cls).values() for n in names}
    known = settings | client_variables() | compose_variables() | set(EXTERNAL_VARIABLES)
    unknown = {v: sorted(files) for v, files in documented_variables().items()
               if v not in known}
    assert unknown == {}, "documented but read by no settings class, client or compose file"


def test_every_setting_is_documented() -> None:
    documented = documented_variables()
    missing = [field for cls in (Settings, WorkerSettings)
               for field, names in setting_names(cls).items()
               if not names & set(documented)]
    assert missing == [], "settings without documentation in .env.example or docs/deploy.md"
    env_example = {v for v, files in documented.items() if ".env.example" in files}
    for name in client_variables() | {"TSCNC_BOOTSTRAP_TOKEN", "REDIS_URL"}:
        assert name in documented, name
    # Compose variables a user may set are all in .env.example.
    assert compose_variables() - env_example == set()


# ---- README -------------------------------------------------------------------------------

def readme_blocks(doc: str = "README.md") -> list[tuple[str, str]]:
    text = (ROOT / doc).read_text()
    return [(lang.strip().lower(), body) for lang, body in
            re.findall(r"^```([^\n]*)\n(.*?)^```", text, re.M | re.S)]


def shell_commands(body: str) -> list[list[str]]:
    """Simple commands of a shell block (continuations joined, comments, prompts and
    leading VAR=value assignments removed; split at ;, &&, ||, |)."""
    out = []
    lines = body.replace("\\\n", " ").splitlines()
    # $(...) becomes a word, and what it runs is checked as a command of its own.
    inner = [m for line in lines for m in re.findall(r"\$\(([^()]*)\)", line)]
    lines = [re.sub(r"\$\([^()]*\)", "SUBST", line) for line in lines] + inner
    for line in lines:
        line = line.strip()
        if line.startswith("$ "):
            line = line[2:]
        try:
            words = shlex.split(line, comments=True)
        except ValueError:
            continue
        cmd: list[str] = []
        for w in [*words, ";"]:
            if w in (";", "&&", "||", "|", "&"):
                while cmd and re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", cmd[0]):
                    cmd.pop(0)
                if cmd:
                    out.append(cmd)
                cmd = []
            else:
                cmd.append(w)
    return out


def make_targets() -> set[str]:
    text = (ROOT / "Makefile").read_text()
    return set(re.findall(r"^([A-Za-z0-9_.-]+)\s*:(?!=)", text, re.M))


@pytest.fixture(scope="module")
def cli() -> Any:
    from tscnc.cli import _load_plugins, app

    _load_plugins()
    return typer.main.get_command(app)


def check_tscnc(cli: Any, args: list[str]) -> list[str]:
    """Problems with ``tscnc ARGS``: unknown subcommands or options."""
    cmd: Any = cli
    path = ["tscnc"]
    rest = list(args)
    while hasattr(cmd, "commands") and rest and not rest[0].startswith("-"):
        name = rest.pop(0)
        sub = cmd.commands.get(name)
        if sub is None:
            return [f"`{' '.join(path)}` has no command {name!r} (see `{' '.join(path)} "
                    f"--help`)"]
        cmd, path = sub, [*path, name]
    options = {o for p in cmd.params for o in (*p.opts, *p.secondary_opts)} | {"--help"}
    return [f"`{' '.join(path)}` has no option {w.split('=')[0]}" for w in rest
            if w.startswith("--") and w.split("=")[0] not in options]


def readme_problems(cli: Any, doc: str = "README.md") -> tuple[int, list[str]]:
    checked, problems = 0, []
    targets = make_targets()
    api_paths = [_template(p) for p in create_app(
        Settings(redis_url="redis://127.0.0.1:1/0")).openapi()["paths"]]
    for lang, body in readme_blocks(doc):
        if lang in ("python", "py", "pycon"):
            checked += 1
            problems += python_problems(body)
            continue
        for words in shell_commands(body):
            prog = words[0]
            if prog.endswith("/tscnc") or prog == "tscnc":
                checked += 1
                problems += check_tscnc(cli, words[1:])
            elif words[:3] in (["python", "-m", "tscnc"], [".venv/bin/python", "-m", "tscnc"]):
                checked += 1
                problems += check_tscnc(cli, words[3:])
            elif prog == "make":
                checked += 1
                problems += [f"Makefile has no target {t!r}" for t in words[1:]
                             if not t.startswith("-") and "=" not in t and t not in targets]
        for url in re.findall(r"https?://[^\s'\"]+?(/api/v1/[^\s'\"?]*)", body):
            checked += 1
            segments = url.rstrip("/").split("/")
            if not any(_matches(segments, p.split("/")) for p in api_paths):
                problems.append(f"no API route {url}")
    return checked, problems


def _matches(segments: list[str], pattern: list[str]) -> bool:
    return len(segments) == len(pattern) and all(
        p == "{}" or p == s for s, p in zip(segments, pattern, strict=True))


def python_problems(code: str) -> list[str]:
    """Syntax, imports of tscnc names, and attributes used on imported modules and on
    instances of imported classes (``c = Client(...)`` / ``with Client(...) as c``)."""
    try:
        tree = ast.parse(code)
    except SyntaxError as e:
        return [f"README Python snippet does not parse: {e}"]
    problems: list[str] = []
    bound: dict[str, Any] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] == "tscnc":
                    # `import tscnc.x as y` binds y to tscnc.x; `import tscnc.x` binds tscnc.
                    name, module = (a.asname, a.name) if a.asname else \
                        (a.name.split(".")[0], a.name.split(".")[0])
                    try:
                        importlib.import_module(a.name)
                        bound[name] = importlib.import_module(module)
                    except ImportError as e:
                        problems.append(f"import {a.name}: {e}")
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("tscnc"):
            try:
                mod = importlib.import_module(node.module)  # type: ignore[arg-type]
            except ImportError as e:
                problems.append(f"from {node.module}: {e}")
                continue
            for a in node.names:
                if not hasattr(mod, a.name):
                    problems.append(f"{node.module} has no {a.name}")
                else:
                    bound[a.asname or a.name] = getattr(mod, a.name)
    instances: dict[str, Any] = {}
    for node in ast.walk(tree):
        pairs: list[tuple[ast.expr, ast.expr | None]] = []
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            pairs.append((node.value, node.targets[0]))
        elif isinstance(node, ast.With):
            pairs += [(i.context_expr, i.optional_vars) for i in node.items]
        for value, target in pairs:
            if isinstance(value, ast.Call) and isinstance(value.func, ast.Name) and \
                    isinstance(bound.get(value.func.id), type) and isinstance(target, ast.Name):
                instances[target.id] = bound[value.func.id]
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            owner = instances.get(node.value.id, bound.get(node.value.id))
            if owner is not None and not hasattr(owner, node.attr):
                problems.append(f"{node.value.id}.{node.attr}: {owner!r} has no {node.attr}")
    return problems


def test_readme_commands_exist(cli: Any) -> None:
    checked, problems = readme_problems(cli)
    assert checked >= 2, ("README.md shows no `tscnc`/`make` commands in code blocks: its quick "
                          "start should (e.g. `make demo`)")
    assert problems == [], "README.md quick start:\n" + "\n".join(problems)


def test_deploy_md_commands_and_snippets_exist(cli: Any) -> None:
    checked, problems = readme_problems(cli, "docs/deploy.md")
    assert checked >= 5
    assert problems == [], "docs/deploy.md:\n" + "\n".join(problems)


def test_the_readme_checker_catches_mistakes(cli: Any) -> None:
    assert check_tscnc(cli, ["submit", "--preset", "x", "--wait"]) == []
    assert check_tscnc(cli, ["token", "create", "alice", "--role", "viewer"]) == []
    assert check_tscnc(cli, ["sumbit"]) and check_tscnc(cli, ["run", "--preset-name", "x"])
    assert check_tscnc(cli, ["token", "delete", "x"])
    assert shell_commands("TOKEN=$(cat f) tscnc submit --wait && make demo # hi\n$ make test\n"
                          "SID=$(tscnc submit --preset p)") == [
        ["tscnc", "submit", "--wait"], ["make", "demo"], ["make", "test"],
        ["cat", "f"], ["tscnc", "submit", "--preset", "p"]]
    assert {"demo", "test", "install"} <= make_targets()
    from tscnc.client import Client

    assert python_problems("from tscnc.client import Client\nc = Client('u', 't')\n"
                           "c.results_frame('s')\nc.no_such_method()") == [
        f"c.no_such_method: {Client!r} has no no_such_method"]
    assert python_problems("import tscnc\ntscnc.load_model('x')") == []
    assert python_problems("from tscnc.spec import nope") == ["tscnc.spec has no nope"]

