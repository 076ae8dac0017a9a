"""Robustness evaluation (DESIGN §3.6): accuracies under attack, security curve, full evaluation.

Threat model: L∞ ball of radius ε around inputs in [0, 1]. The attacks (names as in
:class:`tscnc.spec.AttackName`, all from torchattacks) are built in :mod:`tscnc.attacks`; the
sanity flags are computed in :mod:`tscnc.sanity`.

Robust accuracy counts an example as robust only if it is classified correctly both clean and
after the attack (x itself lies in the ball); attacks run only on the clean-correct examples.

Every function

- evaluates in eval mode and restores the train/eval flag of every submodule afterwards;
- freezes the parameters while attacking (``requires_grad`` off, restored after), so attacks that
  call ``.backward()`` (FAB) never touch ``param.grad``;
- is deterministic given ``seed``: the torch RNG is seeded inside ``torch.random.fork_rng``, so the
  caller's RNG state is left as it was (bitwise on CPU; on CUDA up to non-deterministic kernels);
- sends batches to the model's device (or ``device``) and never calls ``.cuda()``.

Data is either a pair of tensors ``(x, y)`` — ``x`` of shape ``(N, ...)`` in [0, 1], ``y`` of
shape ``(N,)`` — or an iterable of such batches (a ``DataLoader``); ``examples`` keeps the first N.

Example::

    >>> ev = evaluate(model, (x_test, y_test), spec)          # spec: a SweepSpec
    >>> ev.clean_accuracy, [(a.attack, a.accuracy) for a in ev.attacks], ev.flags
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterable, Iterator
from typing import Any, TypeAlias

import torch
from torch import Tensor, nn
from torchattacks.attack import Attack

from tscnc import metrics
from tscnc.adversarial import eval_mode
from tscnc.attacks import DEFAULT_STEPS, LIBRARY, attack_name, make_attack, name_of
from tscnc.errors import InvalidInput
from tscnc.records import AttackResult, Evaluation, Flag
from tscnc.sanity import sanity_flags
from tscnc.spec import AttackName, EvaluationSpec, SweepSpec

__all__ = [
    "Data",
    "clean_accuracy",
    "empirical_lipschitz_pgd",
    "evaluate",
    "monitor_accuracy",
    "perturb",
    "robust_accuracy",
    "security_curve",
    "security_curve_epsilons",
]

Data: TypeAlias = tuple[Tensor, Tensor] | Iterable[Any]

# Largest meaningful L∞ radius for inputs in [0, 1]: at 1 every image of the range is reachable.
MAX_EPSILON = 1.0


# ---- context helpers ---------------------------------------------------------------------

def _model_device(model: nn.Module, device: torch.device | str | None) -> torch.device:
    if device is not None:
        return torch.device(device)
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


@contextlib.contextmanager
def _seeded(seed: int, device: torch.device) -> Iterator[None]:
    """Seed the torch RNG for the block and put the caller's RNG state back afterwards."""
    # fork_rng covers CPU and the CUDA devices listed; torchattacks' APGD/FAB reseed through
    # torch.manual_seed, which touches every CUDA device, so all of them are forked on CUDA.
    devices = list(range(torch.cuda.device_count())) if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices, device_type="cuda"):
        torch.manual_seed(seed)
        yield


@contextlib.contextmanager
def _attacking(model: nn.Module) -> Iterator[None]:
    """Eval mode, gradients enabled, parameters frozen; everything restored on exit."""
    frozen = [p for p in model.parameters() if p.requires_grad]
    try:
        for p in frozen:
            p.requires_grad_(False)
        with eval_mode(model), torch.enable_grad():
            yield
    finally:
        for p in frozen:
            p.requires_grad_(True)


# ---- data --------------------------------------------------------------------------------

def _materialize(data: Data, examples: int | None) -> tuple[Tensor, Tensor]:
    """The first ``examples`` examples of ``data`` as two tensors (on their original device)."""
    if isinstance(data, tuple | list) and len(data) == 2 and isinstance(data[0], Tensor):
        x, y = data[0], data[1]
    else:
        xs: list[Tensor] = []
        ys: list[Tensor] = []
        n = 0
        for batch in data:
            bx, by = batch[0], batch[1]
            xs.append(bx)
            ys.append(by)
            n += len(by)
            if examples is not None and n >= examples:
                break
        if not xs:
            raise InvalidInput("evaluation data is empty")
        x, y = torch.cat(xs), torch.cat(ys)
    if examples is not None:
        x, y = x[:examples], y[:examples]
    if len(x) == 0 or len(x) != len(y):
        raise InvalidInput(f"evaluation data needs N > 0 inputs and N labels; got {len(x)} "
                           f"inputs and {len(y)} labels")
    return x, y


