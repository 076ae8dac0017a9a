"""The ``tscnc`` command line (also ``python -m tscnc``).

Library commands live here: ``tscnc run`` and ``tscnc presets``; ``tscnc submit`` and
``tscnc token`` (:mod:`tscnc.cli_client`) talk to a running service over HTTP. Commands of the job service
(``up``, ``serve``, ``worker``, ...) are contributed by the service packages through the
``tscnc.commands`` entry-point group, so this package never imports the web stack.
"""

from __future__ import annotations

import logging
import sys
from importlib.metadata import entry_points
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError

from tscnc.errors import InvalidInput
from tscnc.spec import PRESETS, SweepSpec, deep_merge, preset, resolve

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="TSCNC: robust and compact networks (Lipschitz constant meets condition "
                       "number). Run sweeps here, or start the job service.")


def format_validation_error(err: ValidationError, source: str) -> str:
    """One line per problem: the dotted field path, what is wrong, and the value given."""
    lines = [f"invalid spec in {source}:"]
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "(spec)"
        given = f" (got {e['input']!r})" if "input" in e and not isinstance(e["input"], dict) \
            else ""
        lines.append(f"  {loc}: {e['msg']}{given}")
    lines.append("Fix these fields; `tscnc presets --show NAME` prints a valid spec to start from.")
    return "\n".join(lines)


def load_spec(spec_file: Path | None, preset_name: str | None) -> SweepSpec:
    """Spec from a JSON file, a preset, or a preset overridden by a file (file wins)."""
    if spec_file is None and preset_name is None:
        raise typer.BadParameter("give a SPEC file or --preset NAME (see `tscnc presets`)")
    given = cli_client.read_spec_file(spec_file) if spec_file is not None else {}
    try:
        return resolve(preset_name, given)
    except KeyError as e:
        raise typer.BadParameter(str(e.args[0]), param_hint="--preset") from None
    except ValidationError as e:
        typer.echo(format_validation_error(e, str(spec_file or f"preset {preset_name}")),
                   err=True)
        raise typer.Exit(2) from None


@app.command()
def presets(show: Annotated[str | None, typer.Option(help="print this preset's full spec as "
                                                         "JSON")] = None) -> None:
    """List the named presets (or print one as JSON)."""
    if show:
        try:
            typer.echo(preset(show).model_dump_json(indent=2))
        except KeyError as e:
            raise typer.BadParameter(str(e.args[0]), param_hint="--show") from None
        return
    width = max(map(len, PRESETS))
    for name, (desc, make) in PRESETS.items():
        spec = make()
        typer.echo(f"{name.ljust(width)}  {desc}  [{len(spec.runs())} runs]")


@app.command()
def run(
    spec_file: Annotated[Path | None, typer.Argument(help="sweep spec (JSON)")] = None,
    preset_name: Annotated[str | None, typer.Option("--preset", help="named preset")] = None,
    out: Annotated[Path, typer.Option(help="output directory (artifacts, results.json, "
                                           "report.html)")] = Path("tscnc-out"),
    device: Annotated[str | None, typer.Option(help="auto | cpu | cuda (overrides the spec)")]
    = None,
    quiet: Annotated[bool, typer.Option(help="no progress bars")] = False,
    fresh: Annotated[bool, typer.Option(help="start over wherever a checkpoint in OUT was "
                                             "written by another tscnc build (version or git "
                                             "revision) instead of reusing it with a warning")]
    = False,
    threads: Annotated[int, typer.Option(min=0, help="torch intra-op threads on the CPU (0 = "
                                                     "torch's default, every core); 1 is "
                                                     "fastest for the small embedded models")]
    = 1,
    data_root: cli_data.RootOption = None,
) -> None:
    """Run a sweep here: pretrain → prune → finetune → evaluate for every run.

    Resumes from the checkpoints in OUT when run again; a checkpoint from another build is
    reused with a warning, or trained again with --fresh.
    """
    cli_data.use_roots(data_root)
    spec = load_spec(spec_file, preset_name)
    if device is not None:
        try:
            spec = SweepSpec.model_validate(deep_merge(spec.model_dump(mode="json"),
                                                       {"training": {"device": device}}))
        except ValidationError as e:
            typer.echo(format_validation_error(e, "--device"), err=True)
            raise typer.Exit(2) from None
    if threads:
        import torch

        torch.set_num_threads(threads)
    from tscnc.cli_run import run_sweep_with_progress

    try:
        code = run_sweep_with_progress(spec, out, quiet=quiet, fresh=fresh)
    except InvalidInput as e:          # e.g. a missing dataset: its message says what to do
        typer.echo(f"error: {e.message}", err=True)
        raise typer.Exit(2) from None
    raise typer.Exit(code)


from tscnc import cli_client  # noqa: E402  (submit, token: the service's REST client)

cli_client.register(app)

from tscnc import cli_data  # noqa: E402  (data list, data download)

cli_data.register(app)


def _load_plugins() -> None:
    for ep in entry_points(group="tscnc.commands"):
        try:
            sub = ep.load()
        except ImportError as e:  # a service extra that is not installed
            logging.getLogger(__name__).debug("command %s unavailable: %s", ep.name, e)
            continue
        sub(app)


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    _load_plugins()
    app(args=argv if argv is not None else sys.argv[1:], prog_name="tscnc")
