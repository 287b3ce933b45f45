"""The default robustness evaluation's engine: members run over a query set with per-query early stop.

In the spirit of AutoAttack (Croce & Hein, ICML 2020) for classifiers, carried over to retrieval:
a fixed list of members (:mod:`robustdml.attacks.members`), each attacking only the queries the previous
ones could not misrank, and the result is the per-query worst case. A query counts as broken as soon as
some iterate of some run puts an item of another class at its top-1 (its own clean copy excluded, the
clean gallery as reference); it then gets no more steps and no more restarts (early stop), which changes
the cost, never the result: every run draws the random start of each query from a generator seeded by
(seed, eps, run, query), so a query sees the same starts whether or not other queries are still being
attacked. Queries that are already misranked without attack are not attacked.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np
import torch

from robustdml.attacks.context import load_images
from robustdml.attacks.engines import AttackEngine, random_init
from robustdml.attacks.members import Candidates, Member, Run
from robustdml.attacks.settings import EnsembleSettings
from robustdml.evaluation import retrieval_metrics
from robustdml.models.mode import eval_mode


def ranking_scores(embeddings: torch.Tensor, gallery: torch.Tensor, gallery_norms: torch.Tensor) -> torch.Tensor:
    """||g||^2 - 2 <e, g> for every pair (B, N): the squared distance minus the query's own ||e||^2,
    so it ranks the gallery exactly like the distance, with one matrix product."""
    return gallery_norms[None, :] - 2.0 * embeddings.float() @ gallery.T


class Misranked:
    """Stop criterion: the query's nearest clean gallery item (its own copy excluded) is of another class.

    Ranking is by squared Euclidean distance with ties to the lower gallery index, as the metrics do.
    """

    def __init__(self, gallery: torch.Tensor, gallery_labels: torch.Tensor, labels: torch.Tensor, own: torch.Tensor,
                 gallery_norms: Optional[torch.Tensor] = None):
        self.gallery, self.gallery_labels, self.labels, self.own = gallery, gallery_labels, labels, own
        self.gallery_norms = gallery.pow(2).sum(dim=1) if gallery_norms is None else gallery_norms

    def __call__(self, embeddings: torch.Tensor) -> torch.Tensor:
        scores = ranking_scores(embeddings, self.gallery, self.gallery_norms)
        scores[torch.arange(len(self.own), device=scores.device), self.own] = float("inf")
        return self.gallery_labels[scores.argmin(dim=1)] != self.labels

    def select(self, index: torch.Tensor) -> "Misranked":
        index = index.to(self.labels.device)
        return Misranked(self.gallery, self.gallery_labels, self.labels[index], self.own[index], self.gallery_norms)


def _nearest_k(distances: torch.Tensor, mask: torch.Tensor, k: int) -> torch.Tensor:
    """(B, k) indices of the k smallest distances where ``mask`` holds; missing ones repeat the first."""
    masked = distances.masked_fill(~mask, float("inf"))
    values, indices = masked.topk(min(k, masked.shape[1]), dim=1, largest=False)
    return torch.where(torch.isinf(values), indices[:, :1], indices)


def find_candidates(queries: torch.Tensor, codes: torch.Tensor, own: torch.Tensor, gallery: torch.Tensor,
                    gallery_codes: torch.Tensor, classes: int, k: int, targets: int) -> Candidates:
    """Candidate sets of a batch of clean query embeddings; ``codes`` are dense class codes 0..classes-1."""
    distances = torch.cdist(queries.float(), gallery)
    rows = torch.arange(len(own), device=distances.device)
    distances[rows, own] = float("inf")
    same = gallery_codes[None, :] == codes[:, None]
    nearest = distances.argmin(dim=1)
    positives = _nearest_k(distances, same, k)
    negatives = _nearest_k(distances, ~same, k)
    per_class = torch.full((len(own), classes), float("inf"), device=distances.device)
    per_class.scatter_reduce_(1, gallery_codes.expand(len(own), -1), distances, reduce="amin")
    per_class[rows, codes] = float("inf")
    count = max(1, min(targets, classes - 1))
    target_classes = per_class.topk(count, dim=1, largest=False).indices                    # (B, T)
    chosen = [_nearest_k(distances, gallery_codes[None, :] == target_classes[:, t:t + 1], k) for t in range(count)]
    return Candidates(nearest, positives, negatives, torch.stack(chosen, dim=1))


def _seed(*parts) -> int:
    return int(hashlib.sha256("/".join(map(repr, parts)).encode()).hexdigest()[:15], 16)


@dataclass
class EnsembleOutcome:
    """Per-query result of an ensemble at one eps.

    ``correct``: R@1 still right after every run (False for queries misranked without attack);
    ``broken_by``: name of the run that first misranked the query ("" if none, "clean" if it was
    misranked without attack) and ``broken_member`` its member's name; ``passes``: forward+backward passes
    spent on the query; ``ap``: the lowest AP@R over the query's clean and attacked embeddings (NaN without
    positives).
    """

    correct: np.ndarray
    broken_by: np.ndarray
    broken_member: np.ndarray
    passes: np.ndarray
    ap: np.ndarray
    runs: List[str] = field(default_factory=list)
    images: Optional[torch.Tensor] = None   # with keep_images: the successful (else last) adversarial image

    def after_member(self, members: Sequence[str]) -> Dict[str, float]:
        """Robust R@1 after each member (cumulative): the attack's progress, as AutoAttack prints it."""
        alive = self.broken_member != "clean"
        out = {}
        for member in members:
            alive &= self.broken_member != member
            out[member] = float(alive.mean())
        return out

    def counts(self) -> Dict[str, int]:
        """How many queries each run broke first ("clean": misranked without attack)."""
        return _counts(self.broken_by)

    def member_counts(self) -> Dict[str, int]:
        """How many queries each member broke first, the clean misses left out."""
        return {name: count for name, count in _counts(self.broken_member).items() if name != "clean"}


