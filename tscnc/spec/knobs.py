"""The knobs of a sweep, section by section (dataset, model, training, adversarial, constraints,
pruning, evaluation): typed, bounded, each with a one-line description that the OpenAPI
document carries to the dashboard form's hints."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, Strict, field_validator, model_validator

from tscnc.dataroots import check_data_dir
from tscnc.spec.enums import (
    Amp,
    AttackName,
    CNCKind,
    CNCLayers,
    DatasetName,
    DeviceKind,
    ModelName,
    Objective,
    Optimizer,
    Precision,
    Schedule,
    TSCReduction,
    TSCVariant,
)

# Upper bounds that hold for every caller; the service may enforce tighter ones (settings).
MAX_EPOCHS = 1000

# Numbers are strict (issue 14.7): an integer field refuses "5", 5.0 and true, a float field
# refuses "0.5" and true but takes an integer (1 means 1.0), a boolean refuses 1 and "true".
StrictInt = Annotated[int, Strict()]
StrictFloat = Annotated[float, Strict()]
StrictBool = Annotated[bool, Strict()]

Epochs = Annotated[int, Strict(), Field(ge=0, le=MAX_EPOCHS)]
Probability = Annotated[float, Strict(), Field(ge=0.0, le=1.0)]
LearningRate = Annotated[float, Strict(), Field(gt=0.0, le=10.0)]
ConstraintWeight = Annotated[float, Strict(), Field(ge=0.0, le=1e3)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_enum_values=False)


class DatasetSpec(_Model):
    name: DatasetName = Field(
        default=DatasetName.digits,
        description="Dataset; digits and mnist5k ship with installed packages, the others are "
                    "read from a data root.")
    data_dir: str | None = Field(
        default=None, max_length=1700,
        description="Folder of torchvision-format files inside a data root (TSCNC_DATA_ROOTS), "
                    "e.g. team/cifar; empty = the root itself; never absolute or '..'; unused "
                    "by digits and mnist5k.")
    download: StrictBool = Field(
        default=False,
        description="Download a missing dataset into the first data root before the run "
                    "(checksums verified); off: a missing dataset is an error.")
    train_subset: StrictInt | None = Field(
        default=None, ge=10, le=10_000_000,
        description="Train on only the first N training examples (after the fixed split); "
                    "empty = all.")
    test_subset: StrictInt | None = Field(
        default=None, ge=10, le=10_000_000,
        description="Keep only the first N test examples (after the fixed split); empty = all.")
    augment: StrictBool = Field(
        default=True,
        description="Augment the training split: random crop and flip for CIFAR, random crop "
                    "for SVHN, none for the MNIST-likes and digits.")

    @field_validator("data_dir")
    @classmethod
    def _relative_data_dir(cls, v: str | None) -> str | None:
        # By form only (tscnc.dataroots): the verdict never depends on which paths exist.
        return None if v is None else check_data_dir(v)


class ModelSpec(_Model):
    name: ModelName = Field(
        default=ModelName.mlp,
        description="Network: mlp or cnn (any dataset), vgg16_bn, resnet18 or wrn (32x32 "
                    "images).")
    width: StrictInt = Field(
        default=64, ge=1, le=4096,
        description="mlp: hidden units per layer; cnn: base channel count; vgg16_bn and "
                    "resnet18: base channels (64 = standard); unused by wrn.")
    depth: StrictInt = Field(
        default=28, ge=10, le=100,
        description="wrn only: depth, 6n+4 (e.g. 16, 22, 28, 34).")
    widen: StrictInt = Field(
        default=10, ge=1, le=20, description="wrn only: widen factor k of WRN-depth-k.")

    @model_validator(mode="after")
    def _wrn_depth(self) -> ModelSpec:
        if self.name == ModelName.wrn and (self.depth - 4) % 6 != 0:
            raise ValueError(f"wrn depth must be 6n+4 (e.g. 16, 22, 28, 34), got {self.depth}")
        return self


class TrainingSpec(_Model):
    pretrain_epochs: Epochs = Field(
        default=10, description="Epochs of dense (constrained) adversarial pretraining, shared "
                                "by the runs of a pretrain group.")
    prune_epochs: Epochs = Field(
        default=5, description="Epochs of HYDRA score training in the prune stage (lwm prunes "
                               "in one shot and ignores it).")
    finetune_epochs: Epochs = Field(
        default=5, description="Epochs of adversarial finetuning of the pruned network.")
    batch_size: StrictInt = Field(
        default=128, ge=1, le=4096, description="Training examples per optimizer step.")
    optimizer: Optimizer = Field(
        default=Optimizer.sgd, description="Optimizer of every stage: SGD with momentum, or "
                                           "Adam.")
    lr: LearningRate = Field(default=0.1, description="Learning rate of the pretrain stage.")
    prune_lr: LearningRate = Field(
        default=0.1, description="Learning rate of the HYDRA scores in the prune stage.")
    finetune_lr: LearningRate = Field(
        default=0.01, description="Learning rate of the finetune stage.")
    momentum: StrictFloat = Field(
        default=0.9, ge=0.0, lt=1.0, description="SGD momentum, in [0, 1) (unused by Adam).")
    weight_decay: StrictFloat = Field(
        default=5e-4, ge=0.0, le=1.0,
        description="L2 weight decay on every trained parameter except HYDRA scores and gate "
                    "log-alphas.")
    schedule: Schedule = Field(
        default=Schedule.cosine,
        description="Learning-rate schedule within each stage: cosine from the stage's rate to "
                    "0, or constant.")
    monitor_examples: StrictInt = Field(
        default=200, ge=0, le=100_000,
        description="Held-out examples (the head of the evaluation set) for the per-epoch "
                    "clean and PGD accuracy curves; 0 = none.")
    device: DeviceKind = Field(
        default=DeviceKind.auto,
        description="Where to train: auto (CUDA when available, else CPU), cpu or cuda.")
    amp: Amp = Field(
        default=Amp.none,
        description="Mixed precision of the training forwards on CUDA (bf16 or fp16 with loss "
                    "scaling); ignored on CPU; evaluation stays float32.")
    channels_last: StrictBool = Field(
        default=False, description="Channels-last memory format for 4-D weights and batches, on "
                                   "CUDA only.")
    num_workers: StrictInt = Field(
        default=0, ge=0, le=64,
        description="Data-loading worker processes (0 = load in the training process).")


class AdversarialSpec(_Model):
    objective: Objective = Field(
        default=Objective.trades,
        description="Training objective: TRADES, PGD adversarial training (Madry) or natural "
                    "(clean cross-entropy).")
    epsilon: StrictFloat | None = Field(
        default=None, gt=0.0, le=1.0,
        description="L-inf training radius, inputs in [0, 1]; empty = the dataset's preset "
                    "(0.1 digits, 0.3 MNIST-likes, 8/255 CIFAR and SVHN).")
    steps: StrictInt = Field(
        default=10, ge=1, le=100,
        description="PGD steps of the training attack (and of the per-epoch monitor).")
    step_size: StrictFloat | None = Field(
        default=None, gt=0.0, le=1.0,
        description="Step size of the training attack; empty = 2.5 * epsilon / steps (Madry et "
                    "al.).")
    beta: StrictFloat = Field(
        default=6.0, ge=0.0, le=100.0,
        description="TRADES trade-off beta between clean and robust loss (TRADES only).")


class ConstraintSpec(_Model):
    # Defaults measured by bench/reproduce.py --tune (docs/reproduction.md, "Tuning"). TSC is a
    # sum over all weights: its pull per weight is λ_tsc·ρ_a'(w) ≈ λ_tsc·(a+1)/a near 0 whatever
    # the model's size, so a λ_tsc that helps a 26k-weight MLP (3e-3) collapses an 82k-weight
    # CNN; 1e-5 is safe on both (and close to inert). tsc_reduction = mean (per-layer means)
    # does not close that gap (docs/method.md, "Choosing the reduction"), so sum stays.
    lambda_tsc: ConstraintWeight = Field(
        default=1e-5, description="Weight of the TSC sparsity term (tsc, tscnc); it is a sum "
                                  "over all weights, so scale it down for large models.")
    a: StrictFloat = Field(
        default=10.0, gt=0.0, le=1e6,
        description="Shape a of the transformed L1 rho_a(x) = (a+1)|x|/(a+|x|): small = close "
                    "to L0, large = close to L1.")
    tsc_variant: TSCVariant = Field(
        default=TSCVariant.elementwise,
        description="TSC on each weight (elementwise) or on hard-concrete channel gates "
                    "(gates).")
    tsc_reduction: TSCReduction = Field(
        default=TSCReduction.sum,
        description="How the TSC adds up: sum over every weight of every layer, or mean = the "
                    "mean over layers of each layer's mean over its weights (independent of the "
                    "model's size).")
    gate_prior: StrictFloat = Field(
        default=1e-4, ge=0.0, le=1.0,
        description="gates only: L2 prior weight on the weights in a channel's expected cost.")
    gate_lambda0: StrictFloat = Field(
        default=1e-3, ge=0.0, le=1.0,
        description="gates only: L0 cost per unmasked weight in a channel's expected cost.")
    lambda_cnc: ConstraintWeight = Field(
        default=1e-1, description="Weight of the condition-number term (cnc, tscnc); mean over "
                                  "the CNC layers.")
    cnc_kind: CNCKind = Field(
        default=CNCKind.scale_invariant,
        description="CNC form: scale_invariant (log mean eigenvalue minus mean log eigenvalue "
                    "of the Gram matrix) or logdet (the released code's squared log det).")
    cnc_layers: CNCLayers = Field(
        default=CNCLayers.all,
        description="Layers the CNC term covers: all prunable layers, or only the linear "
                    "(classifier) ones.")
    cnc_precision: Precision = Field(
        default=Precision.float32,
        description="Floating-point precision of the CNC's Cholesky and log det.")
    cnc_every: StrictInt = Field(
        default=1, ge=1, le=1000,
        description="Compute the CNC on every k-th training step only, weighted by k (1 = "
                    "every step).")
    cnc_layer_subset: StrictInt | None = Field(
        default=None, ge=1, le=10_000,
        description="Compute the CNC on this many randomly drawn CNC layers per step, weighted "
                    "n_layers / n_drawn (an unbiased estimate); empty = all layers.")
    lambda_lcc: ConstraintWeight = Field(
        default=0.0, description="Weight of the optional Lipschitz term log(1 + ||W||_F^2) per "
                                 "layer (constrained methods only); 0 = off.")


class PruningSpec(_Model):
    score_init_scale: StrictFloat = Field(
        default=1.0, gt=0.0, le=1e3,
        description="HYDRA score init: scale * sqrt(6/fan_in) * |W| / max|W| per layer.")
    skip_layers: list[Annotated[str, Field(max_length=200)]] = Field(
        default_factory=list, max_length=100,
        description="Prunable layers never pruned (e.g. the first conv), named as in "
                    "model.named_modules().")


class EvaluationSpec(_Model):
    attacks: list[AttackName] = Field(
        default_factory=lambda: [AttackName.fgsm, AttackName.pgd, AttackName.cw],
        min_length=1, max_length=4,
        description="Attacks whose robust accuracy is reported (torchattacks), each at most "
                    "once.")
    epsilon: StrictFloat | None = Field(
        default=None, gt=0.0, le=1.0,
        description="L-inf evaluation radius, inputs in [0, 1]; empty = the training epsilon.")
    pgd_steps: StrictInt = Field(
        default=20, ge=1, le=1000, description="Iterations of the PGD evaluation attack (step "
                                               "2.5 * epsilon / steps).")
    cw_steps: StrictInt = Field(
        default=30, ge=1, le=1000, description="Iterations of the CW-inf (margin-loss PGD) "
                                               "evaluation attack.")
    # 100 is the standard version's budget; fewer is a sized-down AutoAttack (e.g. on CPU),
    # recorded as the attack's steps.
    autoattack_steps: StrictInt = Field(
        default=100, ge=1, le=1000,
        description="AutoAttack's APGD-CE/APGD-T/FAB-T iterations (Square: 50 queries per "
                    "iteration); 100 = the standard budget.")
    examples: StrictInt = Field(
        default=500, ge=10, le=100_000,
        description="Test examples evaluated (the first N of the test split).")
    security_curve: list[Annotated[float, Strict(), Field(ge=0.0, le=20.0)]] = Field(
        default_factory=lambda: [0.0, 0.25, 0.5, 1.0, 2.0, 4.0], max_length=20,
        description="Multiples of the evaluation epsilon at which PGD robust accuracy is "
                    "plotted (the security curve).")
    spectrum_max: StrictInt = Field(
        default=512, ge=1, le=100_000,
        description="Singular values kept per layer in the recorded spectra (largest first).")

    @field_validator("attacks")
    @classmethod
    def _unique(cls, v: list[AttackName]) -> list[AttackName]:
        if len(set(v)) != len(v):
            raise ValueError("attacks must not repeat")
        return v
