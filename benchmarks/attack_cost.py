"""Cost of one PGD step vs one raw forward+backward pass of the same model on the same batch.

Acceptance target: a PGD step (forward, objective, gradient w.r.t. the input only, sign step,
projection, clipping) costs at most 1.2x a bare ``model(x).sum().backward()``. The attack skips
weight gradients, so it can even be cheaper than the raw pass, which computes them.

    python benchmarks/attack_cost.py [--batch 128] [--steps 10] [--repeats 7] [--device cpu]

Prints the median seconds per step over repeats for both, and their ratio.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from robustdml.attacks import build_engine
from robustdml.attacks.objectives import push_from
from robustdml.models import build_model


def synchronise(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def raw_step_seconds(model, images: torch.Tensor, steps: int, device: torch.device) -> float:
    """Seconds per forward+backward (weight gradients included, as in training), model in eval()."""
    model.eval()
    synchronise(device)
    start = time.perf_counter()
    for _ in range(steps):
        model.zero_grad(set_to_none=True)
        model(images).sum().backward()
    synchronise(device)
    return (time.perf_counter() - start) / steps


def pgd_step_seconds(model, images: torch.Tensor, steps: int, device: torch.device, eps: float) -> float:
    """Seconds per PGD step, the clean-embedding objective set up outside the timed region."""
    engine = build_engine("pgd", eps=eps, steps=steps, random_start=False)
    with torch.no_grad():
        objective = push_from(model.eval()(images))
    generator = torch.Generator().manual_seed(0)
    synchronise(device)
    start = time.perf_counter()
    engine.perturb(model, images, objective, generator)
    synchronise(device)
    return (time.perf_counter() - start) / steps


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=10, help="steps per timed run (amortises set-up)")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--eps", type=float, default=8 / 255)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--embedding-dim", type=int, default=128)
    args = parser.parse_args(argv)

    device = torch.device(args.device)
    torch.manual_seed(0)
    model = build_model("convnet", (1, 28, 28), embedding_dim=args.embedding_dim).to(device)
    images = torch.rand(args.batch, 1, 28, 28, generator=torch.Generator().manual_seed(1)).to(device)

    raw_step_seconds(model, images, 2, device)          # warm-up (allocator, kernels)
    pgd_step_seconds(model, images, 2, device, args.eps)
    raw, pgd = [], []
    for _ in range(args.repeats):                       # interleaved so drift hits both alike
        raw.append(raw_step_seconds(model, images, args.steps, device))
        pgd.append(pgd_step_seconds(model, images, args.steps, device, args.eps))
    result = {"raw_s": statistics.median(raw), "pgd_s": statistics.median(pgd)}
    result["ratio"] = result["pgd_s"] / result["raw_s"]
    print(f"device {device}, batch {args.batch}, convnet 1x28x28 -> {args.embedding_dim}, "
          f"median of {args.repeats} x {args.steps} steps")
    print(f"raw forward+backward: {1000 * result['raw_s']:.2f} ms/step")
    print(f"PGD step:             {1000 * result['pgd_s']:.2f} ms/step")
    print(f"ratio PGD / raw:      {result['ratio']:.2f}x (target <= 1.20x)")
    return result


if __name__ == "__main__":
    main()
