"""Retrieval attacks: each runs an engine with an objective over a query set and measures the damage.

Protocol (honest evaluation, DESIGN.md): the gallery is the CLEAN embedding set of the whole
dataset; a query is never its own neighbour or target (its own gallery index is excluded);
perturbed queries are ranked against the clean gallery.

Readings of the published definitions (Zhou et al. ECCV 2020, "Adversarial Ranking Attack and
Defense"; Zhou & Patel CVPR 2022, "RobRank"), checked against the reference code
(cdluminate/robrank at 38ec207: attacks/advrank.py, advrank_qcselector.py, advrank_loss.py): the
selection of queries and candidates and the loss each attack descends are the reference's; where we
differ, it is said. The ERS profile runs each attack from the clean image (no random start), as the
reference does; objectives that are stationary there (ES) get a jittered target (:func:`jittered`).
The reference's losses use the plain Euclidean distance between unit embeddings (its metric ``N``).
Every ranking loss leaves out the gallery items our scores leave out (the query itself; for CA also
the candidate's clean copy); the reference keeps them in its loss.
- QA+ (m candidates, default 1 as in ERS): m random other items are chosen per query and the query
  is moved by RobRank's query ranking loss, the mean over gallery items x and candidates c of
  [d(q', c) - d(q', x)]_+; score = mean rank percentile of the candidates in the perturbed query's
  ranking (robust: ~50%).
- QA- (m candidates): m distinct candidates drawn at random from the query's top 1% of the
  gallery (the reference's ``_sel_qaminus``), moved by the same loss with the sign reversed,
  [d(q', x) - d(q', c)]_+; score = their mean rank percentile (clean: under 1%, robust: stays low).
- CA+ (w queries, default 1): a random candidate is moved by RobRank's candidate ranking loss, the
  mean over its w queries Q (the batch query and w-1 random others) and gallery items x of
  [d(Q, c') - d(Q, x)]_+; score = mean rank percentile of the moved candidate in those queries'
  clean-gallery rankings (robust: ~50%).
- CA- (w queries): the candidate is drawn at random from the batch query's top 1%, the other w-1
  queries at random from the candidate's own top 1% (the reference's ``_sel_caminus`` draws all
  w queries from the candidate's top 1%); loss [d(Q, x) - d(Q, c')]_+; score = its mean rank
  percentile (clean: under 1%, robust: stays low).
- TMA: the query embedding is pulled towards a random other item (cosine); score = mean cosine.
- ES: maximise ||f(x') - f(x)||; ES:D = mean shift (in [0,2]), ES:R = R@1 after the attack (%).
- LTM: RobRank's loss [max over other-class items d(q', n) - min over same-class items d(q', p)]_+,
  recomputed at every step (every negative before every positive); score = R@1 after (%). The
  reference means to leave the query out of its same-class items (``mask_same.scatter``) but the
  call is not in place, so its own clean copy stays in; we leave it out.
- GTM: pull the query towards the nearest gallery item of another class than the query; score =
  R@1 after (%). The reference's selector (``_sel_gtm``) means to do this, but its ``argmin`` over
  the masked ranks returns a position in the masked subset, not a gallery index, so it pulls
  towards an effectively random item; we do not copy that bug by default (``gtm_target="reference"``
  reproduces it, to compare with published ERS tables).
- GTT (k = 4): the current top-1 is moved by the QA- ranking loss alone (as the reference does);
  score "GTT" = retain@k, the % of queries whose original top-1 is still in the top-k of the
  perturbed query (the reference's ``retain@4``); the row's R@1 is R@1 after GTT.
The R@1 attacks of the default evaluation (``nn``, ``margin``, ``targeted``) live in
:mod:`robustdml.attacks.ensemble`, with per-query early stop.
Rank percentile = % of the gallery (query and candidate excluded) ranked strictly before the
candidate; a candidate or target is never the query itself. "Top 1%" = the int(0.01 N) nearest
gallery items (at least as many as candidates are drawn), the query itself excluded.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property, partial
from typing import Callable, Dict, Optional

import numpy as np
import torch

from robustdml.attacks import objectives as O
from robustdml.attacks.engines import AttackEngine
from robustdml.evaluation import knn, retrieval_metrics
from robustdml.evaluation.ers import ERS_INPUTS
from robustdml.models.mode import eval_mode
from robustdml.registry import Registry

RETRIEVAL_ATTACKS: Registry = Registry("attack")
GTT_K = 4
TOP_FRACTION = 0.01      # QA- / CA- draw their candidates from the query's top 1%
STATIONARY_JITTER = 1e-7
# GTM's target: "nearest", the nearest gallery item of another class (what the attack means to do; default),
# or "reference", the item RobRank's selector actually picks (a position in a masked list read as a gallery
# index: an effectively random item), to compare with published ERS tables.
GTM_TARGETS = ("nearest", "reference")


def check_gtm_target(value) -> None:
    """Reject a GTM target other than those of ``GTM_TARGETS``, naming the valid ones."""
    if value not in GTM_TARGETS:
        raise ValueError(f"gtm_target must be one of {', '.join(GTM_TARGETS)}, got {value!r}")


def jittered(targets: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """``targets`` (float32) moved by -1e-7, 0 or +1e-7 per coordinate at random: an objective such
    as the distance to the clean embedding is stationary at the clean input (zero gradient), and an
    attack that starts there would never move. RobRank does the same (attacks/advrank.py ``embShift``)."""
    noise = torch.randint(-1, 2, targets.shape, generator=generator).to(device=targets.device, dtype=torch.float32)
    return targets.float() + STATIONARY_JITTER * noise


ATTACK_OPTIONS = ("qa_candidates", "ca_queries", "gtt_k")  # the integer options; gtm_target is checked apart


def check_attack_options(options: Dict[str, object]) -> None:
    """Reject unknown or non-positive per-attack options, naming them."""
    unknown = sorted(set(options) - set(ATTACK_OPTIONS))
    if unknown:
        raise ValueError(f"unknown attack option(s) {unknown}; valid: {', '.join(ATTACK_OPTIONS)}")
    for name, value in options.items():
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"attack option {name} must be an integer >= 1, got {value!r}")


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
    qa_candidates: int = 1         # m: candidates per query in QA+/QA-
    ca_queries: int = 1            # w: queries per candidate in CA+/CA-
    gtt_k: int = GTT_K             # GTT moves the top-1 out of the top-k
    gtm_target: str = "nearest"    # GTM pulls towards the nearest other-class item, or "reference" (see gtm)
    passes: float = 0.0            # forward+backward passes spent so far (the attack's cost)

    def __post_init__(self):
        check_attack_options({name: getattr(self, name) for name in ATTACK_OPTIONS})
        check_gtm_target(self.gtm_target)

    @cached_property
    def device_gallery(self) -> torch.Tensor:
        """The clean gallery on the attack's device, for the ranking losses."""
        return self.gallery.to(self.device)

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        with torch.no_grad(), eval_mode(self.model):
            return self.model(images.to(self.device)).float().cpu()

    def perturb(self, indices: np.ndarray, objective_builder: Callable, *targets: torch.Tensor) -> torch.Tensor:
        """Adversarial images of ``indices``; their forward+backward passes are added to ``passes``."""
        images = load_images(self.dataset, indices).to(self.device)
        objective = objective_builder(*(t.to(self.device) for t in targets))
        result = self.engine.attack(self.model, images, objective, generator=self.generator)
        self.passes += float(result.passes.sum())
        return result.adversarial

    def distances(self, embeddings: torch.Tensor) -> torch.Tensor:
        """(B, N) squared distances to the clean gallery: batch-sized, never N x N."""
        return torch.cdist(embeddings, self.gallery).pow(2)


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


