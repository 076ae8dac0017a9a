"""A sweep and its runs: :class:`SweepSpec` (one setup crossed with methods, sparsities, seeds and
an optional grid) and :class:`RunSpec` (one point of it), with the expansion, grouping and
derived values every consumer uses."""

from __future__ import annotations

import itertools
import math
from typing import Annotated, Any

from pydantic import (
    Field,
    Strict,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails

from tscnc.names import DisplayName
from tscnc.spec.enums import (
    EPSILON_PRESETS,
    NUM_CLASSES,
    DatasetName,
    Method,
    ModelName,
    pretrain_group,
)
from tscnc.spec.grid import (
    GRID_PATHS,
    MAX_GRID_PATHS,
    MAX_GRID_VALUES,
    SECTIONS,
    ParamValue,
    affects_pretrain,
    grid_error,
    params_label,
)
from tscnc.spec.knobs import (
    AdversarialSpec,
    ConstraintSpec,
    DatasetSpec,
    EvaluationSpec,
    ModelSpec,
    Probability,
    PruningSpec,
    StrictInt,
    TrainingSpec,
    _Model,
)

MAX_RUNS_PER_SWEEP = 1000


class RunSpec(_Model):
    """One (method, sparsity, grid values, seed) point of a sweep.

    ``params`` holds the run's grid values by dotted spec path (``{}`` without a grid), as
    JSON values (an enum knob by its value); :meth:`SweepSpec.for_run` applies them.
    """

    method: Method = Field(description="Training and pruning method of this run.")
    sparsity: Probability = Field(
        description="Fraction of prunable weights removed, in [0, 1] (0 for a dense run).")
    seed: StrictInt = Field(ge=0, le=2**31 - 1,
                            description="Seed of the initial weights, batches and attack noise.")
    params: dict[str, ParamValue] = Field(
        default_factory=dict,
        description="The run's grid values by dotted spec path (empty without a grid).")

    @property
    def key(self) -> str:
        """Stable, filesystem-safe identifier, e.g. ``tscnc-s0.9-seed0``, or with grid values
        ``tscnc-s0.9-lambda_cnc=0.1-seed0``."""
        return f"{self.method.value}-s{self.sparsity:g}{params_label(self.params)}" \
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
        return f"{pretrain_group(self.method)}{params_label(kept)}-seed{self.seed}"


class SweepSpec(_Model):
    # Shown in tables and logs: no control or bidi-formatting characters (tscnc.names).
    name: DisplayName = Field(
        default="sweep", min_length=1, max_length=200,
        description="Name shown in tables, charts and logs (no control characters).")
    dataset: DatasetSpec = Field(default_factory=DatasetSpec,
                                 description="The data: which dataset, subsets, augmentation.")
    model: ModelSpec = Field(default_factory=ModelSpec,
                             description="The network trained and pruned.")
    training: TrainingSpec = Field(
        default_factory=TrainingSpec,
        description="Epochs, optimizer, learning rates and device of the three stages.")
    adversarial: AdversarialSpec = Field(
        default_factory=AdversarialSpec,
        description="The adversarial training objective and its attack.")
    constraints: ConstraintSpec = Field(
        default_factory=ConstraintSpec,
        description="Weights and forms of the TSC, CNC and Lipschitz terms.")
    pruning: PruningSpec = Field(default_factory=PruningSpec,
                                 description="Score initialisation and layers kept dense.")
    evaluation: EvaluationSpec = Field(
        default_factory=EvaluationSpec,
        description="Attacks, radius and examples of the final robustness evaluation.")
    methods: list[Method] = Field(
        default_factory=lambda: [Method.dense, Method.lwm, Method.hydra, Method.tscnc],
        min_length=1, max_length=len(Method),
        description="Methods compared: dense (no pruning), lwm, hydra, tsc, cnc, tscnc; each "
                    "at most once.")
    sparsities: list[Annotated[float, Strict(), Field(gt=0.0, lt=1.0)]] = Field(
        default_factory=lambda: [0.5, 0.9, 0.99], min_length=1, max_length=50,
        description="Target fractions of pruned weights, each in (0, 1); every pruning method "
                    "runs at each.")
    seeds: list[Annotated[int, Strict(), Field(ge=0, le=2**31 - 1)]] = Field(
        default_factory=lambda: [0], min_length=1, max_length=20,
        description="Seeds; every run is repeated once per seed.")
    # Values are validated as their field and stored as JSON values.
    grid: dict[str, list[ParamValue]] = Field(
        default_factory=dict, max_length=MAX_GRID_PATHS,
        description="Hyperparameter grid: dotted knob path -> values, crossed with methods x "
                    "sparsities x seeds; each run records its values.",
        # The griddable paths in the schema (the form's grid editor offers exactly these).
        json_schema_extra={"propertyNames": {"enum": list(GRID_PATHS)}})

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
                errors.append(grid_error((path,), f"{path!r} cannot be gridded; griddable: "
                                                   f"{', '.join(GRID_PATHS)}", path))
                continue
            if not 1 <= len(values) <= MAX_GRID_VALUES:
                errors.append(grid_error((path,), f"give 1 to {MAX_GRID_VALUES} values",
                                          values))
                continue
            section, name = path.split(".")
            base = info.data.get(section)
            if base is None:   # that section is itself invalid (reported there)
                continue
            cls_ = SECTIONS[section]
            normal: list[ParamValue] = []
            for i, value in enumerate(values):
                try:
                    one = cls_.model_validate({**base.model_dump(), name: value})
                except ValidationError as e:
                    err = next((x for x in e.errors(include_url=False) if x["loc"][:1] == (name,)),
                               e.errors(include_url=False)[0])
                    errors.append(grid_error((path, i), err["msg"], value, err["type"]))
                    continue
                normal.append(one.model_dump(mode="json")[name])
            if len(normal) == len(values) and len(set(map(repr, normal))) != len(normal):
                errors.append(grid_error((path,), "values must not repeat", values))
            out[path] = normal
        if errors:
            raise ValidationError.from_exception_data("grid", errors)
        return out

    @model_validator(mode="after")
    def _bounded(self) -> SweepSpec:
        n = self.run_count()
        if n > MAX_RUNS_PER_SWEEP:
            loc = ("grid",) if self.grid else ()
            raise ValidationError.from_exception_data("SweepSpec", [grid_error(
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
                raise ValidationError.from_exception_data("SweepSpec", [grid_error(
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

