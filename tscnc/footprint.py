"""What a spec's model looks like and how much memory training it takes, without torch.

The API validates and admits sweeps but must not import torch (DESIGN §2), so the shapes of the
registered model families (:mod:`tscnc.models`) are described here a second time, as plain
arithmetic; ``tests/tscnc/test_footprint.py`` checks this description against the real torch
models of every family (prunable layer names in order, parameter counts, saved activations).

Notation for one model and one batch of ``B`` examples:

- ``P``: parameters = Σ over linear/conv layers (``c_in·c_out·k²`` weights + ``c_out`` biases)
  + Σ over BatchNorm layers ``2·c`` (weight and bias); masks and running statistics are buffers.
- ``A``: activation elements kept for the backward pass per example
  = input + Σ over linear/conv layers of their output (``c_out·h_out·w_out``) counted twice
  (the layer's output and the activation after it) + Σ over BatchNorm layers of their output.
  Measured against the tensors torch actually saves for backward, this is within a factor 1.5
  for every family (the test bounds it by 2).

Training memory of one run (bytes, float32)::

    memory = 4 · (STATE_COPIES · P + GRAPHS · B · A)

with ``STATE_COPIES = 5`` (weights, gradients, optimiser state — SGD momentum or one Adam moment
rounded up — masks and HYDRA scores) and ``GRAPHS = 2`` for adversarial objectives (TRADES and
PGD keep the clean and the adversarial forward pass alive together; 1 for ``natural``).
float64 CNC and autocast change this by less than the factor the estimate already allows.

Example::

    >>> from tscnc.spec import ModelSpec, DatasetName
    >>> [l.name for l in layers(ModelSpec(name="mlp", width=32), DatasetName.digits)]
    ['layers.0', 'layers.2', 'layers.4']
    >>> parameter_count(ModelSpec(name="mlp", width=32), DatasetName.digits)
    3466
"""

from __future__ import annotations

from dataclasses import dataclass

from tscnc.spec import NUM_CLASSES, DatasetName, ModelName, ModelSpec, Objective, SweepSpec

# (channels, height, width) of one image per dataset; tests check it against tscnc.data.DATASETS.
INPUT_SHAPE: dict[DatasetName, tuple[int, int, int]] = {
    DatasetName.digits: (1, 8, 8),
    DatasetName.mnist: (1, 28, 28),
    DatasetName.fashion_mnist: (1, 28, 28),
    DatasetName.cifar10: (3, 32, 32),
    DatasetName.cifar100: (3, 32, 32),
    DatasetName.svhn: (3, 32, 32),
}
for _name in DatasetName:  # datasets added later (e.g. an MNIST subset) share their family's shape
    if _name not in INPUT_SHAPE and "mnist" in _name.value:
        INPUT_SHAPE[_name] = (1, 28, 28)

BYTES_PER_VALUE = 4
STATE_COPIES = 5
ADVERSARIAL_GRAPHS = 2


@dataclass(frozen=True)
class Layer:
    """One linear or conv layer (``kernel`` 0 = linear) or, when ``batchnorm``, one BatchNorm.

    ``out_hw`` is the output's spatial size (1×1 for linear layers).
    """

    name: str
    c_in: int
    c_out: int
    kernel: int = 0
    bias: bool = True
    out_hw: tuple[int, int] = (1, 1)
    batchnorm: bool = False

    @property
    def prunable(self) -> bool:
        return not self.batchnorm

    @property
    def parameters(self) -> int:
        if self.batchnorm:
            return 2 * self.c_out
        k2 = self.kernel * self.kernel if self.kernel else 1
        return self.c_in * self.c_out * k2 + (self.c_out if self.bias else 0)

    @property
    def outputs(self) -> int:
        return self.c_out * self.out_hw[0] * self.out_hw[1]


def _conv_out(size: int, stride: int) -> int:
    """Spatial size after a 3×3/pad-1 or 1×1/pad-0 conv with ``stride``: ⌊(size − 1)/s⌋ + 1."""
    return (size - 1) // stride + 1


def _mlp(m: ModelSpec, shape: tuple[int, int, int], classes: int) -> list[Layer]:
    c, h, w = shape
    return [Layer("layers.0", c * h * w, m.width), Layer("layers.2", m.width, m.width),
            Layer("layers.4", m.width, classes)]


