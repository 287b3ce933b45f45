"""Retrieval attacks: each runs an engine with an objective over a query set and measures the damage.

Protocol (honest evaluation, DESIGN.md): the gallery is the CLEAN embedding set of the whole
dataset; a query is never its own neighbour or target (its own gallery index is excluded);
perturbed queries are ranked against the clean gallery.

Readings of the published definitions (Zhou et al. ECCV 2020; Zhou & Patel CVPR 2022, "RobRank"):
- QA+ / CA+: a random candidate (w = m = 1) is pulled to the query / the candidate towards the query;
  score = rank percentile of the candidate in the query's ranking (robust: ~50%).
- QA- / CA-: the query's current top-1 is pushed away; score = its rank percentile (robust: ~0%).
- TMA: the query embedding is pulled towards a random other item (cosine); score = mean cosine.
- ES: maximise ||f(x') - f(x)||; ES:D = mean shift (in [0,2]), ES:R = R@1 after the attack.
- LTM: maximise d(q', nearest positive) - d(q', nearest negative); score = R@1 after.
- GTM: push the query away from its current top-1 neighbour (whatever its class); score = R@1 after.
- GTT: move the current top-1 behind the current 4th neighbour; score = % of queries whose
  original top-1 is still in their top-4 after the attack (robust: 100).
- NN (Panum et al., Algorithm 1): queries whose nearest neighbour has their label are pushed away
  from it; already-misranked queries stay clean; score = robust R@1 and mAP@R.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, Optional

import numpy as np
import torch

from robustdml.attacks import objectives as O
from robustdml.attacks.engines import AttackEngine
from robustdml.evaluation import knn, retrieval_metrics
from robustdml.registry import Registry

RETRIEVAL_ATTACKS: Registry = Registry("attack")
GTT_K = 4


def load_images(dataset, indices: np.ndarray) -> torch.Tensor:
    if hasattr(dataset, "get_batch"):
        return dataset.get_batch(indices)[0]
    return torch.stack([dataset[int(i)][0] for i in indices])


@dataclass
class AttackContext:
    """Everything an attack needs: the model, the data, the clean gallery and the engine."""

    model: torch.nn.Module
    dataset: object
    gallery: torch.Tensor          # clean embeddings of the whole dataset (N, E), on CPU
    labels: np.ndarray             # (N,)
    engine: AttackEngine
    device: torch.device
    generator: torch.Generator

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            was = self.model.training
            self.model.eval()
            out = self.model(images.to(self.device)).float().cpu()
            self.model.train(was)
        return out

    def perturb(self, indices: np.ndarray, objective_builder: Callable, *targets: torch.Tensor) -> torch.Tensor:
        images = load_images(self.dataset, indices).to(self.device)
        objective = objective_builder(*(t.to(self.device) for t in targets))
        return self.engine.perturb(self.model, images, objective, generator=self.generator)

    def distances(self, embeddings: torch.Tensor) -> torch.Tensor:
        """(B, N) squared distances to the clean gallery: batch-sized, never N x N."""
        return torch.cdist(embeddings, self.gallery).pow(2)


def rank_percentile(distances: torch.Tensor, candidate: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Percentage of gallery items (query and candidate excluded) ranked before the candidate."""
    rows = torch.arange(len(candidate))
    own = distances[rows, torch.as_tensor(candidate)]
    ahead = (distances < own[:, None]).float()
    ahead[rows, torch.as_tensor(query)] = 0.0
    return (100.0 * ahead.sum(dim=1) / (distances.shape[1] - 2)).numpy()


def _register(name: str):
    return RETRIEVAL_ATTACKS.register(name)


@_register("nn")
def nearest_neighbour(ctx: AttackContext, queries: np.ndarray) -> Dict[str, np.ndarray]:
    _, neighbours = knn(ctx.gallery[queries], ctx.gallery, 1, exclude_index=queries)
    nearest = neighbours[:, 0]
    correct = ctx.labels[nearest] == ctx.labels[queries]
    embeddings = ctx.gallery[queries].clone()
    if correct.any():
        chosen = queries[correct]
        adversarial = ctx.perturb(chosen, O.push_from, ctx.gallery[nearest[correct]])
        embeddings[torch.as_tensor(correct)] = ctx.embed(adversarial)
    return {"embeddings": embeddings}


@_register("es")
def embedding_shift(ctx: AttackContext, queries: np.ndarray) -> Dict[str, np.ndarray]:
    clean = ctx.gallery[queries]
    embeddings = ctx.embed(ctx.perturb(queries, O.push_from, clean))
    return {"embeddings": embeddings, "ES:D": (embeddings - clean).norm(dim=1).numpy()}


@_register("gtm")
def greedy_top1_misranking(ctx: AttackContext, queries: np.ndarray) -> Dict[str, np.ndarray]:
    _, neighbours = knn(ctx.gallery[queries], ctx.gallery, 1, exclude_index=queries)
    return {"embeddings": ctx.embed(ctx.perturb(queries, O.push_from, ctx.gallery[neighbours[:, 0]]))}


