"""`tscnc submit` and `tscnc token` end to end against the real service."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from tests.support.services import REPO_ROOT, free_port
from tests.support.stack import Stack
from tscnc.cli import app
from tscnc.client import Client

runner = CliRunner()


def tscnc(*args: str, env: dict[str, str] | None = None) -> Any:
    # TSCNC_SERVER / TSCNC_TOKEN from the developer's shell must not leak into the tests.
    base = {"TSCNC_SERVER": None, "TSCNC_TOKEN": None, "COLUMNS": "200"}
    return runner.invoke(app, list(args), env={**base, **(env or {})})  # type: ignore[dict-item]


@pytest.fixture(autouse=True)
def _no_admin_token_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The fallback to .tscnc/admin-token reads the working directory: use an empty one.
    monkeypatch.chdir(tmp_path)


def test_submit_and_wait_prints_progress_and_results(stack: Stack, small_sweep: Any,
                                                     tmp_path: Path) -> None:
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(small_sweep("cli-wait")))
    r = tscnc("submit", str(spec), "--server", stack.base, "--token", stack.token, "--wait",
              "--timeout", "240")
    assert r.exit_code == 0, r.output
    assert "2 runs queued" in r.stderr and "/#/sweep/" in r.stderr
    assert "100%" in r.stderr                                  # the progress bar finished
    assert "sweep" in r.stdout and "succeeded: 2 succeeded" in r.stdout
    table = r.stdout.splitlines()
    header = next(line for line in table if line.startswith("run "))
    assert "clean" in header and "robust pgd" in header and "κ median" in header
    assert any(line.startswith("dense-s0-seed0 ") for line in table)
    assert any(line.startswith("hydra-s0.5-seed0 ") for line in table)


def test_submit_without_wait_prints_the_id_on_stdout(stack: Stack, small_sweep: Any,
                                                     tmp_path: Path) -> None:
    spec = tmp_path / "over.json"
    spec.write_text(json.dumps({"sparsities": [0.9], "methods": ["hydra"],
                                "training": {"device": "cpu", "pretrain_epochs": 1}}))
    env = {"TSCNC_SERVER": stack.base, "TSCNC_TOKEN": stack.token}   # defaults from the env
    r = tscnc("submit", str(spec), "--preset", "digits-quick", "--idempotency-key", "cli-1",
              env=env)
    assert r.exit_code == 0, r.output
    sid = r.stdout.strip()
    again = tscnc("submit", str(spec), "--preset", "digits-quick", "--idempotency-key", "cli-1",
                  env=env)
    assert again.stdout.strip() == sid
    with Client(stack.base, stack.token) as c:
        sweep = c.sweep(sid)
        assert sweep.preset == "digits-quick" and sweep.spec.model.width == 128
        c.delete_sweep(sid)


def test_submit_names_bad_fields_and_exits_2(stack: Stack, tmp_path: Path) -> None:
    spec = tmp_path / "bad.json"
    spec.write_text(json.dumps({"sparsities": [1.5], "training": {"lr": -1}}))
    r = tscnc("submit", str(spec), "--server", stack.base, "--token", stack.token)
    assert r.exit_code == 2
    assert "spec.sparsities.0" in r.stderr and "spec.training.lr" in r.stderr
    spec.write_text("[1, 2]")
    r = tscnc("submit", str(spec), "--server", stack.base, "--token", stack.token)
    assert r.exit_code == 2 and "JSON object" in r.output
    r = tscnc("submit", "--server", stack.base, "--token", stack.token)
    assert r.exit_code == 2 and "--preset" in r.output


def test_submit_errors_without_token_or_server(stack: Stack, tmp_path: Path) -> None:
    r = tscnc("submit", "--preset", "digits-quick", "--server", stack.base)
    assert r.exit_code == 2 and "TSCNC_TOKEN" in r.output
    r = tscnc("submit", "--preset", "digits-quick", "--server", stack.base, "--token", "wrong")
    assert r.exit_code == 1 and "401" in r.stderr
    r = tscnc("submit", "--preset", "digits-quick", "--server",
              f"http://127.0.0.1:{free_port()}", "--token", "t")
    assert r.exit_code == 1 and "cannot reach" in r.stderr


def test_admin_token_file_is_the_fallback(stack: Stack, tmp_path: Path) -> None:
    (tmp_path / ".tscnc").mkdir()
    (tmp_path / ".tscnc" / "admin-token").write_text(stack.token + "\n")
    r = tscnc("token", "list", "--server", stack.base)
    assert r.exit_code == 0, r.output
    assert "bootstrap" in r.stdout and "admin" in r.stdout


def test_token_create_list_revoke(stack: Stack) -> None:
    env = {"TSCNC_SERVER": stack.base, "TSCNC_TOKEN": stack.token}
    r = tscnc("token", "create", "ci-bot", "--role", "viewer", env=env)
    assert r.exit_code == 0, r.output
    secret = r.stdout.strip()
    assert "shown once" in r.stderr and len(secret) >= 20
    token_id = r.stderr.split("created token ")[1].split()[0]
    with Client(stack.base, secret) as c:
        assert c.me().role == "viewer"
    listed = tscnc("token", "list", env=env)
    line = next(x for x in listed.stdout.splitlines() if x.startswith(token_id))
    assert "ci-bot" in line and "viewer" in line and line.endswith("active")
    assert secret not in listed.stdout
    # A viewer may not manage tokens: the server's 403 message comes through.
    denied = tscnc("token", "list", env={**env, "TSCNC_TOKEN": secret})
    assert denied.exit_code == 1 and "403" in denied.stderr
    r = tscnc("token", "revoke", token_id, env=env)
    assert r.exit_code == 0 and token_id in r.stdout
    listed = tscnc("token", "list", env=env)
    assert next(x for x in listed.stdout.splitlines()
                if x.startswith(token_id)).endswith("revoked")
    assert tscnc("token", "create", "x", "--role", "root", env=env).exit_code == 2
    missing = tscnc("token", "revoke", "no-such-token", env=env)
    assert missing.exit_code == 1 and "404" in missing.stderr


def test_commands_are_listed_by_the_installed_entry_point() -> None:
    out = subprocess.run([sys.executable, "-m", "tscnc", "--help"], capture_output=True,
                         text=True, cwd=REPO_ROOT, env={"COLUMNS": "200", "PATH": ""},
                         check=True).stdout
    for command in ("submit", "token", "run", "presets", "up", "serve", "worker"):
        assert f" {command} " in out, out
