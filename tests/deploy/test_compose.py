"""docker-compose.yml, Dockerfile and .env.example: the compose file validates with the real
validator (`docker compose config`, or `docker-compose config` from Debian's docker-compose
package) and describes the deployment of DESIGN §8. There is no Docker engine here, so nothing
is built or started; `config` parses, merges and interpolates exactly as `up` would."""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import typer.main
import yaml

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "tscnc_compose-test-token-0123456789"
INSTALL_HINT = ("no compose validator found: install Debian's docker-compose "
                "(apt-get install -y docker-compose) or the Docker Compose v2 plugin")


def compose_command() -> list[str]:
    """`docker compose` (v2 plugin) when it works, else `docker-compose` (v1, Debian)."""
    if shutil.which("docker"):
        ok = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True)
        if ok.returncode == 0:
            return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    pytest.fail(INSTALL_HINT)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """The deployment files in a scratch directory, with .env made from .env.example (so a
    developer's own .env never changes what is tested)."""
    for name in ("docker-compose.yml", "Dockerfile", ".dockerignore"):
        shutil.copy(ROOT / name, tmp_path / name)
    shutil.copy(ROOT / ".env.example", tmp_path / ".env")
    return tmp_path


def config(project: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    import os

    clean = {k: v for k, v in os.environ.items()
             if not (k.startswith(("TSCNC_", "COMPOSE_")) or k in
                     ("REDIS_URL", "ARTIFACTS_DIR", "API_BIND", "API_PORT", "ARTIFACTS",
                      "DATASETS", "GPU_ID"))}
    return subprocess.run([*compose_command(), "--project-directory", str(project), "-f",
                           str(project / "docker-compose.yml"), "config", *args],
                          capture_output=True, text=True, cwd=project, env={**clean, **env},
                          timeout=60)


def resolved(project: Path, **env: str) -> dict[str, Any]:
    out = config(project, TSCNC_BOOTSTRAP_TOKEN=TOKEN, **env)
    assert out.returncode == 0, out.stderr
    return yaml.safe_load(out.stdout)  # type: ignore[no-any-return]


def _env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


def _mounts(service: dict[str, Any]) -> dict[str, tuple[str, bool]]:
    """target → (source, read_only) for the short and the long volume syntax."""
    out = {}
    for v in service.get("volumes", []):
        if isinstance(v, str):
            parts = v.split(":")
            out[parts[1]] = (parts[0], len(parts) > 2 and "ro" in parts[2].split(","))
        else:
            out[v["target"]] = (v["source"], bool(v.get("read_only")))
    return out


def test_validator_is_installed() -> None:
    cmd = compose_command()
    out = subprocess.run([*cmd, "version"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def test_compose_validates_and_refuses_to_run_without_an_admin_token(project: Path) -> None:
    missing = config(project, "-q")
    assert missing.returncode != 0
    assert "TSCNC_BOOTSTRAP_TOKEN" in missing.stderr + missing.stdout
    ok = config(project, "-q", TSCNC_BOOTSTRAP_TOKEN=TOKEN)
    assert ok.returncode == 0, ok.stderr
    profiles = config(project, "--profiles", TSCNC_BOOTSTRAP_TOKEN=TOKEN)
    assert profiles.stdout.split() == ["cpu"]


def test_redis_is_persistent_private_and_healthchecked(project: Path) -> None:
    redis = resolved(project)["services"]["redis"]
    cmd = " ".join(redis["command"]) if isinstance(redis["command"], list) else redis["command"]
    assert "--appendonly yes" in cmd and "--maxmemory-policy noeviction" in cmd
    assert "/data" in _mounts(redis)                     # the AOF lives on a named volume
    assert "redis-cli" in " ".join(redis["healthcheck"]["test"])
    assert "ports" not in redis                          # never published by default


def test_api_health_check_bind_and_settings(project: Path) -> None:
    from backend.app import create_app
    from backend.settings import Settings

    c = resolved(project)
    api = c["services"]["api"]
    probe = " ".join(api["healthcheck"]["test"])
    path = re.search(r"http://127\.0\.0\.1:8000(/api/v1/\w+)", probe)
    assert path, probe
    paths = create_app(Settings(redis_url="redis://127.0.0.1:1/0")).openapi()["paths"]
    assert path.group(1) in paths
    env = _env(api)
    assert env["TSCNC_BOOTSTRAP_TOKEN"] == TOKEN
    assert env["REDIS_URL"] == "redis://redis:6379/0"
    ports = api["ports"]
    published = ports[0] if isinstance(ports[0], str) else \
        f"{ports[0].get('host_ip')}:{ports[0]['published']}:{ports[0]['target']}"
    assert published.startswith("127.0.0.1:8000:8000")   # loopback unless API_BIND says so
    assert api["depends_on"]["redis"]["condition"] == "service_healthy"
    # The API serves checkpoints from the workers' artifacts volume, read-only.
    assert _mounts(api)[env["TSCNC_ARTIFACTS_DIR"]] == ("artifacts", True)
    public = resolved(project, API_BIND="0.0.0.0", API_PORT="9000")["services"]["api"]["ports"]
    assert "9000" in str(public) and "0.0.0.0" in str(public)


def test_workers_gpu_reservation_cpu_profile_shared_volumes(project: Path) -> None:
    services = resolved(project)["services"]
    gpu, cpu, api = services["worker-gpu"], services["worker-cpu"], services["api"]
    devices = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["driver"] == "nvidia" and "gpu" in devices[0]["capabilities"]
    assert devices[0]["device_ids"] == ["0"]
    assert "profiles" not in gpu and cpu["profiles"] == ["cpu"]
    for worker, queue in ((gpu, "gpu"), (cpu, "cpu")):
        cmd = worker["command"]
        assert cmd[:2] == ["tscnc", "worker"] and cmd[cmd.index("--queue") + 1] == queue
        env = _env(worker)
        mounts = _mounts(worker)
        # Same artifacts volume as the API, at the directory the worker writes to.
        assert mounts[env["ARTIFACTS_DIR"]] == ("artifacts", False)
        assert mounts["/app/data"] == ("datasets", True)
        assert env["REDIS_URL"] == _env(api)["REDIS_URL"]
        assert worker["image"] == api["image"]
        assert worker["shm_size"] and worker["init"] is True
        assert "inspect ping" in " ".join(worker["healthcheck"]["test"])
    # One worker per GPU: GPU_ID picks the device and names the worker after it.
    other = resolved(project, GPU_ID="3", ARTIFACTS="/mnt/shared/artifacts",
                     DATASETS="/srv/datasets")["services"]["worker-gpu"]
    assert other["deploy"]["resources"]["reservations"]["devices"][0]["device_ids"] == ["3"]
    assert "gpu-3" in other["command"]
    assert _mounts(other)["/artifacts"][0] == "/mnt/shared/artifacts"
    assert _mounts(other)["/app/data"][0] == "/srv/datasets"


def test_service_commands_exist_in_the_cli(project: Path) -> None:
    from tscnc.cli import _load_plugins, app

    _load_plugins()
    cli = typer.main.get_command(app)
    for name, service in resolved(project)["services"].items():
        cmd = service.get("command")
        if not cmd or cmd[0] != "tscnc":
            continue
        sub = cli.commands[cmd[1]]                        # type: ignore[attr-defined]
        options = {o for p in sub.params for o in p.opts}
        for arg in cmd[2:]:
            if arg.startswith("--"):
                assert arg in options, f"{name}: tscnc {cmd[1]} has no option {arg}"


def test_dockerfile_installs_like_make_install() -> None:
    docker = (ROOT / "Dockerfile").read_text()
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    pins = [d for d in deps if d.split("==")[0] in ("torch", "torchvision")]
    assert len(pins) == 2
    assert re.search(r"pip install " + r" ".join(map(re.escape, pins)) + r"\s*$", docker,
                     re.M), f"the Dockerfile must install {pins} first"
    assert "pip install -e ." in docker and "pip install --no-deps -e ." in docker
    for src in re.findall(r"^COPY (\S+) ", docker, re.M):
        assert (ROOT / src).exists(), f"Dockerfile copies {src}, which does not exist"
    assert re.search(r"^USER (?!root)\w+", docker, re.M), "the image must not run as root"
    ignored = (ROOT / ".dockerignore").read_text().split()
    for secret_or_bulk in (".env", ".venv", ".git", ".tscnc"):
        assert secret_or_bulk in ignored


def test_the_override_example_of_docs_deploy_md_validates(project: Path) -> None:
    text = (ROOT / "docs" / "deploy.md").read_text()
    blocks = [b for b in re.findall(r"^```yaml\n(.*?)^```", text, re.M | re.S)
              if b.startswith("# docker-compose.override.yml")]
    assert len(blocks) == 1
    (project / "docker-compose.override.yml").write_text(blocks[0])
    import os

    out = subprocess.run([*compose_command(), "--project-directory", str(project), "-f",
                          str(project / "docker-compose.yml"), "-f",
                          str(project / "docker-compose.override.yml"), "config"],
                         capture_output=True, text=True, cwd=project, timeout=60,
                         env={**os.environ, "TSCNC_BOOTSTRAP_TOKEN": TOKEN})
    assert out.returncode == 0, out.stderr
    services = yaml.safe_load(out.stdout)["services"]
    extra, first = services["worker-gpu-1"], services["worker-gpu"]
    assert extra["deploy"]["resources"]["reservations"]["devices"][0]["device_ids"] == ["1"]
    assert "gpu-1" in extra["command"]
    assert _mounts(extra) == _mounts(first) and _env(extra) == _env(first)
