"""Attacks that move a query's embedding without aiming at a ranking: embedding shift (ES) and the
targeted mismatch attack (TMA)."""

from __future__ import annotations

from typing import Dict

import numpy as np
import torch

from robustdml.attacks import objectives as O
from robustdml.attacks.context import AttackContext
from robustdml.attacks.retrieval.base import RETRIEVAL_ATTACKS, RetrievalAttack, random_others
from robustdml.attacks.units import registered


@registered(RETRIEVAL_ATTACKS)
class EmbeddingShift(RetrievalAttack):
    """ES: maximise ||f(x') - f(x)|| (the clean target jittered, since the distance is stationary at the
    clean image); ES:D = the shift, ES:R = R@1 after (%)."""

    name = "es"
    scores = ("ES:D",)
    r1_score = "ES:R"

    def attack(self, ctx: AttackContext, queries: np.ndarray) -> Dict[str, object]:
        clean = ctx.gallery[queries]
        embeddings = ctx.embed(ctx.perturb(queries, O.push_from, O.jittered(clean, ctx.generator)))
        return {"embeddings": embeddings, "ES:D": (embeddings - clean).norm(dim=1).numpy()}


@registered(RETRIEVAL_ATTACKS)
class TargetedMismatch(RetrievalAttack):
    """TMA: pull the query's embedding towards a random other item; TMA = the cosine after."""

    name = "tma"
    scores = ("TMA",)

    def attack(self, ctx: AttackContext, queries: np.ndarray) -> Dict[str, object]:
        targets = random_others(ctx, queries)
        embeddings = ctx.embed(ctx.perturb(queries, O.cosine_to, ctx.gallery[targets]))
        cosine = torch.nn.functional.cosine_similarity(embeddings, ctx.gallery[targets], dim=1)
        return {"TMA": cosine.numpy()}