@_register("ltm")
def learning_to_misrank(ctx: AttackContext, queries: np.ndarray) -> Dict[str, np.ndarray]:
    distances = ctx.distances(ctx.gallery[queries])
    distances[torch.arange(len(queries)), torch.as_tensor(queries)] = float("inf")
    same = torch.as_tensor(ctx.labels[None, :] == ctx.labels[queries][:, None])
    positive = distances.masked_fill(~same, float("inf")).argmin(dim=1)
    negative = distances.masked_fill(same, float("inf")).argmin(dim=1)
    adversarial = ctx.perturb(queries, O.misrank, ctx.gallery[positive], ctx.gallery[negative])
    return {"embeddings": ctx.embed(adversarial)}


@_register("gtt")
def greedy_top1_translocation(ctx: AttackContext, queries: np.ndarray) -> Dict[str, np.ndarray]:
    _, neighbours = knn(ctx.gallery[queries], ctx.gallery, GTT_K, exclude_index=queries)
    adversarial = ctx.perturb(queries, O.translocate, ctx.gallery[neighbours[:, 0]], ctx.gallery[neighbours[:, -1]])
    _, after = knn(ctx.embed(adversarial), ctx.gallery, GTT_K, exclude_index=queries)
    kept = (after == neighbours[:, :1]).any(axis=1)
    return {"GTT": 100.0 * kept}


@_register("tma")
def targeted_mismatch(ctx: AttackContext, queries: np.ndarray) -> Dict[str, np.ndarray]:
    targets = _random_others(ctx, queries)
    embeddings = ctx.embed(ctx.perturb(queries, O.cosine_to, ctx.gallery[targets]))
    cosine = torch.nn.functional.cosine_similarity(embeddings, ctx.gallery[targets], dim=1)
    return {"TMA": cosine.numpy()}


def _random_others(ctx: AttackContext, queries: np.ndarray) -> np.ndarray:
    n = len(ctx.labels)
    offsets = torch.randint(1, n, (len(queries),), generator=ctx.generator).numpy()
    return (queries + offsets) % n  # never the query itself


def _top1(ctx: AttackContext, queries: np.ndarray) -> np.ndarray:
    return knn(ctx.gallery[queries], ctx.gallery, 1, exclude_index=queries)[1][:, 0]


@_register("qa+")
def query_attack_promote(ctx: AttackContext, queries: np.ndarray) -> Dict[str, np.ndarray]:
    candidates = _random_others(ctx, queries)
    embeddings = ctx.embed(ctx.perturb(queries, O.pull_to, ctx.gallery[candidates]))
    return {"QA+": rank_percentile(ctx.distances(embeddings), candidates, queries)}


@_register("qa-")
def query_attack_demote(ctx: AttackContext, queries: np.ndarray) -> Dict[str, np.ndarray]:
    candidates = _top1(ctx, queries)
    embeddings = ctx.embed(ctx.perturb(queries, O.push_from, ctx.gallery[candidates]))
    return {"QA-": rank_percentile(ctx.distances(embeddings), candidates, queries)}


def _candidate_attack(ctx: AttackContext, queries: np.ndarray, candidates: np.ndarray, builder) -> np.ndarray:
    moved = ctx.embed(ctx.perturb(candidates, builder, ctx.gallery[queries]))
    distances = ctx.distances(ctx.gallery[queries])
    rows = torch.arange(len(queries))
    distances[rows, torch.as_tensor(candidates)] = (moved - ctx.gallery[queries]).pow(2).sum(dim=1)
    return rank_percentile(distances, candidates, queries)


@_register("ca+")
def candidate_attack_promote(ctx: AttackContext, queries: np.ndarray) -> Dict[str, np.ndarray]:
    return {"CA+": _candidate_attack(ctx, queries, _random_others(ctx, queries), O.pull_to)}


@_register("ca-")
def candidate_attack_demote(ctx: AttackContext, queries: np.ndarray) -> Dict[str, np.ndarray]:
    return {"CA-": _candidate_attack(ctx, queries, _top1(ctx, queries), O.push_from)}


def summarise(name: str, outputs: Dict[str, np.ndarray], ctx: AttackContext, queries: np.ndarray) -> Dict[str, object]:
    """Scores of one attack over all queries; retrieval metrics where perturbed embeddings exist."""
    summary: Dict[str, object] = {}
    if "embeddings" in outputs:
        metrics = retrieval_metrics(outputs["embeddings"], ctx.labels[queries], ctx.gallery, ctx.labels,
                                    exclude_index=queries, per_query=True)
        summary.update({"R@1": metrics["R@1"], "mAP@R": metrics["mAP@R"], "correct@1": metrics["correct@1"]})
    for key, values in outputs.items():
        if key != "embeddings":
            summary[key] = float(np.mean(values))
    if name == "es":
        summary["ES:R"] = 100.0 * summary["R@1"]
    if name in ("ltm", "gtm"):
        summary[name.upper()] = 100.0 * summary["R@1"]
    return summary


def run_attack(name: str, ctx: AttackContext, queries: np.ndarray, batch_size: int = 256,
               progress: Optional[Callable[[int], None]] = None) -> Dict[str, object]:
    """Run a named attack over ``queries`` in batches and summarise it."""
    attack = RETRIEVAL_ATTACKS.get(name)
    pieces: Dict[str, list] = {}
    for start in range(0, len(queries), batch_size):
        batch = queries[start:start + batch_size]
        for key, value in attack(ctx, batch).items():
            pieces.setdefault(key, []).append(value)
        if progress:
            progress(len(batch))
    outputs = {k: (torch.cat(v) if isinstance(v[0], torch.Tensor) else np.concatenate(v)) for k, v in pieces.items()}
    return summarise(name, outputs, ctx, queries)
