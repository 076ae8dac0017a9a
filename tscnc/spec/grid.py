"""Hyperparameter grids: which knobs may be gridded (:data:`GRID_PATHS`), which of them change a
method's pretrained weights (:func:`affects_pretrain`), and how run keys and tables name a grid
value (:func:`param_name`, :func:`param_label`)."""

from __future__ import annotations

import types
import typing
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel
from pydantic_core import InitErrorDetails, PydanticCustomError

from tscnc.spec.enums import CONSTRAINED, USES_CNC, USES_TSC, Method
from tscnc.spec.knobs import (
    AdversarialSpec,
    ConstraintSpec,
    ModelSpec,
    PruningSpec,
    TrainingSpec,
)

MAX_GRID_PATHS = 10        # knobs in one grid
MAX_GRID_VALUES = 50       # values per knob

# One grid value as a run records it in ``params`` (an enum knob by its value, e.g. "logdet").
ParamValue = bool | int | float | str | None

GRID_SECTIONS = ("model", "training", "adversarial", "constraints", "pruning")
SECTIONS: dict[str, type[BaseModel]] = {
    "model": ModelSpec, "training": TrainingSpec, "adversarial": AdversarialSpec,
    "constraints": ConstraintSpec, "pruning": PruningSpec}
# Not hyperparameters: the device picks the sweep's Celery queue (one per sweep); the monitor
# slice and data-loading processes are shared by the sweep's runs in one process.
_NOT_GRIDDABLE = frozenset({"training.device", "training.monitor_examples",
                            "training.num_workers"})


def _scalar_knob(annotation: Any) -> bool:
    """True for int/float/bool/enum fields (optionally None), the knobs a grid may vary."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)] \
        if typing.get_origin(annotation) in (typing.Union, types.UnionType) else [annotation]
    out = []
    for a in args:
        while typing.get_origin(a) is Annotated:
            a = typing.get_args(a)[0]
        out.append(isinstance(a, type) and issubclass(a, int | float | bool | StrEnum))
    return bool(out) and all(out)


GRID_PATHS: tuple[str, ...] = tuple(
    f"{section}.{name}" for section in GRID_SECTIONS
    for name, f in SECTIONS[section].model_fields.items()
    if _scalar_knob(f.annotation) and f"{section}.{name}" not in _NOT_GRIDDABLE)

# Knobs that never change the pretrained weights: the later stages' schedule and the pruning
# scores' initialisation.
AFTER_PRETRAIN = frozenset({
    "training.prune_epochs", "training.finetune_epochs", "training.prune_lr",
    "training.finetune_lr", "pruning.score_init_scale"})
# Constraint knobs by the term that uses them; a method's pretrain uses only its own terms.
TSC_KNOBS = frozenset({"constraints.lambda_tsc", "constraints.a", "constraints.tsc_variant",
                       "constraints.tsc_reduction", "constraints.gate_prior",
                       "constraints.gate_lambda0"})
CNC_KNOBS = frozenset({"constraints.lambda_cnc", "constraints.cnc_kind",
                       "constraints.cnc_layers", "constraints.cnc_precision",
                       "constraints.cnc_every", "constraints.cnc_layer_subset"})
LCC_KNOBS = frozenset({"constraints.lambda_lcc"})


def affects_pretrain(path: str, method: Method) -> bool:
    """Whether the grid knob ``path`` changes the pretrained weights of ``method``'s runs.

    Not: :data:`AFTER_PRETRAIN`, TSC knobs for methods without TSC, CNC knobs without CNC,
    the Lipschitz weight for unconstrained methods. Everything else (model, optimisation,
    adversarial training) does.
    """
    if path in AFTER_PRETRAIN:
        return False
    if path in TSC_KNOBS:
        return method in USES_TSC
    if path in CNC_KNOBS:
        return method in USES_CNC
    if path in LCC_KNOBS:
        return method in CONSTRAINED
    return True


def _short_names() -> dict[str, str]:
    last = [p.split(".")[1] for p in GRID_PATHS]
    return {p: n if last.count(n) == 1 else p for p, n in zip(GRID_PATHS, last, strict=True)}


_SHORT = _short_names()


def param_name(path: str) -> str:
    """How keys and tables name a grid path: its last segment unless two knobs share it."""
    return _SHORT.get(path, path)


def param_label(value: ParamValue) -> str:
    """A grid value as run keys and tables show it: 0.1, 1e-05, logdet, true, none."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    return "none" if value is None else str(value)


def params_label(params: dict[str, ParamValue]) -> str:
    """``-lambda_cnc=0.1-a=10`` (the path's last segment unless two knobs share it)."""
    return "".join(f"-{param_name(p)}={param_label(v)}" for p, v in params.items())


def grid_error(loc: tuple[str | int, ...], msg: str, value: Any,
                typ: str = "grid") -> InitErrorDetails:
    return InitErrorDetails(type=PydanticCustomError(typ, msg), loc=loc,  # type: ignore[arg-type]
                            input=value)
