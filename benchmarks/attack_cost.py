"""Cost of one PGD step against one raw forward+backward pass of the same model and batch.

Issue acceptance: one PGD step costs at most 1.2x a raw forward+backward.

    python benchmarks/attack_cost.py [--batch 128] [--steps 10] [--repeats 7]
"""

from __future__ import annotations

import argparse

import torch

from _timing import median_seconds, raw_forward_backward
from robustdml.attacks import build_engine
from robustdml.attacks.objectives import push_from
from robustdml.models import build_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    torch.manual_seed(0)
    model = build_model("convnet", (1, 28, 28))
    images = torch.rand(args.batch, 1, 28, 28)
    model.train()
    raw = median_seconds(raw_forward_backward(model, images), args.repeats)
    with torch.no_grad():
        targets = model.eval()(images.flip(0))
    engine = build_engine("pgd", eps=0.1, steps=args.steps)
    attack = median_seconds(lambda: engine.perturb(model, images, push_from(targets)), args.repeats)
    per_step = attack / args.steps
    print(f"convnet, batch {args.batch}, torch threads {torch.get_num_threads()}")
    print(f"raw forward+backward : {1000 * raw:7.2f} ms (median of {args.repeats})")
    print(f"PGD, {args.steps} steps        : {1000 * attack:7.2f} ms -> {1000 * per_step:.2f} ms per step")
    print(f"ratio PGD step / raw : {per_step / raw:.3f} (target <= 1.2)")


if __name__ == "__main__":
    main()
