"""Named metric losses and miners with the seed papers' defaults.

pytorch-metric-learning does the work; this module only fixes names and defaults so that the CLI,
YAML configs and defenses all say ``triplet`` and mean the same thing (margin 0.2, as published).
Every loss here expects L2-normalised embeddings (our models always produce them).
"""

from __future__ import annotations

import math

from pytorch_metric_learning import losses, miners, reducers

from robustdml.losses.tuples import SPC2RandomMiner
from robustdml.registry import Registry, builder_options, check_known_options

LOSSES: Registry = Registry("loss")
MINERS: Registry = Registry("miner")

# Which tuples a loss consumes: defenses that perturb "the positive" need to know.
_KIND = {}


def _loss(name: str, kind: str):
    def decorator(builder):
        _KIND[name] = kind
        return LOSSES.register(name)(builder)

    return decorator


@_loss("contrastive", "pair")
def _contrastive(margin: float = 1.0):
    """Hadsell et al.: pull positives together, push negatives beyond ``margin`` (published 1.0)."""
    return losses.ContrastiveLoss(pos_margin=0.0, neg_margin=margin)


TRIPLET_REDUCTIONS = ("nonzero", "mean")


@_loss("triplet", "triplet")
def _triplet(margin: float = 0.2, reduction: str = "nonzero"):
    """Schroff et al.: ``max(0, d(a,p) - d(a,n) + margin)`` with margin 0.2, averaged over the triplets
    with a non-zero loss (``reduction=nonzero``, pytorch-metric-learning's AvgNonZeroReducer) or over
    all triplets, zeros included (``reduction=mean``: ``F.triplet_margin_loss``, RobRank's ``ptripletN``)."""
    if reduction not in TRIPLET_REDUCTIONS:
        raise ValueError(f"loss 'triplet': option reduction must be one of {', '.join(TRIPLET_REDUCTIONS)}, "
                         f"got {reduction!r}")
    if reduction == "mean":
        return losses.TripletMarginLoss(margin=margin, reducer=reducers.MeanReducer())
    return losses.TripletMarginLoss(margin=margin)


@_loss("margin", "pair")
def _margin(margin: float = 0.2, beta: float = 1.2):
    """Wu et al. 2017 margin loss (fixed beta; pair with distance-weighted mining)."""
    return losses.MarginLoss(margin=margin, nu=0.0, beta=beta, learn_beta=False)


@_loss("multi-similarity", "pair")
def _multi_similarity(alpha: float = 2.0, beta: float = 50.0, base: float = 0.5):
    """Wang et al. 2019 multi-similarity loss with its published constants."""
    return losses.MultiSimilarityLoss(alpha=alpha, beta=beta, base=base)


def loss_kind(name: str) -> str:
    """``"pair"`` or ``"triplet"``: the tuples a loss consumes."""
    LOSSES.get(name)  # raises a helpful error for unknown names
    return _KIND[name]


def _check_type(kind: str, name: str, key: str, value, default) -> None:
    """An option's value must have its default's type: ``margin=abc`` fails here, not at the first step."""
    if isinstance(default, bool):
        ok, what = isinstance(value, bool), "true or false"
    elif isinstance(default, (int, float)):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        what = "a finite number"
    else:
        return
    if not ok:
        raise ValueError(f"{kind} {name!r}: option {key} must be {what} (default {default!r}), got {value!r}")


def _build(registry: Registry, name: str, options):
    """Call the named builder; an option it does not take (e.g. a typo such as ``marign``) or a value of
    the wrong type is an error naming the valid ones, never silently ignored."""
    builder = registry.get(name)
    valid = builder_options(builder)
    check_known_options(registry.kind, name, options, valid)
    for key, value in options.items():
        _check_type(registry.kind, name, key, value, valid[key])
    return builder(**options)


def build_loss(name: str, **options):
    """The pytorch-metric-learning loss registered as ``name`` (see ``LOSSES``), with ``options`` checked."""
    return _build(LOSSES, name, options)


@MINERS.register("all")
def _all():
    """No mining: the loss uses every valid pair/triplet of the batch."""
    return None


@MINERS.register("distance-weighted")
def _distance_weighted(cutoff: float = 0.5, nonzero_loss_cutoff: float = 1.4):
    return miners.DistanceWeightedMiner(cutoff=cutoff, nonzero_loss_cutoff=nonzero_loss_cutoff)


@MINERS.register("semihard")
def _semihard(margin: float = 0.2):
    return miners.TripletMarginMiner(margin=margin, type_of_triplets="semihard")


@MINERS.register("hardest")
def _hardest():
    return miners.BatchHardMiner()


@MINERS.register("spc2-random")
def _spc2_random():
    """RobRank's SPC-2 miner: one random negative per (anchor, positive) pair; needs ``sampler: pairs``."""
    return SPC2RandomMiner()


def build_miner(name: str, **options):
    """A PML miner, or ``None`` for ``all`` (PML losses then use every tuple)."""
    return _build(MINERS, name, options)
