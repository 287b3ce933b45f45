"""A gradient-free check of the default evaluation on low-dimensional inputs (the synthetic set).

    python benchmarks/grid_attack.py RUN_DIR [RUN_DIR ...] [--eps 0.05,0.1,0.2,1] [--grid 41]

With 2-d inputs the whole L-infinity ball can be searched: every query is moved to each point of a
``grid`` x ``grid`` lattice over its eps-ball (clipped to [0,1]) and counts as broken if any of them
puts an item of another class at its top-1 (ranked against the clean test set, itself excluded). No
gradient is involved, so this finds what masked or vanishing gradients hide from the gradient
attacks; it is a lower bound on the attack's power only in that the lattice is finite. At eps = 1
the lattice covers the whole input square, so a query placed on the other class's points must be
misranked: robust R@1 there has to be about 0 for any model. Prints robust R@1 (%) per run and eps.
"""

from __future__ import annotations

import argparse

import torch

from robustdml.engine.evaluate import load_run
from robustdml.evaluation import compute_embeddings


def grid_offsets(eps: float, grid: int, dim: int) -> torch.Tensor:
    """Every point of a ``grid``^dim lattice over [-eps, eps]^dim, as [grid**dim, dim]."""
    axis = torch.linspace(-eps, eps, grid)
    return torch.cartesian_prod(*([axis] * dim)).reshape(-1, dim)


@torch.no_grad()
def grid_robust_r1(model, inputs: torch.Tensor, gallery: torch.Tensor, labels: torch.Tensor, eps: float,
                   grid: int) -> float:
    """Share of queries whose top-1 keeps their class at every lattice point of their eps-ball."""
    offsets = grid_offsets(eps, grid, inputs.shape[1])
    survived = 0
    for index in range(len(inputs)):
        moved = (inputs[index] + offsets).clamp(0, 1)
        embeddings = model(moved)
        distances = torch.cdist(embeddings, gallery)
        distances[:, index] = float("inf")               # the query's own clean copy is not a result
        top1 = labels[distances.argmin(dim=1)]
        survived += bool((top1 == labels[index]).all())
    return survived / len(inputs)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+")
    parser.add_argument("--eps", default="0.05,0.1,0.2,1")
    parser.add_argument("--grid", type=int, default=41, help="lattice points per input dimension")
    arguments = parser.parse_args(argv)
    eps_list = [float(e) for e in arguments.eps.split(",")]
    print("| run | " + " | ".join(f"grid robust R@1, eps {e:g}" for e in eps_list) + " |")
    print("| --- | " + " | ".join("---" for _ in eps_list) + " |")
    for path in arguments.runs:
        loaded = load_run(path, device="cpu")
        test = loaded.splits.test
        inputs = torch.stack([test[i][0] for i in range(len(test))]).float()
        if inputs.dim() != 2 or inputs.shape[1] > 3:
            raise SystemExit(f"{path}: inputs of shape {tuple(inputs.shape[1:])}; the grid search is for 1-3 dims")
        gallery, labels = compute_embeddings(loaded.model, test, progress=False)
        values = [100 * grid_robust_r1(loaded.model, inputs, gallery, labels, eps, arguments.grid) for eps in eps_list]
        print(f"| {path} | " + " | ".join(f"{v:.1f}" for v in values) + " |", flush=True)


if __name__ == "__main__":
    main()
