"""Retrieval attacks: each runs an engine with an objective over a query set and measures the damage.

Protocol (honest evaluation): the gallery is the CLEAN embedding set of the whole
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
  towards an effectively random item; we do not copy that bug by default (GTM's option ``target="reference"``,
  ``--gtm-target reference``, reproduces it, to compare with published ERS tables).
- GTT (k = 4): the current top-1 is moved by the QA- ranking loss alone (as the reference does);
  score "GTT" = retain@k, the % of queries whose original top-1 is still in the top-k of the
  perturbed query (the reference's ``retain@4``); the row's R@1 is R@1 after GTT.
The R@1 attacks of the default evaluation (``nn``, ``margin``, ``targeted``) are the ensemble members of
:mod:`robustdml.attacks.members`, run with per-query early stop by :mod:`robustdml.attacks.ensemble`.
Each attack is a class (:class:`~robustdml.attacks.retrieval.base.RetrievalAttack`) with its options, its
score columns and its revision; a new one is one module with one class and one import line below.
Rank percentile = % of the gallery (query and candidate excluded) ranked strictly before the
candidate; a candidate or target is never the query itself. "Top 1%" = the int(0.01 N) nearest
gallery items (at least as many as candidates are drawn), the query itself excluded.
"""

from robustdml.attacks.retrieval.base import (RETRIEVAL_ATTACKS, AttackOutcome, RetrievalAttack, rank_percentile,
                                              score_columns)
from robustdml.attacks.retrieval import misranking, ranking, shift  # noqa: F401  (registers the attacks)
from robustdml.attacks.retrieval.misranking import GTM_TARGETS, gtm_targets, reference_gtm_targets



def run_attack(name: str, ctx, queries, options=None, batch_size: int = 256, progress=None) -> dict:
    """The registered attack ``name`` with ``options`` over ``queries``, as one flat dict: its scores, and
    where it yields embeddings, ``R@1`` / ``mAP@R`` after it with the per-query ``correct@1`` / ``ap@r``;
    ``per_query``: its per-query ERS inputs."""
    import numpy as np

    outcome = RETRIEVAL_ATTACKS.get(name).with_options(options or {}).run(ctx, np.asarray(queries), batch_size, progress)
    values = {**outcome.scores, "per_query": outcome.per_query}
    if outcome.correct is not None:
        values.update({"R@1": float(np.mean(outcome.correct)), "mAP@R": outcome.map_r, "correct@1": outcome.correct,
                       "ap@r": outcome.ap})
    return values


__all__ = ["GTM_TARGETS", "RETRIEVAL_ATTACKS", "AttackOutcome", "RetrievalAttack", "gtm_targets", "rank_percentile",
           "reference_gtm_targets", "run_attack", "score_columns"]
