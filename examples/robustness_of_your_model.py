"""Measure how robust YOUR embedding model is, from Python.

robustdml's attacks take any ``torch.nn.Module`` that maps images in [0, 1] to embeddings (do any
mean/std normalisation inside the model, so eps stays in pixel units) and any dataset whose items are
``(image tensor in [0, 1], int label)``. Nothing has to be trained with robustdml.

    python examples/robustness_of_your_model.py                 # stand-in model: a random convnet
    python examples/robustness_of_your_model.py --weights my_model.pt --per-class 200

Replace ``build_my_model`` with your own architecture (and ``--weights`` with its state dict).
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from torch import nn

from robustdml.robustness.spec import AUTO_STEPS, AttackSpec
from robustdml.robustness import render
from robustdml.robustness.evaluate import evaluate_robustness
from robustdml.data import build_dataset, limit_per_class


class MyEmbeddingModel(nn.Module):
    """Stand-in for your model: 28x28 grey images in [0, 1] -> L2-normalised 64-d embeddings."""

    def __init__(self, dim: int = 64):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                      nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(4))
        self.head = nn.Linear(32 * 16, dim)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        normalised = (images - 0.2860) / 0.3530  # Fashion-MNIST mean/std, applied inside the model
        return F.normalize(self.head(self.features(normalised).flatten(1)), dim=1)


def build_my_model(weights: str | None) -> nn.Module:
    torch.manual_seed(0)
    model = MyEmbeddingModel()
    if weights:
        model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    return model


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", help="state dict of your model (default: random init)")
    parser.add_argument("--dataset", default="fashion-mnist")
    parser.add_argument("--per-class", type=int, default=100, help="test images per class")
    parser.add_argument("--queries", type=int, default=300, help="attacked queries (fewer = wider intervals)")
    parser.add_argument("--steps", type=int, default=AUTO_STEPS, help="steps per attack run (default: the measured "
                                                                      "strong setting; fewer only for a smoke test)")
    args = parser.parse_args(argv)

    model = build_my_model(args.weights)
    test = limit_per_class(build_dataset(args.dataset, "test"), args.per_class)
    # The default evaluation: the auto ensemble at eps 0.01, 0.05, 0.1 with its convergence check.
    spec = AttackSpec(max_queries=args.queries, steps=args.steps)
    report = evaluate_robustness(model, test, spec, progress=False)
    print(render.to_markdown(report))
    return report


if __name__ == "__main__":
    main()
