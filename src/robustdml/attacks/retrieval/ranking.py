"""RobRank's query and candidate ranking attacks: QA+ / QA- move a query so that chosen candidates rank
first / last; CA+ / CA- move a candidate so that it ranks first / last for chosen queries. Scores are rank
percentiles (see :func:`~robustdml.attacks.retrieval.base.rank_percentile`)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Dict

import numpy as np
import torch

from robustdml.attacks import objectives as O
from robustdml.attacks.context import AttackContext
from robustdml.attacks.retrieval.base import (RETRIEVAL_ATTACKS, RetrievalAttack, embeddings_of, from_top_fraction,
                                              random_others, rank_percentile)
from robustdml.attacks.units import Options, option, registered


@dataclass(frozen=True)
class QueryOptions(Options):
    candidates: int = option(1, flag="--qa-candidates", help="m: candidates per query in QA+/QA-")


@dataclass(frozen=True)
class CandidateOptions(Options):
    queries: int = option(1, flag="--ca-queries", help="w: queries per candidate in CA+/CA-")


class _QueryAttack(RetrievalAttack):
    """Move each query so that its (B,) or (B, m) candidates rank before (``before``) or after the rest of
    the gallery, by RobRank's query ranking loss; the score is their rank percentile after."""

    revision = 2  # RobRank's ranking loss (revision 1: a distance surrogate of ours, a weaker attack)
    Options = QueryOptions
    before = True

    def candidates(self, ctx: AttackContext, queries: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def attack(self, ctx: AttackContext, queries: np.ndarray) -> Dict[str, object]:
        candidates = self.candidates(ctx, queries)
        targets = embeddings_of(ctx, candidates.reshape(len(queries), -1))                     # (B, m, E)
        objective = partial(O.rank_before if self.before else O.rank_after, gallery=ctx.device_gallery)
        embeddings = ctx.embed(ctx.perturb(queries, objective, targets, torch.as_tensor(queries)))
        return {self.scores[0]: rank_percentile(ctx.distances(embeddings), candidates, queries)}


@registered(RETRIEVAL_ATTACKS)
class QueryPromote(_QueryAttack):
    """QA+: m random other items are moved to the top of the query's ranking."""

    name = "qa+"
    scores = ("QA+",)

    def candidates(self, ctx: AttackContext, queries: np.ndarray) -> np.ndarray:
        return random_others(ctx, queries, self.options.candidates)


@registered(RETRIEVAL_ATTACKS)
class QueryDemote(_QueryAttack):
    """QA-: m distinct items of the query's top 1% are moved to the end of its ranking."""

    name = "qa-"
    scores = ("QA-",)
    before = False

    def candidates(self, ctx: AttackContext, queries: np.ndarray) -> np.ndarray:
        chosen = from_top_fraction(ctx, queries, self.options.candidates, replace=False)
        return chosen[:, 0] if self.options.candidates == 1 else chosen


class _CandidateAttack(RetrievalAttack):
    """Move each candidate so that it ranks before (``before``) or after the rest of the gallery in the
    rankings of its w queries, by RobRank's candidate ranking loss; the score is the moved candidate's mean
    rank percentile in those queries' rankings of the clean gallery."""

    revision = 2
    Options = CandidateOptions
    before = True

    def chosen(self, ctx: AttackContext, queries: np.ndarray):
        """(candidates (B,), their w queries (B, w): the batch query first)."""
        raise NotImplementedError

    def attack(self, ctx: AttackContext, queries: np.ndarray) -> Dict[str, object]:
        candidates, attacked = self.chosen(ctx, queries)
        batch, w = attacked.shape
        query_embeddings = embeddings_of(ctx, attacked)                                         # (B, w, E)
        query_to_gallery = torch.cdist(query_embeddings.flatten(0, 1), ctx.gallery).view(batch, w, -1)  # (B, w, N)
        left_out = float("inf") if self.before else float("-inf")  # a term [.]_+ that is 0 whatever c' does
        query_to_gallery.scatter_(2, torch.as_tensor(attacked)[:, :, None], left_out)
        query_to_gallery[torch.arange(batch), :, torch.as_tensor(candidates)] = left_out
        builder = O.candidate_rank_before if self.before else O.candidate_rank_after
        moved = ctx.embed(ctx.perturb(candidates, builder, query_embeddings, query_to_gallery))  # (B, E)
        flat_queries = attacked.reshape(-1)
        flat_candidates = np.repeat(candidates, w)
        distances = ctx.distances(ctx.gallery[torch.as_tensor(flat_queries)])                  # (B*w, N)
        moved_rows = moved.repeat_interleave(w, dim=0)
        distances[torch.arange(batch * w), torch.as_tensor(flat_candidates)] = \
            (moved_rows - ctx.gallery[flat_queries]).pow(2).sum(dim=1)
        percentile = rank_percentile(distances, flat_candidates, flat_queries).reshape(batch, w).mean(axis=1)
        return {self.scores[0]: percentile}


@registered(RETRIEVAL_ATTACKS)
class CandidatePromote(_CandidateAttack):
    """CA+: a random candidate is moved to the top of its w queries' rankings (the batch query and w-1
    random others)."""

    name = "ca+"
    scores = ("CA+",)

    def chosen(self, ctx: AttackContext, queries: np.ndarray):
        candidates = random_others(ctx, queries)
        attacked = queries[:, None]
        if self.options.queries > 1:
            extra = random_others(ctx, candidates, self.options.queries - 1).reshape(len(queries), -1)
            attacked = np.concatenate([attacked, extra], axis=1)
        return candidates, attacked


@registered(RETRIEVAL_ATTACKS)
class CandidateDemote(_CandidateAttack):
    """CA-: an item of the batch query's top 1% is moved to the end of its w queries' rankings (the other
    w-1 queries drawn from the candidate's own top 1%)."""

    name = "ca-"
    scores = ("CA-",)
    before = False

    def chosen(self, ctx: AttackContext, queries: np.ndarray):
        candidates = from_top_fraction(ctx, queries, 1, replace=True)[:, 0]
        attacked = queries[:, None]
        if self.options.queries > 1:
            extra = from_top_fraction(ctx, candidates, self.options.queries - 1, replace=True)
            attacked = np.concatenate([attacked, extra], axis=1)
        return candidates, attacked
