"""Adversarial training cost against the ideal (eta+1) x raw forward+backward of the same images.

Issue acceptance: adversarial training throughput is at least 80% of the ideal. For each defense the
ideal counts the images it actually sends through the adversary (ACT perturbs p and n: 2B images,
HM perturbs a, p, n: 3B images) plus the training pass.

    python benchmarks/defense_cost.py [--batch 128] [--eta 8] [--repeats 5] [--device cuda]

Ratios below 1 are the overhead of the defense itself (mining, target embeddings with no_grad,
projection and clipping of the perturbation, concatenations) over the bare passes.
"""

from __future__ import annotations

import argparse

import torch

from _timing import median_seconds, raw_forward_backward
from robustdml.data import MPerClassBatchSampler, build_dataset
from robustdml.defenses import build_defense
from robustdml.models import build_model

# images through the adversary per batch image, images through the training pass per batch image
WORKLOAD = {"natural": (0, 1), "est": (1, 1), "act": (2, 3), "hm": (3, 3), "robust-triplet": (0.5, 1.5),
            "mdprop": (3, 4)}


def _synchronised(function, device):
    """Wall-clock timing of asynchronous CUDA work needs a synchronisation after each call."""
    if device.type != "cuda":
        return function

    def run():
        function()
        torch.cuda.synchronize(device)

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--eta", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--defenses", default="natural,est,act,hm")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (timings synchronise the device)")
    args = parser.parse_args()
    device = torch.device(args.device)
    data = build_dataset("fashion-mnist", "train")
    indices = next(iter(MPerClassBatchSampler(data.labels, 16, args.batch)))
    images, labels = data.get_batch(indices)
    images, labels = images.to(device), labels.to(device)
    torch.manual_seed(0)
    model = build_model("convnet", (1, 28, 28)).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    model.train()
    raw = median_seconds(_synchronised(raw_forward_backward(model, images), device), args.repeats)
    print(f"convnet, batch {args.batch}, eta {args.eta}, device {device}, torch threads {torch.get_num_threads()}")
    print(f"raw forward+backward of the batch: {1000 * raw:.1f} ms")
    for name in args.defenses.split(","):
        options = {} if name == "natural" else {"steps": args.eta}
        defense = build_defense(name, loss="triplet", miner="semihard", **options)
        generator = torch.Generator().manual_seed(0)  # CPU generator: defenses move draws to the device

        def step():
            output = defense.step(model, images, labels, generator)
            optimizer.zero_grad(set_to_none=True)
            output.loss.backward()
            optimizer.step()

        measured = median_seconds(_synchronised(step, device), args.repeats, warmup=1)
        adversary, training = WORKLOAD[name]
        ideal = raw * (adversary * (args.eta if name != "natural" else 0) + training)
        print(f"{name:15s} step {1000 * measured:8.1f} ms   ideal {1000 * ideal:8.1f} ms   "
              f"throughput / ideal = {ideal / measured:.3f} (target >= 0.80)")


if __name__ == "__main__":
    main()
