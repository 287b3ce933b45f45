"""Attack objectives: small functions of embeddings that an engine maximises.

Each builder takes the fixed (detached) reference embeddings it needs and returns an
:class:`Objective`: ``objective(embeddings) -> (B,)``, one value per sample. Any objective works
with any engine. Distances are squared Euclidean on unit embeddings, except in the ranking losses
of the ERS attacks, which use the plain Euclidean distance as RobRank does (its metric ``N``);
"pull" objectives return negative distances. ``objective.select(index)`` is the same objective
for a sub-batch: engines use it to stop attacking samples that are already misranked (per-query
early stop). A gallery shared by every sample is bound to the function, not sliced with the rows.

Who uses what (see :mod:`robustdml.attacks.retrieval` and :mod:`robustdml.attacks.ensemble`):
- ``push``       nearest-neighbour push (Panum et al. Alg. 1), embedding shift (from the clean
                 embedding);
- ``pull``       single-target attacks, GTM;
- ``pull-many``  multi-targeted (towards all targets);  ``push-many``  away from several targets;
- ``pull-mean``  multi-targeted towards the mean of several targets (e.g. a class centre);
- ``rank-before`` / ``rank-after``  QA+ / QA- (and GTT, with the top-1 as candidate): RobRank's
                 query ranking loss over the whole gallery;
- ``candidate-rank-before`` / ``candidate-rank-after``  CA+ / CA-: RobRank's candidate ranking loss;
- ``negatives-first``  LTM: RobRank's "every negative before the nearest positive" loss;
- ``margin``     the ranking margin of the default ensemble: nearest positive vs nearest negative;
- ``cosine``     TMA;  ``misrank``  the robust-tuple defenses' adversary.
"""

from __future__ import annotations

import functools
from typing import Callable

import torch

STATIONARY_JITTER = 1e-7


def jittered(targets: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """``targets`` (float32) moved by -1e-7, 0 or +1e-7 per coordinate at random: an objective such
    as the distance to the clean embedding is stationary at the clean input (zero gradient), and an
    attack that starts there would never move. RobRank does the same (attacks/advrank.py ``embShift``)."""
    noise = torch.randint(-1, 2, targets.shape, generator=generator).to(device=targets.device, dtype=torch.float32)
    return targets.float() + STATIONARY_JITTER * noise


def squared_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a - b).pow(2).sum(dim=-1)


class Objective:
    """``function(embeddings, *targets) -> (B,)`` bound to per-sample targets (first dimension B).

    Calling it evaluates the function; :meth:`select` restricts every target to some rows, so an
    engine can keep attacking only the samples that still need it.
    """

    def __init__(self, function: Callable[..., torch.Tensor], *targets: torch.Tensor):
        self.function = function
        self.targets = tuple(target.detach() for target in targets)

    def __call__(self, embeddings: torch.Tensor) -> torch.Tensor:
        return self.function(embeddings, *self.targets)

    def select(self, index: torch.Tensor) -> "Objective":
        return Objective(self.function, *(target[index.to(target.device)] for target in self.targets))

    def __repr__(self) -> str:
        return f"Objective({getattr(self.function, '__name__', self.function)})"


def _push(embeddings, targets):
    return squared_distance(embeddings, targets)


def _pull(embeddings, targets):
    return -squared_distance(embeddings, targets)


def _pull_many(embeddings, targets):
    return -squared_distance(embeddings[:, None, :], targets).mean(dim=1)


def _push_many(embeddings, targets):
    return squared_distance(embeddings[:, None, :], targets).mean(dim=1)


def _cosine(embeddings, targets):
    return (torch.nn.functional.normalize(embeddings, dim=-1) * targets).sum(dim=-1)


def _misrank(embeddings, positives, negatives):
    return squared_distance(embeddings, positives) - squared_distance(embeddings, negatives)


def _query_ranking(embeddings, candidates, own, gallery, before: bool):
    """Minus RobRank's query ranking loss (attacks/advrank_loss.py ``RankLossQueryAttack``, metric N):
    the mean over gallery items x (the query's own index ``own`` left out) and candidates c of
    [d(q', c) - d(q', x)]_+ (``before``: every c should rank before every x) or [d(q', x) - d(q', c)]_+."""
    to_gallery = torch.cdist(embeddings, gallery)                                  # (B, N)
    to_candidates = (embeddings[:, None, :] - candidates).norm(dim=-1)             # (B, m)
    gap = to_candidates[:, :, None] - to_gallery[:, None, :]                       # (B, m, N)
    keep = torch.ones_like(to_gallery)
    keep[torch.arange(len(own), device=own.device), own] = 0.0
    violated = (gap if before else -gap).clamp(min=0) * keep[:, None, :]
    return -violated.sum(dim=2).mean(dim=1) / keep.sum(dim=1)


def _candidate_ranking(embeddings, queries, query_to_gallery, before: bool):
    """Minus RobRank's candidate ranking loss (``RankLossCandidateAttack``, metric N) of the moved
    candidate c': the mean over its w queries Q and gallery items x of [d(Q, c') - d(Q, x)]_+
    (``before``) or [d(Q, x) - d(Q, c')]_+. d(Q, x) does not depend on c' and comes precomputed
    (B, w, N), with the entries to leave out set to +inf (``before``) or -inf, so that their term is 0;
    the mean is over the other entries."""
    to_queries = (queries - embeddings[:, None, :]).norm(dim=-1)                  # (B, w)
    gap = to_queries[:, :, None] - query_to_gallery                                # (B, w, N)
    counted = torch.isfinite(query_to_gallery).flatten(1).sum(dim=1).clamp(min=1)
    return -(gap if before else -gap).clamp(min=0).flatten(1).sum(dim=1) / counted


