"""CNC numerics on real layer shapes: our Cholesky/slogdet CNC against the released `det` form.

For every VGG-16-BN (CIFAR, HYDRA's network as built by ``tscnc.models``) conv/linear shape, a
plain VGG classifier 512→10 and the WRN-28-10 classifiers 640→10 / 640→100, with Kaiming-init
weights, prints

1. values: det(G/k) and the released (log(ε + det(G/k)))² in float32 (torch.det), our
   ``scale_invariant`` and ``logdet`` kinds in float32 and float64;
2. gradient norms, finiteness and CPU time per call (forward + backward, median).

The cost of the whole regulariser next to a training step is measured by
``bench/regularizer_overhead.py``. Figures only: nothing here passes or fails. Run::

    .venv/bin/python bench/cnc_numerics.py
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from collections.abc import Callable

import torch
from torch import Tensor, nn

from tscnc.constraints import CNC_EPSILON, cnc_penalty

# (name, out, in·kh·kw, count) — VGG16 cfg for CIFAR: 64,64,M,128,128,M,256×3,M,512×3,M,512×3.
SHAPES: list[tuple[str, int, int, int]] = [
    ("vgg conv 3→64", 64, 3 * 9, 1),
    ("vgg conv 64→64", 64, 64 * 9, 1),
    ("vgg conv 64→128", 128, 64 * 9, 1),
    ("vgg conv 128→128", 128, 128 * 9, 1),
    ("vgg conv 128→256", 256, 128 * 9, 1),
    ("vgg conv 256→256", 256, 256 * 9, 2),
    ("vgg conv 256→512", 512, 256 * 9, 1),
    ("vgg conv 512→512", 512, 512 * 9, 5),
    ("vgg fc 2048→256 (HYDRA)", 256, 2048, 1),
    ("vgg fc 256→256 (HYDRA)", 256, 256, 1),
    ("vgg fc 256→10 (HYDRA)", 10, 256, 1),
    ("vgg fc 512→10 (plain)", 10, 512, 1),
    ("wrn-28-10 fc 640→10", 10, 640, 1),
    ("wrn-28-10 fc 640→100", 100, 640, 1),
]


def kaiming(out: int, fan: int, conv: bool) -> Tensor:
    """Convs: kaiming_normal_(fan_out, relu) as torchvision's VGG; linears: nn.Linear's init."""
    if conv:
        w = torch.empty(out, fan // 9, 3, 3)
        nn.init.kaiming_normal_(w, mode="fan_out", nonlinearity="relu")
        return w.reshape(out, fan)
    return nn.Linear(fan, out).weight.detach().clone()


def released_det(w: Tensor) -> Tensor:
    """The released code's form: (log(ε + det(G/k)))² with torch.det, float32."""
    m, n = w.shape
    k = min(m, n)
    g = w @ w.T if m <= n else w.T @ w
    return torch.log(CNC_EPSILON + torch.det(g / k)) ** 2


def value_and_grad(fn: Callable[[Tensor], Tensor], w: Tensor) -> tuple[float, float]:
    leaf = w.detach().clone().requires_grad_(True)
    v = fn(leaf)
    v.backward()
    assert leaf.grad is not None
    return float(v.detach()), float(leaf.grad.norm())


def time_calls(fns: dict[str, Callable[[Tensor], Tensor]], w: Tensor, reps: int) -> dict[str, float]:
    """Median CPU milliseconds (of this thread) of forward + backward per form, the forms
    interleaved per repetition. With one intra-op thread (the default ``--threads 1``) the CPU
    time of the calling thread is the cost of the call and does not depend on other load on a
    shared machine, unlike wall time."""
    leaves = {f: w.detach().clone().requires_grad_(True) for f in fns}
    for f, fn in fns.items():
        fn(leaves[f]).backward()                               # warm-up
    times: dict[str, list[float]] = {f: [] for f in fns}
    for _ in range(reps):
        for f, fn in fns.items():
            leaves[f].grad = None
            t0 = time.thread_time()
            fn(leaves[f]).backward()
            times[f].append(time.thread_time() - t0)
    return {f: 1e3 * statistics.median(ts) for f, ts in times.items()}


def fmt(x: float) -> str:
    if math.isnan(x) or math.isinf(x):
        return str(x)
    if x == 0.0:
        return "0"
    return f"{x:.3e}" if abs(x) < 1e-2 or abs(x) >= 1e4 else f"{x:.4f}"


def table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def numerics(reps: int) -> None:
    forms: dict[str, Callable[[Tensor], Tensor]] = {
        "released det f32": released_det,
        "scale_invariant f32": lambda t: cnc_penalty(t, "scale_invariant"),
        "scale_invariant f64": lambda t: cnc_penalty(t, "scale_invariant", dtype=torch.float64),
        "logdet f32": lambda t: cnc_penalty(t, "logdet"),
        "logdet f64": lambda t: cnc_penalty(t, "logdet", dtype=torch.float64),
    }
    values, grads = [], []
    vgg_total = dict.fromkeys(forms, 0.0)
    for name, out, fan, count in SHAPES:
        w = kaiming(out, fan, conv=name.startswith("vgg conv"))
        k = min(out, fan)
        g = (w @ w.T if out <= fan else w.T @ w) / k
        det = float(torch.det(g))
        results = {f: value_and_grad(fn, w) for f, fn in forms.items()}
        finite = {f: math.isfinite(v) and math.isfinite(gn) for f, (v, gn) in results.items()}
        ms = time_calls(forms, w, reps)
        if name.startswith("vgg") and "plain" not in name:
            for f in forms:
                vgg_total[f] += count * ms[f]
        label = f"{name}" + (f" ×{count}" if count > 1 else "")
        values.append([label, f"{out}×{fan}", str(k), fmt(det)]
                      + [fmt(results[f][0]) for f in forms])
        grads.append([label]
                     + [fmt(results[f][1]) + ("" if finite[f] else " ✗") for f in forms]
                     + [f"{ms[f]:.2f}" for f in forms])
    print("### Values (float32 weights; det and released form in float32)\n")
    print(table(["layer", "m×n", "k", "det(G/k) f32"] + list(forms), values))
    print("\n### Gradient norms ‖∂CNC/∂W‖_F (✗ = value or gradient not finite) and CPU ms per "
          f"call (forward + backward, median of {reps}, {torch.get_num_threads()} thread)\n")
    grads.append(["**all 16 layers of vgg16_bn (HYDRA), one step**"] + [""] * len(forms)
                 + [f"{vgg_total[f]:.1f}" for f in forms])
    print(table(["layer"] + [f"‖∇‖ {f}" for f in forms] + [f"ms {f}" for f in forms], grads))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=7, help="timed repetitions per CNC call")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s), device cpu\n")
    numerics(args.reps)


if __name__ == "__main__":
    main()
