"""GTM with the reference's target and with ours, on the same queries of the same model.

RobRank's GTM selector (robrank/attacks/advrank_qcselector.py ``_sel_gtm`` at 38ec207) ranks the
gallery items whose class differs from the query's top-1, takes the POSITION of the nearest one
within that masked subset, and uses the position as a gallery index: the query is pulled towards an
effectively random item. Ours (robustdml.attacks.retrieval, ``gtm``) pulls it towards the nearest
item of another class, as the attack means to. Both run here with the published ERS profile (PGD,
32 steps of 3/255 from the clean image at eps 77/255) on the queries of the default evaluation;
the GTM score is R@1 after the attack (higher = more robust). Also printed: how far down the
clean ranking the targets lie (rank percentile) and how many share the query's class. The
reference's target is the library's ``gtm_target="reference"`` (``robustdml attack --gtm-target
reference``).

    python benchmarks/gtm_target.py RUN_DIR... [--queries 300] [--seed 0] [--device cpu]
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from robustdml.attacks import build_engine
from robustdml.attacks.context import AttackContext
from robustdml.attacks.retrieval import gtm_targets, rank_percentile, run_attack
from robustdml.robustness.spec import ers_spec
from robustdml.engine.evaluate import load_run
from robustdml.evaluation import compute_embeddings


def compare(run_dir: str, queries: int, seed: int, device: str) -> None:
    loaded = load_run(run_dir, device=device)
    dataset, model = loaded.splits.test, loaded.model
    gallery, labels = compute_embeddings(model, dataset, device=loaded.device, progress=False)
    labels = labels.numpy()
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed)).numpy()
    chosen = np.sort(order[:queries])  # the default evaluation's queries (robustness/state.py)
    spec = ers_spec(dataset.image_shape[-1])
    engine = build_engine(spec.engine, eps=spec.eps[0], steps=spec.steps, step_size=spec.step_size, norm=spec.norm,
                          random_start=spec.random_start)
    ctx = {target: AttackContext(model=model, dataset=dataset, gallery=gallery, labels=labels, engine=engine,
                                 device=loaded.device, generator=torch.Generator().manual_seed(seed))
           for target in ("nearest", "reference")}
    ours = run_attack("gtm", ctx["nearest"], chosen, {"target": "nearest"})["GTM"]
    # robustdml attack --gtm-target reference
    theirs = run_attack("gtm", ctx["reference"], chosen, {"target": "reference"})["GTM"]
    distances = ctx["nearest"].distances(gallery[chosen])
    targets = gtm_targets(distances, labels, chosen, "reference")
    nearest_other = gtm_targets(distances, labels, chosen, "nearest")
    print(f"{run_dir}: GTM (R@1 after, %) ours {ours:.1f}, reference's target {theirs:.1f}; targets' clean rank "
          f"percentile: ours {rank_percentile(distances, nearest_other, chosen).mean():.1f}, reference's "
          f"{rank_percentile(distances, targets, chosen).mean():.1f}; reference targets of the query's class: "
          f"{100 * np.mean(labels[targets] == labels[chosen]):.0f}% ({len(chosen)} queries)", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dirs", nargs="+")
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    for run_dir in args.run_dirs:
        compare(run_dir, args.queries, args.seed, args.device)


if __name__ == "__main__":
    main()