def _batches(x: Tensor, y: Tensor, batch_size: int,
             device: torch.device) -> Iterator[tuple[Tensor, Tensor]]:
    for i in range(0, len(x), batch_size):
        yield (x[i:i + batch_size].to(device, non_blocking=True),
               y[i:i + batch_size].to(device, non_blocking=True))


def _infer_num_classes(model: nn.Module, x: Tensor, device: torch.device) -> int:
    with eval_mode(model), torch.no_grad():
        return int(model(x[:1].to(device)).shape[1])


# ---- accuracies --------------------------------------------------------------------------

def clean_accuracy(model: nn.Module, data: Data, *, examples: int | None = None,
                   batch_size: int = 256, device: torch.device | str | None = None) -> float:
    """Fraction of ``data`` classified correctly, argmax_j f(x)_j = y, in eval mode.

    Example::

        >>> clean_accuracy(model, (x, y))
        0.97
    """
    x, y = _materialize(data, examples)
    dev = _model_device(model, device)
    correct = 0
    with eval_mode(model), torch.no_grad():
        for bx, by in _batches(x, y, batch_size, dev):
            correct += int((model(bx).argmax(1) == by).sum())
    return correct / len(y)


def robust_accuracy(model: nn.Module, data: Data,
                    attack: AttackName | str | Attack = AttackName.pgd, *,
                    epsilon: float | None = None, steps: int | None = None,
                    step_size: float | None = None, seed: int = 0, examples: int | None = None,
                    batch_size: int = 256, num_classes: int | None = None,
                    device: torch.device | str | None = None) -> AttackResult:
    """Robust accuracy under ``attack``: mean_i 1[f(x_i) = y_i and f(x'_i) = y_i].

    ``attack`` is a name (built with :func:`make_attack`; ``epsilon`` required) or a ready
    torchattacks ``Attack`` on ``model`` (its ``eps``/``steps`` are recorded). Returns an
    :class:`~tscnc.records.AttackResult` recording attack, ε, steps, seed, number of examples and
    library version. Deterministic given ``seed``; the model's mode and the caller's RNG state
    are restored.

    Example::

        >>> r = robust_accuracy(model, (x, y), "pgd", epsilon=0.1, seed=0)
        >>> r.attack, r.steps, r.library
        ('pgd', 20, 'torchattacks 3.5.1')
    """
    x, y = _materialize(data, examples)
    dev = _model_device(model, device)
    if isinstance(attack, Attack):
        atk = attack
        name = name_of(atk)
        eps = float(atk.eps)  # type: ignore[attr-defined]
        k = int(getattr(atk, "steps", 1))
    else:
        name = attack_name(attack)
        if epsilon is None:
            raise InvalidInput(f"robust_accuracy({name.value!r}) needs epsilon")
        if num_classes is None and name == AttackName.autoattack:
            num_classes = _infer_num_classes(model, x, dev)
        k = steps if steps is not None else DEFAULT_STEPS[name]
        if name == AttackName.fgsm:
            k = 1
        atk = make_attack(name, model, epsilon, steps=k, step_size=step_size, seed=seed,
                          num_classes=num_classes or 10, input_shape=tuple(x.shape[1:]))
        eps = float(epsilon)
    atk.set_device(dev)
    correct = 0
    with _seeded(seed, dev), _attacking(model):
        for bx, by in _batches(x, y, batch_size, dev):
            with torch.no_grad():
                ok = model(bx).argmax(1) == by
            if ok.any():
                x_adv = atk(bx[ok], by[ok])
                with torch.no_grad():
                    correct += int((model(x_adv).argmax(1) == by[ok]).sum())
    return AttackResult(attack=str(name), epsilon=eps, steps=k, accuracy=correct / len(y),
                        examples=len(y), seed=seed, library=LIBRARY)