def _cnn(m: ModelSpec, shape: tuple[int, int, int], classes: int) -> list[Layer]:
    c, h, w = shape
    k = m.width
    return [Layer("features.0", c, k, 3, True, (h, w)), Layer("features.2", k, k, 3, True, (h, w)),
            Layer("features.5", k, 2 * k, 3, True, (h // 2, w // 2)),
            Layer("features.7", 2 * k, 2 * k, 3, True, (h // 2, w // 2)),
            Layer("classifier.0", 2 * k * 4, 2 * k), Layer("classifier.2", 2 * k, classes)]


VGG16_CFG: tuple[int | str, ...] = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M",
                                    512, 512, 512, "M", 512, 512, 512)


def _vgg(m: ModelSpec, shape: tuple[int, int, int], classes: int) -> list[Layer]:
    c_in, h, w = shape
    out: list[Layer] = []
    i = 0
    for v in VGG16_CFG:
        if v == "M":
            h, w, i = h // 2, w // 2, i + 1
            continue
        c_out = max(1, int(v) * m.width // 64)
        out += [Layer(f"features.{i}", c_in, c_out, 3, False, (h, w)),
                Layer(f"features.{i + 1}", c_out, c_out, out_hw=(h, w), batchnorm=True)]
        c_in, i = c_out, i + 3
    hidden = 4 * m.width
    return out + [Layer("classifier.0", c_in * 4, hidden), Layer("classifier.2", hidden, hidden),
                  Layer("classifier.4", hidden, classes)]


def _resnet18(m: ModelSpec, shape: tuple[int, int, int], classes: int) -> list[Layer]:
    c, h, w = shape
    k = m.width
    out = [Layer("conv1", c, k, 3, False, (h, w)), Layer("bn1", k, k, out_hw=(h, w), batchnorm=True)]
    c_in = k
    for i in range(4):
        c_out = k * 2**i
        for j in range(2):
            stride = (1 if i == 0 else 2) if j == 0 else 1
            cin = c_in if j == 0 else c_out
            h, w = _conv_out(h, stride), _conv_out(w, stride)
            p = f"layer{i + 1}.{j}"
            out += [Layer(f"{p}.conv1", cin, c_out, 3, False, (h, w)),
                    Layer(f"{p}.bn1", c_out, c_out, out_hw=(h, w), batchnorm=True),
                    Layer(f"{p}.conv2", c_out, c_out, 3, False, (h, w)),
                    Layer(f"{p}.bn2", c_out, c_out, out_hw=(h, w), batchnorm=True)]
            if stride != 1 or cin != c_out:
                out += [Layer(f"{p}.shortcut.0", cin, c_out, 1, False, (h, w)),
                        Layer(f"{p}.shortcut.1", c_out, c_out, out_hw=(h, w), batchnorm=True)]
        c_in = c_out
    return out + [Layer("fc", c_in, classes)]


def _wrn(m: ModelSpec, shape: tuple[int, int, int], classes: int) -> list[Layer]:
    c, h, w = shape
    n = (m.depth - 4) // 6
    widths = [16, 16 * m.widen, 32 * m.widen, 64 * m.widen]
    out = [Layer("conv1", c, widths[0], 3, False, (h, w))]
    for i in range(3):
        for j in range(n):
            stride = (1 if i == 0 else 2) if j == 0 else 1
            cin, c_out = (widths[i] if j == 0 else widths[i + 1]), widths[i + 1]
            p = f"block{i + 1}.{j}"
            out.append(Layer(f"{p}.bn1", cin, cin, out_hw=(h, w), batchnorm=True))
            h, w = _conv_out(h, stride), _conv_out(w, stride)
            out += [Layer(f"{p}.conv1", cin, c_out, 3, False, (h, w)),
                    Layer(f"{p}.bn2", c_out, c_out, out_hw=(h, w), batchnorm=True),
                    Layer(f"{p}.conv2", c_out, c_out, 3, False, (h, w))]
            if not (cin == c_out and stride == 1):
                out.append(Layer(f"{p}.shortcut", cin, c_out, 1, False, (h, w)))
    return out + [Layer("bn", widths[3], widths[3], out_hw=(h, w), batchnorm=True),
                  Layer("fc", widths[3], classes)]


_FAMILIES = {ModelName.mlp: _mlp, ModelName.cnn: _cnn, ModelName.vgg16_bn: _vgg,
             ModelName.resnet18: _resnet18, ModelName.wrn: _wrn}


def layers(model: ModelSpec, dataset: DatasetName) -> list[Layer]:
    """The model's linear/conv layers and BatchNorms in definition order (names as in
    ``model.named_modules()``)."""
    return _FAMILIES[model.name](model, INPUT_SHAPE[dataset], NUM_CLASSES[dataset])


def prunable_layer_names(model: ModelSpec, dataset: DatasetName) -> list[str]:
    """Names of the prunable layers, as :func:`tscnc.layers.prunable_layers` gives them."""
    return [x.name for x in layers(model, dataset) if x.prunable]


def parameter_count(model: ModelSpec, dataset: DatasetName) -> int:
    """``P``: the number of trainable parameters of the freshly built model."""
    return sum(x.parameters for x in layers(model, dataset))


def activation_count(model: ModelSpec, dataset: DatasetName) -> int:
    """``A``: activation elements kept for backward per example (see the module docstring)."""
    c, h, w = INPUT_SHAPE[dataset]
    return c * h * w + sum(x.outputs * (1 if x.batchnorm else 2) for x in layers(model, dataset))


@dataclass(frozen=True)
class Footprint:
    """Estimated size of one run of a sweep (every run of a sweep has the same model)."""

    parameters: int
    activations_per_example: int
    batch_size: int
    memory_bytes: int

    def describe(self) -> str:
        """e.g. ``36.49 M parameters, 7.508 M activations per example at batch 64: about
        4.3 GiB to train`` (WRN-28-10 on CIFAR-10)."""
        mem = self.memory_bytes
        size = f"{mem / 2**30:,.1f} GiB" if mem >= 2**30 else f"{mem / 2**20:,.1f} MiB"
        return (f"{self.parameters / 1e6:,.2f} M parameters, "
                f"{self.activations_per_example / 1e6:,.3f} M activations per example at batch "
                f"{self.batch_size}: about {size} to train")


def estimate(spec: SweepSpec) -> Footprint:
    """Training memory of one run of ``spec``: ``4·(5·P + G·B·A)`` bytes (module docstring).

    Example::

        >>> from tscnc.spec import preset
        >>> estimate(preset("digits-quick")).memory_bytes < 2**30
        True
    """
    p = parameter_count(spec.model, spec.dataset.name)
    a = activation_count(spec.model, spec.dataset.name)
    b = spec.training.batch_size
    graphs = 1 if spec.adversarial.objective == Objective.natural else ADVERSARIAL_GRAPHS
    return Footprint(parameters=p, activations_per_example=a, batch_size=b,
                     memory_bytes=BYTES_PER_VALUE * (STATE_COPIES * p + graphs * b * a))