def _register(name: str):
    return RETRIEVAL_ATTACKS.register(name)


@_register("es")
def embedding_shift(ctx: AttackContext, queries: np.ndarray) -> Dict[str, np.ndarray]:
    clean = ctx.gallery[queries]
    embeddings = ctx.embed(ctx.perturb(queries, O.push_from, jittered(clean, ctx.generator)))
    return {"embeddings": embeddings, "ES:D": (embeddings - clean).norm(dim=1).numpy()}


def reference_gtm_targets(distances: torch.Tensor, labels: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """The GTM target RobRank's selector picks (``_sel_gtm``, robrank/attacks/advrank_qcselector.py at
    38ec207): among the items whose class differs from the query's top-1, the POSITION of the nearest
    one within that masked subset (the query itself ranked last), read as a gallery index. It means the
    nearest other-class item and gets an effectively random one; published ERS tables use it."""
    distances = distances.clone()
    distances[torch.arange(len(queries)), torch.as_tensor(queries)] = float("inf")
    top1 = distances.argmin(dim=1).numpy()
    targets = []
    for row, first in enumerate(top1):
        unmatched = np.flatnonzero(labels != labels[first])
        targets.append(int(distances[row, unmatched].argmin()))
    return np.asarray(targets)


def gtm_targets(distances: torch.Tensor, labels: np.ndarray, queries: np.ndarray, target: str) -> np.ndarray:
    """The gallery items GTM pulls ``queries`` towards, given their (B, N) ``distances`` to the gallery:
    the nearest item of another class (``target="nearest"``) or the reference's pick (``"reference"``)."""
    if target == "reference":
        return reference_gtm_targets(distances, labels, queries)
    other = torch.as_tensor(labels[None, :] != labels[queries][:, None])
    return distances.masked_fill(~other, float("inf")).argmin(dim=1).numpy()


@_register("gtm")
def greedy_top1_misranking(ctx: AttackContext, queries: np.ndarray) -> Dict[str, np.ndarray]:
    target = gtm_targets(ctx.distances(ctx.gallery[queries]), ctx.labels, queries, ctx.gtm_target)
    return {"embeddings": ctx.embed(ctx.perturb(queries, O.pull_to, ctx.gallery[target]))}


@_register("ltm")
def learning_to_misrank(ctx: AttackContext, queries: np.ndarray) -> Dict[str, np.ndarray]:
    same = torch.as_tensor(ctx.labels[None, :] == ctx.labels[queries][:, None])
    positives = same.clone()
    positives[torch.arange(len(queries)), torch.as_tensor(queries)] = False
    objective = partial(O.negatives_first, gallery=ctx.device_gallery)
    return {"embeddings": ctx.embed(ctx.perturb(queries, objective, positives, ~same))}


@_register("gtt")
def greedy_top1_translocation(ctx: AttackContext, queries: np.ndarray) -> Dict[str, np.ndarray]:
    k = ctx.gtt_k
    top1 = _top(ctx, queries)
    embeddings = ctx.embed(ctx.perturb(queries, _query_ranking(ctx, before=False), _targets(ctx, top1[:, None]),
                                       torch.as_tensor(queries)))
    _, after = knn(embeddings, ctx.gallery, k, exclude_index=queries)
    kept = (after == top1[:, None]).any(axis=1)
    return {"embeddings": embeddings, "GTT": 100.0 * kept}


@_register("tma")
def targeted_mismatch(ctx: AttackContext, queries: np.ndarray) -> Dict[str, np.ndarray]:
    targets = _random_others(ctx, queries)
    embeddings = ctx.embed(ctx.perturb(queries, O.cosine_to, ctx.gallery[targets]))
    cosine = torch.nn.functional.cosine_similarity(embeddings, ctx.gallery[targets], dim=1)
    return {"TMA": cosine.numpy()}


def _random_others(ctx: AttackContext, queries: np.ndarray, count: int = 1) -> np.ndarray:
    """(B,) for count=1, else (B, count): random gallery items, never the query itself."""
    n = len(ctx.labels)
    offsets = torch.randint(1, n, (len(queries), count), generator=ctx.generator).numpy()
    others = (queries[:, None] + offsets) % n
    return others[:, 0] if count == 1 else others


def _top(ctx: AttackContext, queries: np.ndarray, count: int = 1) -> np.ndarray:
    """(B,) for count=1, else (B, count): each query's current top-ranked items, itself excluded."""
    neighbours = knn(ctx.gallery[queries], ctx.gallery, count, exclude_index=queries)[1]
    return neighbours[:, 0] if count == 1 else neighbours


def _from_top_fraction(ctx: AttackContext, items: np.ndarray, count: int, replace: bool) -> np.ndarray:
    """(B, count): items drawn at random from each item's top 1% of the gallery (itself excluded),
    distinct unless ``replace`` (RobRank's ``_sel_qaminus`` permutes, ``_sel_caminus`` draws with
    replacement)."""
    top = max(count, int(TOP_FRACTION * len(ctx.labels)))
    neighbours = knn(ctx.gallery[items], ctx.gallery, top, exclude_index=items)[1]
    if replace:
        columns = torch.randint(0, neighbours.shape[1], (len(items), count), generator=ctx.generator)
    else:
        columns = torch.rand(neighbours.shape, generator=ctx.generator).argsort(dim=1)[:, :count]
    return np.take_along_axis(neighbours, columns.numpy(), axis=1)


def _targets(ctx: AttackContext, indices: np.ndarray) -> torch.Tensor:
    """Clean gallery embeddings of (B,) or (B, m) indices."""
    return ctx.gallery[torch.as_tensor(indices)]


def _query_ranking(ctx: AttackContext, before: bool) -> Callable:
    """The builder of RobRank's query ranking loss against this context's gallery."""
    return partial(O.rank_before if before else O.rank_after, gallery=ctx.device_gallery)


def _query_attack(ctx: AttackContext, queries: np.ndarray, candidates: np.ndarray, before: bool) -> np.ndarray:
    """Move the queries so that their (B,) or (B, m) candidates rank before (QA+) or after (QA-)
    the rest of the gallery; rank percentile of the candidates after."""
    targets = _targets(ctx, candidates.reshape(len(queries), -1))                      # (B, m, E)
    embeddings = ctx.embed(ctx.perturb(queries, _query_ranking(ctx, before), targets, torch.as_tensor(queries)))
    return rank_percentile(ctx.distances(embeddings), candidates, queries)


@_register("qa+")
def query_attack_promote(ctx: AttackContext, queries: np.ndarray) -> Dict[str, np.ndarray]:
    candidates = _random_others(ctx, queries, ctx.qa_candidates)
    return {"QA+": _query_attack(ctx, queries, candidates, before=True)}


@_register("qa-")
def query_attack_demote(ctx: AttackContext, queries: np.ndarray) -> Dict[str, np.ndarray]:
    candidates = _from_top_fraction(ctx, queries, ctx.qa_candidates, replace=False)
    if ctx.qa_candidates == 1:
        candidates = candidates[:, 0]
    return {"QA-": _query_attack(ctx, queries, candidates, before=False)}


def _candidate_attack(ctx: AttackContext, attacked: np.ndarray, candidates: np.ndarray, before: bool) -> np.ndarray:
    """Move each candidate so that it ranks before (CA+) or after (CA-) the rest of the gallery in
    the rankings of its w queries ``attacked`` (B, w); mean rank percentile of the moved candidate
    in those queries' rankings of the clean gallery."""
    batch, w = attacked.shape
    queries = _targets(ctx, attacked)                                                      # (B, w, E)
    query_to_gallery = torch.cdist(queries.flatten(0, 1), ctx.gallery).view(batch, w, -1)  # (B, w, N); 2-D cdist is fast
    left_out = float("inf") if before else float("-inf")     # a term [.]_+ that is 0 whatever c' does
    query_to_gallery.scatter_(2, torch.as_tensor(attacked)[:, :, None], left_out)
    query_to_gallery[torch.arange(batch), :, torch.as_tensor(candidates)] = left_out
    builder = O.candidate_rank_before if before else O.candidate_rank_after
    moved = ctx.embed(ctx.perturb(candidates, builder, queries, query_to_gallery))         # (B, E)
    flat_queries = attacked.reshape(-1)
    flat_candidates = np.repeat(candidates, w)
    distances = ctx.distances(ctx.gallery[torch.as_tensor(flat_queries)])                 # (B*w, N)
    rows = torch.arange(batch * w)
    moved_rows = moved.repeat_interleave(w, dim=0)
    distances[rows, torch.as_tensor(flat_candidates)] = (moved_rows - ctx.gallery[flat_queries]).pow(2).sum(dim=1)
    return rank_percentile(distances, flat_candidates, flat_queries).reshape(batch, w).mean(axis=1)


@_register("ca+")
def candidate_attack_promote(ctx: AttackContext, queries: np.ndarray) -> Dict[str, np.ndarray]:
    candidates = _random_others(ctx, queries)
    attacked = queries[:, None]
    if ctx.ca_queries > 1:
        extra = _random_others(ctx, candidates, ctx.ca_queries - 1).reshape(len(queries), -1)
        attacked = np.concatenate([attacked, extra], axis=1)
    return {"CA+": _candidate_attack(ctx, attacked, candidates, before=True)}


@_register("ca-")
def candidate_attack_demote(ctx: AttackContext, queries: np.ndarray) -> Dict[str, np.ndarray]:
    candidates = _from_top_fraction(ctx, queries, 1, replace=True)[:, 0]
    attacked = queries[:, None]
    if ctx.ca_queries > 1:
        # queries that rank the candidate highly: drawn from the candidate's own top 1%
        extra = _from_top_fraction(ctx, candidates, ctx.ca_queries - 1, replace=True)
        attacked = np.concatenate([attacked, extra], axis=1)
    return {"CA-": _candidate_attack(ctx, attacked, candidates, before=False)}


def summarise(name: str, outputs: Dict[str, np.ndarray], ctx: AttackContext, queries: np.ndarray) -> Dict[str, object]:
    """Scores of one attack over all queries; retrieval metrics where perturbed embeddings exist.

    ``per_query``: each ERS input's value per query (its mean is the score), for ERS's interval."""
    summary: Dict[str, object] = {}
    per_query: Dict[str, np.ndarray] = {}
    if "embeddings" in outputs:
        metrics = retrieval_metrics(outputs["embeddings"], ctx.labels[queries], ctx.gallery, ctx.labels,
                                    exclude_index=queries, per_query=True)
        summary.update({"R@1": metrics["R@1"], "mAP@R": metrics["mAP@R"], "correct@1": metrics["correct@1"],
                        "ap@r": metrics["ap@r"]})
    for key, values in outputs.items():
        if key != "embeddings":
            summary[key] = float(np.mean(values))
            per_query[key] = np.asarray(values, dtype=float)
    r1_score = {"es": "ES:R", "ltm": "LTM", "gtm": "GTM"}.get(name)
    if r1_score:
        summary[r1_score] = 100.0 * summary["R@1"]
        per_query[r1_score] = 100.0 * np.asarray(summary["correct@1"], dtype=float)
    summary["per_query"] = {key: values for key, values in per_query.items() if key in ERS_INPUTS}
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