def _negatives_first(embeddings, positives, negatives, gallery):
    """Minus RobRank's LTM loss (attacks/advrank.py, PGD branch ``LTM``, metric N):
    [max over negatives d(q', n) - min over positives d(q', p)]_+; ``positives``, ``negatives``:
    (B, N) bool masks of the gallery (the query itself in neither)."""
    distances = torch.cdist(embeddings, gallery)
    farthest_negative = distances.masked_fill(~negatives, float("-inf")).amax(dim=1)
    nearest_positive = distances.masked_fill(~positives, float("inf")).amin(dim=1)
    return -(farthest_negative - nearest_positive).clamp(min=0)


def _nearest(embeddings, targets):
    """min_t ||e - t||^2 over (B, T, E) targets, with a batched matrix product."""
    cross = torch.bmm(targets, embeddings[:, :, None]).squeeze(2)                 # (B, T)
    return (embeddings.pow(2).sum(dim=1, keepdim=True) - 2 * cross + targets.pow(2).sum(dim=2)).amin(dim=1)


def _margin(embeddings, positives, negatives):
    return _nearest(embeddings, positives) - _nearest(embeddings, negatives)


def push_from(targets: torch.Tensor) -> Objective:
    """Maximise the distance to one target per sample (NN attack, embedding shift)."""
    return Objective(_push, targets)


def pull_to(targets: torch.Tensor) -> Objective:
    """Minimise the distance to one target per sample (targeted attacks, GTM)."""
    return Objective(_pull, targets)


def pull_to_many(targets: torch.Tensor) -> Objective:
    """Minimise the mean distance to several targets per sample, ``targets``: (B, T, E) (multi-targeted)."""
    return Objective(_pull_many, targets)


def push_from_many(targets: torch.Tensor) -> Objective:
    return Objective(_push_many, targets)


def cosine_to(targets: torch.Tensor) -> Objective:
    """Maximise cosine similarity to a target (targeted mismatch attack, TMA)."""
    return Objective(_cosine, torch.nn.functional.normalize(targets.detach(), dim=-1))


def misrank(positives: torch.Tensor, negatives: torch.Tensor) -> Objective:
    """Learning-to-misrank (Wang et al. 2020): push the nearest same-class item away and pull the
    nearest other-class item closer: maximise d(q', p) - d(q', n)."""
    return Objective(_misrank, positives, negatives)


def pull_to_mean(targets: torch.Tensor) -> Objective:
    """Minimise the distance to the mean of several targets per sample, ``targets``: (B, T, E)
    (multi-targeted towards a class centre, as MDProp's multi-targeted adversaries do)."""
    return Objective(_pull, targets.detach().mean(dim=1))


def rank_before(candidates: torch.Tensor, own: torch.Tensor, gallery: torch.Tensor) -> Objective:
    """QA+ (RobRank's query ranking loss): move the query so that its ``candidates`` ((B, m, E))
    rank before every item of ``gallery`` ((N, E)), the query's own index ``own`` ((B,)) left out."""
    return Objective(functools.partial(_query_ranking, gallery=gallery.detach(), before=True), candidates, own)


def rank_after(candidates: torch.Tensor, own: torch.Tensor, gallery: torch.Tensor) -> Objective:
    """QA- and GTT (RobRank's query ranking loss): move the query so that its ``candidates``
    ((B, m, E)) rank after every item of ``gallery``, the query's own index ``own`` left out."""
    return Objective(functools.partial(_query_ranking, gallery=gallery.detach(), before=False), candidates, own)


def candidate_rank_before(queries: torch.Tensor, query_to_gallery: torch.Tensor) -> Objective:
    """CA+ (RobRank's candidate ranking loss): move a candidate so that it ranks before every gallery
    item in the rankings of its ``queries`` ((B, w, E)); ``query_to_gallery`` ((B, w, N)): their
    distances to the gallery, +inf where an item is left out (the query, the candidate)."""
    return Objective(functools.partial(_candidate_ranking, before=True), queries, query_to_gallery)


def candidate_rank_after(queries: torch.Tensor, query_to_gallery: torch.Tensor) -> Objective:
    """CA- (RobRank's candidate ranking loss): move a candidate so that it ranks after every gallery
    item in its queries' rankings; ``query_to_gallery``: -inf where an item is left out."""
    return Objective(functools.partial(_candidate_ranking, before=False), queries, query_to_gallery)


def negatives_first(positives: torch.Tensor, negatives: torch.Tensor, gallery: torch.Tensor) -> Objective:
    """LTM (RobRank's loss): move the query until its farthest negative in ``gallery`` is nearer
    than its nearest positive; ``positives``, ``negatives``: (B, N) bool, the query itself in neither."""
    return Objective(functools.partial(_negatives_first, gallery=gallery.detach()), positives, negatives)


def ranking_margin(positives: torch.Tensor, negatives: torch.Tensor) -> Objective:
    """The retrieval analogue of the CW / DLR margin: maximise

        min_p d(q', p) - min_n d(q', n)          positives (B, P, E), negatives (B, N, E),

    which is > 0 exactly when some negative ranks before every positive (R@1 broken, when the
    sets hold the candidates that matter). Only the currently nearest positive and negative get
    gradient, so the attack always works on the pair that decides the top-1."""
    return Objective(_margin, positives, negatives)
