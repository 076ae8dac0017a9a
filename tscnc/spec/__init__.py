"""Typed, validated experiment specification (pydantic only; never imports torch).

The backend validates requests with these models and the worker and the CLI run them, so the
same rules apply everywhere. A *sweep* is one dataset/model/training setup crossed with a set of
methods, sparsities and seeds (DESIGN §3.4), and optionally a hyperparameter ``grid`` (dotted
spec path -> values, expanded as a product; DESIGN §4); :meth:`SweepSpec.runs` expands it into
runs, each recording its grid values as ``params``; :meth:`SweepSpec.for_run` is the spec a run
trains with and :meth:`SweepSpec.pretrain_groups` the runs that share a pretrain.

Modules: :mod:`~tscnc.spec.enums` (vocabularies, the method table, per-dataset constants),
:mod:`~tscnc.spec.knobs` (the section models, every knob with its description),
:mod:`~tscnc.spec.grid` (what may be gridded and how grid values are named),
:mod:`~tscnc.spec.sweep` (:class:`SweepSpec`, :class:`RunSpec`) and
:mod:`~tscnc.spec.presets` (named presets, :func:`resolve`).

Example::

    >>> spec = preset("digits-quick")
    >>> [r.key for r in spec.runs()][:2]
    ['dense-s0-seed0', 'lwm-s0.5-seed0']
    >>> g = resolve("digits-quick", {"grid": {"constraints.lambda_cnc": [0.01, 0.1]}})
    >>> [r.key for r in g.runs()][-1], g.run_count()
    ('tscnc-s0.99-lambda_cnc=0.1-seed0', 20)
"""

from __future__ import annotations

from tscnc.spec.enums import (
    CONSTRAINED,
    EPSILON_PRESETS,
    NUM_CLASSES,
    PRUNING_METHODS,
    USES_CNC,
    USES_TSC,
    Amp,
    AttackName,
    CNCKind,
    CNCLayers,
    DatasetName,
    DeviceKind,
    Method,
    ModelName,
    Objective,
    Optimizer,
    Precision,
    Schedule,
    TSCReduction,
    TSCVariant,
    pretrain_group,
)
from tscnc.spec.grid import (
    AFTER_PRETRAIN,
    CNC_KNOBS,
    GRID_PATHS,
    GRID_SECTIONS,
    LCC_KNOBS,
    MAX_GRID_PATHS,
    MAX_GRID_VALUES,
    TSC_KNOBS,
    ParamValue,
    affects_pretrain,
    param_label,
    param_name,
)
from tscnc.spec.knobs import (
    MAX_EPOCHS,
    AdversarialSpec,
    ConstraintSpec,
    DatasetSpec,
    Epochs,
    EvaluationSpec,
    ModelSpec,
    Probability,
    PruningSpec,
    StrictBool,
    StrictFloat,
    StrictInt,
    TrainingSpec,
)
from tscnc.spec.presets import (
    PRESETS,
    deep_merge,
    preset,
    resolve,
)
from tscnc.spec.sweep import (
    MAX_RUNS_PER_SWEEP,
    RunSpec,
    SweepSpec,
)

__all__ = [
    "AFTER_PRETRAIN",
    "AdversarialSpec",
    "Amp",
    "AttackName",
    "CNCKind",
    "CNCLayers",
    "CNC_KNOBS",
    "CONSTRAINED",
    "ConstraintSpec",
    "DatasetName",
    "DatasetSpec",
    "DeviceKind",
    "EPSILON_PRESETS",
    "Epochs",
    "EvaluationSpec",
    "GRID_PATHS",
    "GRID_SECTIONS",
    "LCC_KNOBS",
    "MAX_EPOCHS",
    "MAX_GRID_PATHS",
    "MAX_GRID_VALUES",
    "MAX_RUNS_PER_SWEEP",
    "Method",
    "ModelName",
    "ModelSpec",
    "NUM_CLASSES",
    "Objective",
    "Optimizer",
    "PRESETS",
    "PRUNING_METHODS",
    "ParamValue",
    "Precision",
    "Probability",
    "PruningSpec",
    "RunSpec",
    "Schedule",
    "StrictBool",
    "StrictFloat",
    "StrictInt",
    "SweepSpec",
    "TSCReduction",
    "TSCVariant",
    "TSC_KNOBS",
    "TrainingSpec",
    "USES_CNC",
    "USES_TSC",
    "affects_pretrain",
    "deep_merge",
    "param_label",
    "param_name",
    "preset",
    "pretrain_group",
    "resolve",
]