def _counts(names: np.ndarray) -> Dict[str, int]:
    values, counts = np.unique(names.astype(str), return_counts=True)
    return {str(v): int(c) for v, c in zip(values, counts) if v}


class EnsembleRunner:
    """Runs ensemble members over a query set for an :class:`~robustdml.attacks.context.AttackContext`-like
    ``ctx`` (it provides ``model``, ``dataset``, ``gallery`` (clean embeddings, CPU), ``labels`` (numpy)
    and ``device``)."""

    def __init__(self, ctx, seed: int, batch_size: int = 256, progress: Optional[Callable[[int], None]] = None):
        self.ctx, self.seed, self.batch_size, self.progress = ctx, seed, batch_size, progress
        _, codes = np.unique(ctx.labels, return_inverse=True)
        self.classes = int(codes.max()) + 1
        self.codes = torch.as_tensor(codes.reshape(-1), device=ctx.device)
        self.gallery = ctx.gallery.to(ctx.device)

    def clean_correct(self, queries: np.ndarray) -> np.ndarray:
        metrics = retrieval_metrics(self.ctx.gallery[queries], self.ctx.labels[queries], self.ctx.gallery,
                                    self.ctx.labels, exclude_index=queries, per_query=True, include_map=False)
        return metrics["correct@1"]

    def runs_of(self, members: Sequence[Member], settings: EnsembleSettings, first_restart: int = 0) -> List[Run]:
        """The runs of ``members`` in order: each member's restarts (and target classes)."""
        return [run for member in members for run in member.runs(settings.restarts, self.classes, first_restart)]

    def starts(self, images: torch.Tensor, queries: np.ndarray, engine: AttackEngine, run: Run) -> torch.Tensor:
        """Each query's starting point for ``run``: drawn from its own seeded generator (or clean)."""
        if not engine.random_start:
            return images
        noise = [random_init(image[None], engine.eps, engine.norm,
                             torch.Generator().manual_seed(_seed(self.seed, engine.eps, run.name, int(query))))
                 for image, query in zip(images.cpu(), queries)]
        return images + torch.cat(noise).to(images.device)

    def run(self, queries: np.ndarray, settings: EnsembleSettings, eps: float, members: Sequence[Member] = (),
            alive: Optional[np.ndarray] = None, keep_images: bool = False,
            runs: Optional[List[Run]] = None) -> EnsembleOutcome:
        """Attack ``queries`` at ``eps`` with the runs of ``members`` (or the explicit ``runs``).

        ``alive``: the queries to attack (default: those right without attack); the others keep
        ``broken_by = "clean"`` and are never attacked. ``keep_images``: also return each query's
        adversarial image (the one that broke it, else the last run's; clean if never attacked),
        e.g. for a gallery; only for small query sets.
        """
        ctx = self.ctx
        engine = settings.engine.build(eps)
        count = len(queries)
        alive = self.clean_correct(queries) if alive is None else alive.copy()
        broken_by = np.where(alive, "", "clean").astype(object)
        broken_member = broken_by.copy()
        passes = np.zeros(count)
        ap = retrieval_metrics(ctx.gallery[queries], ctx.labels[queries], ctx.gallery, ctx.labels,
                               exclude_index=queries, per_query=True)["ap@r"].copy()
        images = load_images(ctx.dataset, queries).clone() if keep_images else None
        runs = self.runs_of(members, settings) if runs is None else runs
        for run in runs:
            todo = np.flatnonzero(alive & (broken_by == "")) if settings.early_stop else np.flatnonzero(alive)
            for start in range(0, len(todo), self.batch_size):
                rows = todo[start:start + self.batch_size]
                success, cost, batch_ap, adversarial = self._attack_batch(queries[rows], engine, run, settings)
                passes[rows] += cost
                ap[rows] = np.fmin(ap[rows], batch_ap)
                newly = rows[success & (broken_by[rows] == "")]
                if images is not None:
                    keep = torch.as_tensor(broken_by[rows] == "")
                    images[rows[keep.numpy()]] = adversarial[keep]
                broken_by[newly] = run.name
                broken_member[newly] = run.member.name
                if self.progress:
                    self.progress(len(rows))
        correct = alive & (broken_by == "")
        return EnsembleOutcome(correct=correct, broken_by=broken_by, broken_member=broken_member, passes=passes,
                               ap=ap, runs=[run.name for run in runs], images=images)

    def _attack_batch(self, batch: np.ndarray, engine: AttackEngine, run: Run, settings: EnsembleSettings):
        ctx = self.ctx
        own = torch.as_tensor(batch, device=ctx.device)
        codes = self.codes[own]
        candidates = find_candidates(self.gallery[own], codes, own, self.gallery, self.codes, self.classes,
                                     run.member.candidates, run.member.targets)
        images = load_images(ctx.dataset, batch).to(ctx.device)
        stop = Misranked(self.gallery, self.codes, codes, own)
        result = engine.attack(ctx.model, images, run.objective(self.gallery, candidates), stop=stop,
                               early_stop=settings.early_stop, start=self.starts(images, batch, engine, run))
        with torch.no_grad(), eval_mode(ctx.model):
            embeddings = ctx.model(result.adversarial).float().cpu()
        metrics = retrieval_metrics(embeddings, ctx.labels[batch], ctx.gallery, ctx.labels, exclude_index=batch,
                                    per_query=True)
        return result.success.cpu().numpy(), result.passes.cpu().numpy() + 0.5, metrics["ap@r"], result.adversarial.cpu()
