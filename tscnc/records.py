"""Typed pipeline events and run results (pydantic only; never imports torch).

The pipeline reports through a callback that receives :data:`Event` values; the worker writes
them to a run's Redis stream, the CLI draws progress bars from them, and the dashboard plots
them. Every event names its run, and stage-scoped events their stage; epoch events are keyed
by ``(run, stage, epoch)`` so a resumed stage never reports an epoch twice.

κ may be infinite (rank-deficient alive part); JSON carries it as the string ``"Infinity"``
(``"-Infinity"``, ``"NaN"`` likewise), and every field that may hold one is typed
:data:`MaybeInf`, whose JSON Schema says so (``number`` or one of those strings).

Example::

    >>> e = EpochEvent(run="tscnc-s0.9-seed0", stage=Stage.finetune, epoch=1, epochs=5,
    ...                loss=0.7, clean_accuracy=0.9, robust_accuracy=0.6, lr=0.01,
    ...                sparsity=0.9, condition_numbers={"fc1": 12.0})
    >>> parse_event(e.model_dump_json()).key
    ('tscnc-s0.9-seed0', 'finetune', 1)
"""

from __future__ import annotations

import time
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, WithJsonSchema

from tscnc.spec import Method, ParamValue

# A float that may be ±inf or NaN (κ of a rank-deficient layer, a diverged loss). JSON carries
# those as the strings "Infinity", "-Infinity", "NaN" (ser_json_inf_nan="strings"), and the JSON
# Schema (OpenAPI) declares exactly that, so a client's validator accepts what is sent.
NON_FINITE = ["Infinity", "-Infinity", "NaN"]
MaybeInf = Annotated[
    float,
    WithJsonSchema({"anyOf": [{"type": "number"}, {"type": "string", "enum": NON_FINITE}]}),
]


class Stage(StrEnum):
    pretrain = "pretrain"
    prune = "prune"
    finetune = "finetune"
    evaluate = "evaluate"


class RunStatus(StrEnum):
    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"


TERMINAL_STATUSES = frozenset({RunStatus.succeeded, RunStatus.failed, RunStatus.cancelled})


class FailureCategory(StrEnum):
    invalid_input = "invalid_input"
    diverged = "diverged"
    out_of_memory = "out_of_memory"
    storage = "storage"            # an artifact could not be written (disk full, unwritable)
    worker_lost = "worker_lost"
    error = "error"


class Flag(StrEnum):
    """Sanity flags of DESIGN §3.6 (signs of gradient masking); recorded, never hidden."""

    pgd_weaker_than_fgsm = "pgd_weaker_than_fgsm"
    not_monotone_in_epsilon = "not_monotone_in_epsilon"
    above_chance_at_large_epsilon = "above_chance_at_large_epsilon"
    rank_deficient_layer = "rank_deficient_layer"
    # Some security-curve radius m·ε exceeded the input range and was clamped to ε = 1.
    security_curve_clamped = "security_curve_clamped"


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid", ser_json_inf_nan="strings")


class _EventBase(_Record):
    run: str = Field(max_length=200)
    time: float = Field(default_factory=time.time)


class StageStarted(_EventBase):
    type: Literal["stage_started"] = "stage_started"
    stage: Stage
    epochs: int
    resumed_from_epoch: int = 0        # > 0 when a checkpoint was found


class StageFinished(_EventBase):
    type: Literal["stage_finished"] = "stage_finished"
    stage: Stage
    seconds: float
    checkpoint: str | None = None


class EpochEvent(_EventBase):
    type: Literal["epoch"] = "epoch"
    stage: Stage
    epoch: int                          # 1-based
    epochs: int
    loss: MaybeInf
    clean_accuracy: float
    robust_accuracy: float              # cheap PGD on the held-out monitor slice
    lr: float
    sparsity: float
    condition_numbers: dict[str, MaybeInf]  # per layer κ (may be inf)
    penalties: dict[str, MaybeInf] = Field(default_factory=dict)   # tsc / cnc / lcc values

    @property
    def key(self) -> tuple[str, str, int]:
        return (self.run, self.stage.value, self.epoch)


class ProgressEvent(_EventBase):
    """Throttled in-epoch progress; ``progress`` is the fraction of the current stage in [0, 1]
    (the store derives the whole run's progress from the stage and epoch)."""

    type: Literal["progress"] = "progress"
    stage: Stage
    epoch: int
    batch: int
    batches: int
    progress: float


class AttackResult(_Record):
    attack: str
    epsilon: float
    steps: int
    accuracy: float
    examples: int
    seed: int
    library: str                        # e.g. "torchattacks 3.5.1"


class LayerSpectrum(_Record):
    layer: str
    shape: tuple[int, int]
    singular_values: list[float]        # descending, possibly truncated
    condition_number: MaybeInf
    sparsity: float


class Evaluation(_Record):
    clean_accuracy: float
    attacks: list[AttackResult]
    security_curve: list[tuple[float, float]]   # (epsilon, robust accuracy)
    flags: list[Flag]
    spectra: list[LayerSpectrum] = Field(default_factory=list)
    lipschitz_upper: MaybeInf | None = None
    lipschitz_empirical: MaybeInf | None = None


class EvaluationEvent(_EventBase):
    type: Literal["evaluation"] = "evaluation"
    stage: Stage = Stage.evaluate
    evaluation: Evaluation


class StatusEvent(_EventBase):
    type: Literal["status"] = "status"
    status: RunStatus
    category: FailureCategory | None = None
    message: str | None = None


class LogEvent(_EventBase):
    type: Literal["log"] = "log"
    level: str = "info"
    message: str


Event = Annotated[
    StageStarted | StageFinished | EpochEvent | ProgressEvent | EvaluationEvent | StatusEvent
    | LogEvent,
    Field(discriminator="type"),
]
_EVENT = TypeAdapter(Event)


def parse_event(data: str | bytes | dict[str, Any]) -> Event:
    """Parse an event from JSON text or a dict (inverse of ``event.model_dump_json()``)."""
    if isinstance(data, dict):
        return _EVENT.validate_python(data)
    return _EVENT.validate_json(data)


class ConditionSummary(_Record):
    median: MaybeInf
    max: MaybeInf
    per_layer: dict[str, MaybeInf]


class RunResult(_Record):
    """Final record of one run (one line of ``results.json``)."""

    run: str
    method: Method
    sparsity: float                     # requested
    sparsity_actual: float
    sparsity_per_layer: dict[str, float]
    seed: int
    # The run's grid values by dotted spec path ({} without a grid), e.g.
    # {"constraints.lambda_cnc": 0.1}: what sets it apart from the sweep's other runs.
    params: dict[str, ParamValue] = Field(default_factory=dict)
    clean_accuracy: float
    robust_accuracy: dict[str, float]   # attack -> accuracy in [0, 1]
    condition_number: ConditionSummary
    lipschitz_upper: MaybeInf
    lipschitz_empirical: MaybeInf | None = None
    security_curve: list[tuple[float, float]]
    flags: list[Flag]
    attacks: list[AttackResult]
    checkpoint: str
    spec: dict[str, Any]                # the fully resolved sweep spec
    versions: dict[str, str]
    wall_time: float

