"""The spec's closed vocabularies, the method table and the per-dataset constants (pydantic-free
and torch-free: plain enums and dicts)."""

from __future__ import annotations

from enum import StrEnum

# Each vocabulary is a StrEnum whose members are named by their values (``Method.tscnc ==
# "tscnc"``); the order is the order forms, tables and charts show them in.
DatasetName = StrEnum("DatasetName", ["digits", "mnist5k", "mnist", "fashion_mnist", "cifar10",
                                      "cifar100", "svhn"])
ModelName = StrEnum("ModelName", ["mlp", "cnn", "vgg16_bn", "resnet18", "wrn"])
Objective = StrEnum("Objective", ["trades", "pgd", "natural"])
Method = StrEnum("Method", ["dense", "lwm", "hydra", "tsc", "cnc", "tscnc"])
TSCVariant = StrEnum("TSCVariant", ["elementwise", "gates"])
TSCReduction = StrEnum("TSCReduction", ["sum", "mean"])
CNCKind = StrEnum("CNCKind", ["scale_invariant", "logdet"])
CNCLayers = StrEnum("CNCLayers", ["classifier", "all"])
Precision = StrEnum("Precision", ["float32", "float64"])
Amp = StrEnum("Amp", ["none", "bf16", "fp16"])
DeviceKind = StrEnum("DeviceKind", ["auto", "cpu", "cuda"])
Optimizer = StrEnum("Optimizer", ["sgd", "adam"])
Schedule = StrEnum("Schedule", ["cosine", "constant"])
AttackName = StrEnum("AttackName", ["fgsm", "pgd", "cw", "autoattack"])

# Methods that prune, and which constraints each one trains with (DESIGN §3.4 table).
PRUNING_METHODS = frozenset({Method.lwm, Method.hydra, Method.tsc, Method.cnc, Method.tscnc})
USES_TSC = frozenset({Method.tsc, Method.tscnc})
USES_CNC = frozenset({Method.cnc, Method.tscnc})
# Methods that train with any constraint; only these get the optional Lipschitz term too.
CONSTRAINED = USES_TSC | USES_CNC


def pretrain_group(method: Method) -> str:
    """Name of the pretrain configuration of ``method``: ``at``, ``at+tsc``, ``at+cnc``..."""
    return "at" + ("+tsc" if method in USES_TSC else "") + ("+cnc" if method in USES_CNC else "")


# Per dataset: the L-inf threat-model radius of DESIGN §3.6 (inputs in [0, 1]) and the classes.
_PER_DATASET: dict[DatasetName, tuple[float, int]] = {
    DatasetName.digits: (0.1, 10),
    DatasetName.mnist5k: (0.3, 10),
    DatasetName.mnist: (0.3, 10),
    DatasetName.fashion_mnist: (0.3, 10),
    DatasetName.cifar10: (8 / 255, 10),
    DatasetName.cifar100: (8 / 255, 100),
    DatasetName.svhn: (8 / 255, 10),
}
EPSILON_PRESETS: dict[DatasetName, float] = {d: eps for d, (eps, _) in _PER_DATASET.items()}
NUM_CLASSES: dict[DatasetName, int] = {d: n for d, (_, n) in _PER_DATASET.items()}