def perturb(model: nn.Module, data: Data, attack: AttackName | str = AttackName.pgd, *,
            epsilon: float, steps: int | None = None, step_size: float | None = None,
            seed: int = 0, examples: int | None = None, batch_size: int = 256,
            num_classes: int | None = None,
            device: torch.device | str | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """Adversarial examples of every input: ``(x, x_adv, y)``, all on the evaluation device.

    Same attack construction, seeding and mode/parameter restoration as
    :func:`robust_accuracy`, but every example is attacked (not only the clean-correct ones).
    ``x_adv`` has ``x``'s shape with ‖x_adv − x‖_∞ ≤ ε and values in [0, 1].

    Example::

        >>> x, x_adv, y = perturb(model, (x_test, y_test), "pgd", epsilon=0.1, seed=0)
        >>> float((x_adv - x).abs().max()) <= 0.1 + 1e-6
        True
    """
    x, y = _materialize(data, examples)
    dev = _model_device(model, device)
    name = attack_name(attack)
    if num_classes is None and name == AttackName.autoattack:
        num_classes = _infer_num_classes(model, x, dev)
    atk = make_attack(name, model, epsilon, steps=steps, step_size=step_size, seed=seed,
                      num_classes=num_classes or 10, input_shape=tuple(x.shape[1:]))
    atk.set_device(dev)
    xs, advs, ys = [], [], []
    with _seeded(seed, dev), _attacking(model):
        for bx, by in _batches(x, y, batch_size, dev):
            xs.append(bx)
            advs.append(atk(bx, by))
            ys.append(by)
    return torch.cat(xs), torch.cat(advs), torch.cat(ys)



def security_curve_epsilons(epsilons: Iterable[float]) -> tuple[list[float], list[float]]:
    """The curve's radii inside the input range: ``(radii, clamped)``.

    Inputs live in [0, 1], so an L∞ radius ε > 1 (= :data:`MAX_EPSILON`) allows nothing that
    ε = 1 does not already allow (any image is reachable); such a radius is clamped to 1, and a
    clamped radius that repeats an earlier one is dropped. ``clamped`` lists the requested radii
    that were changed, so the caller can say so (flag ``security_curve_clamped``).

    Example (MNIST-like ε = 0.3 with the default multiples 0, 0.25, 0.5, 1, 2, 4)::

        >>> security_curve_epsilons([0.0, 0.075, 0.15, 0.3, 0.6, 1.2])
        ([0.0, 0.075, 0.15, 0.3, 0.6, 1.0], [1.2])
    """
    radii: list[float] = []
    clamped: list[float] = []
    for eps in epsilons:
        e = float(eps)
        if e < 0 or math.isnan(e):
            raise InvalidInput(f"security curve: epsilon must be >= 0, got {e}")
        if e > MAX_EPSILON:
            clamped.append(e)
            e = MAX_EPSILON
            if e in radii:
                continue
        radii.append(e)
    return radii, clamped


def security_curve(model: nn.Module, data: Data, epsilons: Iterable[float], *,
                   steps: int = DEFAULT_STEPS[AttackName.pgd], seed: int = 0,
                   examples: int | None = None, batch_size: int = 256,
                   device: torch.device | str | None = None) -> list[tuple[float, float]]:
    """Robust accuracy under PGD-``steps`` (step 2.5ε/steps) at each ε, in the order given.

    ε = 0 gives the clean accuracy; ε > 1 is clamped to 1, the whole input range (see
    :func:`security_curve_epsilons`; a repeated ε = 1 is computed once). Returns
    ``[(ε, accuracy), ...]``.

    Example::

        >>> security_curve(model, (x, y), [0.0, 0.05, 0.1, 0.4])
        [(0.0, 0.97), (0.05, 0.81), (0.1, 0.55), (0.4, 0.0)]
    """
    x, y = _materialize(data, examples)
    radii, _ = security_curve_epsilons(epsilons)
    out: list[tuple[float, float]] = []
    for eps in radii:
        if eps == 0:
            acc = clean_accuracy(model, (x, y), batch_size=batch_size, device=device)
        else:
            acc = robust_accuracy(model, (x, y), AttackName.pgd, epsilon=eps, steps=steps,
                                  seed=seed, batch_size=batch_size, device=device).accuracy
        out.append((float(eps), acc))
    return out


def monitor_accuracy(model: nn.Module, x: Tensor, y: Tensor, epsilon: float, steps: int,
                     step_size: float | None = None, *, seed: int = 0,
                     batch_size: int = 512) -> tuple[float, float]:
    """Cheap per-epoch check: ``(clean accuracy, PGD-steps robust accuracy)`` on ``(x, y)``.

    PGD from a random start with ``step_size`` (default 2.5ε/steps); a fixed ``seed`` makes
    epochs comparable. Mode, parameters' ``requires_grad`` and the caller's RNG are restored.
    """
    dev = _model_device(model, None)
    clean = clean_accuracy(model, (x, y), batch_size=batch_size, device=dev)
    robust = robust_accuracy(model, (x, y), AttackName.pgd, epsilon=epsilon, steps=steps,
                             step_size=step_size, seed=seed, batch_size=batch_size, device=dev)
    return clean, robust.accuracy



# ---- entry point -------------------------------------------------------------------------

def evaluate(model: nn.Module, data: Data | Tensor, spec_or_y: SweepSpec | EvaluationSpec | Tensor,
             spec: SweepSpec | EvaluationSpec | None = None, *, epsilon: float | None = None,
             seed: int = 0, device: torch.device | str | None = None,
             num_classes: int | None = None, train_epsilon: float | None = None,
             batch_size: int = 256, structure: bool = True) -> Evaluation:
    """Full robustness evaluation of ``model`` on the first ``examples`` of the data.

    Call as ``evaluate(model, data, spec)`` (``data``: ``(x, y)`` or a loader) or
    ``evaluate(model, x, y, spec)``. With a :class:`SweepSpec`, ε is ``spec.eval_epsilon``, the
    training ε ``spec.epsilon`` and the class count ``spec.num_classes``; with an
    :class:`EvaluationSpec`, ε is ``epsilon`` (or ``spec.epsilon``), the training ε
    ``train_epsilon`` (default: ε) and the class count is inferred from the model's output.

    Computes the clean accuracy, every attack of ``spec.attacks`` (each seeded with ``seed``, so
    their order does not matter), the PGD security curve at ``spec.security_curve`` multiples of
    ε (radii past the input range clamped to 1 and flagged ``security_curve_clamped``), and
    the sanity flags; with ``structure`` also the per-layer spectra (largest
    ``spectrum_max`` singular values), the Lipschitz upper bound Π σ_max and the empirical local
    Lipschitz constant at the PGD perturbations (:mod:`tscnc.metrics`), flagging
    ``rank_deficient_layer`` when some layer's κ is infinite.

    Example::

        >>> ev = evaluate(model, x_test, y_test, preset("digits-quick"), seed=0)
        >>> ev.attacks[0].library
        'torchattacks 3.5.1'
    """
    if isinstance(spec_or_y, Tensor):
        if not isinstance(data, Tensor) or spec is None:
            raise InvalidInput("evaluate(model, x, y, spec): x must be a tensor and spec given")
        data, spec = (data, spec_or_y), spec
    else:
        if spec is not None:
            raise InvalidInput("evaluate(model, data, spec): give the spec once")
        spec = spec_or_y
    if isinstance(spec, SweepSpec):
        ev = spec.evaluation
        eps = epsilon if epsilon is not None else spec.eval_epsilon
        train_eps = train_epsilon if train_epsilon is not None else spec.epsilon
        num_classes = num_classes or spec.num_classes
    else:
        ev = spec
        maybe = epsilon if epsilon is not None else ev.epsilon
        if maybe is None:
            raise InvalidInput("evaluate(): give epsilon (or set EvaluationSpec.epsilon)")
        eps = maybe
        train_eps = train_epsilon if train_epsilon is not None else eps
    x, y = _materialize(data, ev.examples)
    dev = _model_device(model, device)
    if num_classes is None:
        num_classes = _infer_num_classes(model, x, dev)
    common: dict[str, Any] = {"seed": seed, "batch_size": batch_size, "device": dev}
    clean = clean_accuracy(model, (x, y), batch_size=batch_size, device=dev)
    steps = {AttackName.pgd: ev.pgd_steps, AttackName.cw: ev.cw_steps,
             AttackName.autoattack: ev.autoattack_steps}
    results = [robust_accuracy(model, (x, y), a, epsilon=eps, steps=steps.get(a),
                               num_classes=num_classes, **common)
               for a in ev.attacks]
    requested = [m * eps for m in ev.security_curve]
    curve = security_curve(model, (x, y), requested, steps=ev.pgd_steps, **common)
    flags = sanity_flags(clean, results, curve, num_classes, epsilon=train_eps)
    if security_curve_epsilons(requested)[1]:
        flags.append(Flag.security_curve_clamped)
    evaluation = Evaluation(clean_accuracy=clean, attacks=results, security_curve=curve,
                            flags=flags)
    if not structure:
        return evaluation
    spectra = metrics.layer_spectra(model, max_values=ev.spectrum_max)
    if any(math.isinf(s.condition_number) for s in spectra):
        flags.append(Flag.rank_deficient_layer)
    return evaluation.model_copy(update={
        "spectra": spectra,
        "flags": flags,
        "lipschitz_upper": metrics.lipschitz_upper(model),
        "lipschitz_empirical": empirical_lipschitz_pgd(
            model, (x, y), epsilon=eps, steps=ev.pgd_steps, **common),
    })


def empirical_lipschitz_pgd(model: nn.Module, data: Data, *, epsilon: float,
                            steps: int = DEFAULT_STEPS[AttackName.pgd], seed: int = 0,
                            examples: int | None = None, batch_size: int = 256,
                            device: torch.device | str | None = None) -> float:
    """max_i ‖f(x_i + δ_i) − f(x_i)‖₂ / ‖δ_i‖₂ with δ_i the PGD-``steps`` perturbation at ε.

    DESIGN §3.5's empirical local Lipschitz constant (logits, eval mode), over every example;
    the ratio itself is :func:`tscnc.metrics.empirical_local_lipschitz`.
    """
    x, x_adv, _ = perturb(model, data, AttackName.pgd, epsilon=epsilon, steps=steps, seed=seed,
                          examples=examples, batch_size=batch_size, device=device)
    best = 0.0
    for i in range(0, len(x), batch_size):
        bx = x[i:i + batch_size]
        best = max(best, metrics.empirical_local_lipschitz(model, bx, x_adv[i:i + batch_size] - bx))
    return best
