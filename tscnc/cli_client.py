"""``tscnc submit`` and ``tscnc token``: talk to a running TSCNC service over its REST API.

They use :class:`tscnc.client.Client` only (httpx; no torch, no web stack). The server and the
token default to ``$TSCNC_SERVER`` and ``$TSCNC_TOKEN``; without a token, the admin token that
``tscnc up`` keeps in ``.tscnc/admin-token`` (current directory) is used when present.

Example::

    tscnc submit --preset digits-quick --wait
    tscnc submit overrides.json --preset digits-quick --server http://gpu-box:8000 --token T
    tscnc token create alice --role member
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from tscnc.client import DEFAULT_SERVER, ENV_SERVER, ENV_TOKEN
from tscnc.records import TERMINAL_STATUSES, RunStatus
from tscnc.resources import SweepStatus

if TYPE_CHECKING:  # pragma: no cover
    from tscnc.client import Client
    from tscnc.resources import ResultPublic, SweepDetail

ADMIN_TOKEN_FILE = Path(".tscnc") / "admin-token"

T = TypeVar("T")

Server = Annotated[str, typer.Option("--server", envvar=ENV_SERVER, show_envvar=True,
                                     help="TSCNC server URL")]
Token = Annotated[str | None, typer.Option("--token", envvar=ENV_TOKEN, show_envvar=True,
                                           help="API token (default: .tscnc/admin-token "
                                                "if present)")]

token_app = typer.Typer(no_args_is_help=True, add_completion=False,
                        help="Manage API tokens (admin): create, list, revoke.")


def _client(server: str, token: str | None) -> Client:
    from tscnc.client import Client

    if not token and ADMIN_TOKEN_FILE.is_file():
        token = ADMIN_TOKEN_FILE.read_text().strip() or None
    if not token:
        raise typer.BadParameter(f"no API token: pass --token or set {ENV_TOKEN} (`tscnc up` "
                                 f"prints one and keeps it in {ADMIN_TOKEN_FILE})",
                                 param_hint="--token")
    return Client(server, token)


def _fail(err: Exception) -> typer.Exit:
    """Print a client error (the server's message) and give the exit code: 2 for invalid
    input (422), 1 otherwise."""
    from tscnc.client import ValidationFailed

    typer.echo(f"error: {err}", err=True)
    return typer.Exit(2 if isinstance(err, ValidationFailed) else 1)


def _call(server: str, token: str | None, action: Callable[[Client], T]) -> T:
    """``action`` with a client of ``server``; a client error becomes the CLI's message and
    exit code (:func:`_fail`)."""
    from tscnc.client import ClientError

    with _client(server, token) as c:
        try:
            return action(c)
        except ClientError as e:
            raise _fail(e) from None


def read_spec_file(path: Path) -> dict[str, Any]:
    """The JSON object in ``path`` (a partial or full spec); a clear CLI error otherwise."""
    try:
        given = json.loads(path.read_text())
    except OSError as e:
        raise typer.BadParameter(f"cannot read {path}: {e.strerror}") from None
    except json.JSONDecodeError as e:
        raise typer.BadParameter(f"{path} is not valid JSON: {e}") from None
    if not isinstance(given, dict):
        raise typer.BadParameter(f"{path} must hold a JSON object (a partial or full spec)")
    return given


def _fmt(v: Any, digits: int = 3) -> str:
    if v is None:
        return "–"
    if isinstance(v, str):
        return "inf" if v == "Infinity" else v
    if isinstance(v, float):
        return "inf" if math.isinf(v) else f"{v:.{digits}f}"
    return str(v)


def _results_table(results: list[ResultPublic], keys: dict[str, str]) -> str:
    """One line per run: its key (e.g. tscnc-s0.9-seed0), the actual sparsity, clean and
    robust accuracies, median κ."""
    attacks = sorted({a for r in results for a in r.robust_accuracy})
    head = ["run", "method", "sparsity", "clean", *[f"robust {a}" for a in attacks], "κ median"]
    rows = [[keys.get(r.run_id, r.run), r.method.value, _fmt(r.sparsity_actual),
             _fmt(r.clean_accuracy), *[_fmt(r.robust_accuracy.get(a)) for a in attacks],
             _fmt(r.condition_number.median, 1)] for r in results]
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows, strict=True)]
    return "\n".join("  ".join(str(x).ljust(w) for x, w in zip(row, widths, strict=True))
                     for row in [head, *rows])


def submit(
    spec_file: Annotated[Path | None, typer.Argument(
        help="sweep spec (JSON; partial specs are merged over --preset or the defaults)")] = None,
    preset_name: Annotated[str | None, typer.Option("--preset", help="named preset "
                                                    "(`tscnc presets`)")] = None,
    server: Server = DEFAULT_SERVER,
    token: Token = None,
    wait: Annotated[bool, typer.Option("--wait", help="show progress until every run has "
                                       "finished, then print the results")] = False,
    idempotency_key: Annotated[str | None, typer.Option(
        help="submitting again with the same key returns the same sweep")] = None,
    timeout: Annotated[float | None, typer.Option(help="with --wait: give up after this "
                                                  "many seconds")] = None,
    quiet: Annotated[bool, typer.Option(help="no progress bar")] = False,
) -> None:
    """Submit a sweep to a TSCNC server (validated there; a bad field is named)."""
    from tscnc.client import ClientError, WaitTimeout

    if spec_file is None and preset_name is None:
        raise typer.BadParameter("give a SPEC file or --preset NAME (see `tscnc presets`)")
    spec = read_spec_file(spec_file) if spec_file is not None else None
    with _client(server, token) as c:
        try:
            sweep = c.submit(spec, preset=preset_name, idempotency_key=idempotency_key)
        except ClientError as e:
            raise _fail(e) from None
        sid = sweep.id
        # Humans read stderr; stdout carries the sweep id (SID=$(tscnc submit ...)).
        typer.echo(f"sweep {sid} ({sweep.name}): {len(sweep.runs)} runs queued\n"
                   f"dashboard: {c.url}/#/sweep/{sid}", err=True)
        if not wait:
            typer.echo(sid)
            return
        try:
            final = _wait_with_bar(c, sid, timeout, quiet)
        except KeyboardInterrupt:
            typer.echo(f"\nstopped waiting; sweep {sid} keeps running on the server", err=True)
            raise typer.Exit(130) from None
        except WaitTimeout as e:
            typer.echo(f"error: {e}; it keeps running on the server", err=True)
            raise typer.Exit(1) from None
        except ClientError as e:
            raise _fail(e) from None
        counts = {k: v for k, v in final.counts.items() if v}
        typer.echo(f"sweep {sid} {final.status.value}: "
                   + ", ".join(f"{v} {k.value}" for k, v in counts.items()))
        try:
            results = c.results(sid)
        except ClientError as e:
            raise _fail(e) from None
        if results:
            typer.echo(_results_table(results, {r.id: r.key for r in final.runs}))
            # Seed statistics and paired differences, as the server computes them.
            from tscnc.summary import default_baseline, format_summary

            base = default_baseline(list(final.spec.methods))
            try:
                stats = c.summary(sid, baseline=base.value if base else None, frame=False)
            except ClientError as e:
                raise _fail(e) from None
            typer.echo("\n" + format_summary(stats))
        for r in final.runs:
            if r.status == RunStatus.failed:
                category = r.category.value if r.category else None
                typer.echo(f"  {r.key} failed ({category}): {r.message}", err=True)
        raise typer.Exit(0 if final.status == SweepStatus.succeeded else 1)


def _wait_with_bar(c: Client, sweep_id: str, timeout: float | None,
                   quiet: bool) -> SweepDetail:
    from tqdm import tqdm

    bar = tqdm(total=100, unit="%", disable=quiet, file=sys.stderr, dynamic_ncols=True,
               bar_format="{l_bar}{bar}| {n:.0f}% [{elapsed}<{remaining}]{postfix}")

    def show(s: SweepDetail) -> None:
        bar.n = round(100 * s.progress, 1)
        done = sum(v for k, v in s.counts.items() if k in TERMINAL_STATUSES)
        bar.set_postfix_str(f"{done}/{len(s.runs)} runs done, "
                            f"{s.counts.get(RunStatus.running, 0)} running", refresh=False)
        bar.refresh()

    try:
        final = c.wait(sweep_id, timeout=timeout, progress=show)
        bar.n = 100
        bar.refresh()
        return final
    finally:
        bar.close()


@token_app.command("create")
def token_create(
    name: Annotated[str, typer.Argument(help="who or what holds it, e.g. alice or ci")],
    role: Annotated[str, typer.Option(help="admin | member | viewer")] = "member",
    expires_in: Annotated[float | None, typer.Option(help="lifetime in seconds "
                                                     "(default: never expires)")] = None,
    server: Server = DEFAULT_SERVER,
    token: Token = None,
) -> None:
    """Create a token and print its secret (shown only this once)."""
    t = _call(server, token, lambda c: c.create_token(name, role=role, expires_in=expires_in))
    typer.echo(f"created token {t.id} for {t.name} ({t.role.value}); the secret is shown "
               "once:", err=True)
    typer.echo(t.token)


@token_app.command("list")
def token_list(server: Server = DEFAULT_SERVER, token: Token = None) -> None:
    """List tokens (never their secrets)."""
    import time

    items = _call(server, token, lambda c: c.tokens())
    rows = [["id", "name", "role", "created", "expires", "state"]]
    for t in items:
        state = "revoked" if t.revoked else "active" if t.valid(time.time()) else "expired"
        rows.append([t.id, t.name, t.role.value, _date(t.created), _date(t.expires), state])
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        typer.echo("  ".join(x.ljust(w) for x, w in zip(r, widths, strict=True)).rstrip())


@token_app.command("revoke")
def token_revoke(
    token_id: Annotated[str, typer.Argument(help="the token's id (`tscnc token list`)")],
    server: Server = DEFAULT_SERVER,
    token: Token = None,
) -> None:
    """Revoke a token: it is refused (401) from now on."""
    _call(server, token, lambda c: c.revoke_token(token_id))
    typer.echo(f"revoked {token_id}")


def _date(ts: float | None) -> str:
    import datetime

    if ts is None:
        return "never"
    return datetime.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M")


def register(app: typer.Typer) -> None:
    app.command()(submit)
    app.add_typer(token_app, name="token")
