"""The contract of a retrieval attack, the selectors its queries and candidates are drawn with, and the
rank percentile most ERS scores are measured in."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, ClassVar, Dict, Optional, Tuple

import numpy as np
import torch

from robustdml.attacks.context import AttackContext
from robustdml.attacks.units import Unit
from robustdml.evaluation import knn, retrieval_metrics
from robustdml.evaluation.ers import ERS_INPUTS
from robustdml.registry import Registry

RETRIEVAL_ATTACKS: Registry = Registry("attack")
TOP_FRACTION = 0.01      # QA- / CA- draw their candidates from the query's top 1%


@dataclass
class AttackOutcome:
    """An attack over every query: ``scores`` (each score's mean, and the R@1-valued ERS input of an
    attack that has one), ``per_query`` (each ERS input per query, for ERS's interval), and where the attack
    yields perturbed embeddings, retrieval after it: ``correct`` (per-query R@1), ``ap`` (per-query AP@R),
    ``map_r``."""

    scores: Dict[str, float] = field(default_factory=dict)
    per_query: Dict[str, np.ndarray] = field(default_factory=dict)
    correct: Optional[np.ndarray] = None
    ap: Optional[np.ndarray] = None
    map_r: Optional[float] = None


class RetrievalAttack(Unit):
    """A named attack on retrieval: :meth:`attack` perturbs a batch of queries (or candidates) and returns
    its measures; :meth:`run` does every query in batches and summarises.

    ``scores``: the columns :meth:`attack` returns (e.g. ``("ES:D",)``); ``r1_score``: the name of the ERS
    input that is this attack's R@1 after the attack, in % (e.g. ``"ES:R"``), None if it has none.
    :meth:`attack` may also return ``"embeddings"``, the perturbed query embeddings (B, E), from which
    R@1 and mAP@R after the attack are measured against the clean gallery.
    """

    scores: ClassVar[Tuple[str, ...]] = ()
    r1_score: ClassVar[Optional[str]] = None

    def attack(self, ctx: AttackContext, queries: np.ndarray) -> Dict[str, object]:
        raise NotImplementedError

    def run(self, ctx: AttackContext, queries: np.ndarray, batch_size: int = 256,
            progress: Optional[Callable[[int], None]] = None) -> AttackOutcome:
        pieces: Dict[str, list] = {}
        for start in range(0, len(queries), batch_size):
            batch = queries[start:start + batch_size]
            for key, value in self.attack(ctx, batch).items():
                pieces.setdefault(key, []).append(value)
            if progress:
                progress(len(batch))
        outputs = {k: (torch.cat(v) if isinstance(v[0], torch.Tensor) else np.concatenate(v)) for k, v in pieces.items()}
        return self.summarise(outputs, ctx, queries)

    def summarise(self, outputs: Dict[str, object], ctx: AttackContext, queries: np.ndarray) -> AttackOutcome:
        outcome = AttackOutcome()
        if "embeddings" in outputs:
            metrics = retrieval_metrics(outputs["embeddings"], ctx.labels[queries], ctx.gallery, ctx.labels,
                                        exclude_index=queries, per_query=True)
            outcome.correct, outcome.ap, outcome.map_r = metrics["correct@1"], metrics["ap@r"], metrics["mAP@R"]
        per_query = {key: np.asarray(values, dtype=float) for key, values in outputs.items() if key != "embeddings"}
        if self.r1_score:
            per_query[self.r1_score] = 100.0 * np.asarray(outcome.correct, dtype=float)
        outcome.scores = {key: float(np.mean(values)) for key, values in per_query.items()}
        outcome.per_query = {key: values for key, values in per_query.items() if key in ERS_INPUTS}
        return outcome


def score_columns() -> Tuple[str, ...]:
    """Every score a registered attack reports beside R@1 (its R@1-valued scores would repeat R@1)."""
    columns = []
    for name in RETRIEVAL_ATTACKS.names():
        columns += [c for c in RETRIEVAL_ATTACKS.get(name).scores if c not in columns]
    return tuple(columns)


def rank_percentile(distances: torch.Tensor, candidate: np.ndarray, query: np.ndarray) -> np.ndarray:
    """Percentage of gallery items (query and candidate excluded) ranked before the candidate.

    ``distances``: (B, N) from each query to the gallery; ``candidate``: (B,) or (B, m) gallery
    indices; returns (B,), the mean over the m candidates of each row.
    """
    candidate = torch.as_tensor(np.asarray(candidate).reshape(len(query), -1))
    rows = torch.arange(len(query))
    own = distances.gather(1, candidate)                                   # (B, m)
    ahead = (distances[:, None, :] < own[:, :, None])                      # (B, m, N)
    ahead[rows, :, torch.as_tensor(query)] = False
    return (100.0 * ahead.float().sum(dim=2).mean(dim=1) / (distances.shape[1] - 2)).numpy()


def random_others(ctx: AttackContext, queries: np.ndarray, count: int = 1) -> np.ndarray:
    """(B,) for count=1, else (B, count): random gallery items, never the query itself."""
    n = len(ctx.labels)
    offsets = torch.randint(1, n, (len(queries), count), generator=ctx.generator).numpy()
    others = (queries[:, None] + offsets) % n
    return others[:, 0] if count == 1 else others


def top(ctx: AttackContext, queries: np.ndarray, count: int = 1) -> np.ndarray:
    """(B,) for count=1, else (B, count): each query's current top-ranked items, itself excluded."""
    neighbours = knn(ctx.gallery[queries], ctx.gallery, count, exclude_index=queries)[1]
    return neighbours[:, 0] if count == 1 else neighbours


def from_top_fraction(ctx: AttackContext, items: np.ndarray, count: int, replace: bool) -> np.ndarray:
    """(B, count): items drawn at random from each item's top 1% of the gallery (itself excluded),
    distinct unless ``replace`` (RobRank's ``_sel_qaminus`` permutes, ``_sel_caminus`` draws with
    replacement)."""
    size = max(count, int(TOP_FRACTION * len(ctx.labels)))
    neighbours = knn(ctx.gallery[items], ctx.gallery, size, exclude_index=items)[1]
    if replace:
        columns = torch.randint(0, neighbours.shape[1], (len(items), count), generator=ctx.generator)
    else:
        columns = torch.rand(neighbours.shape, generator=ctx.generator).argsort(dim=1)[:, :count]
    return np.take_along_axis(neighbours, columns.numpy(), axis=1)


def embeddings_of(ctx: AttackContext, indices: np.ndarray) -> torch.Tensor:
    """Clean gallery embeddings of (B,) or (B, m) indices."""
    return ctx.gallery[torch.as_tensor(indices)]
