"""The ERS attacks descend RobRank's own losses (cdluminate/robrank, attacks/advrank_loss.py and the
PGD branch of attacks/advrank.py, metric N): each objective here is minus the reference's loss,
written out below as the reference computes it, on the same inputs, with the gallery items our
scores leave out (the query itself; for CA the candidate's clean copy) left out of the mean."""

import numpy as np
import pytest
import torch

from robustdml.attacks import objectives as O

torch.manual_seed(0)
E, N, B = 8, 30, 4
GALLERY = torch.nn.functional.normalize(torch.randn(N, E), dim=1)
OWN = torch.tensor([0, 5, 7, 9])


def _unit(*shape):
    return torch.nn.functional.normalize(torch.randn(*shape, E), dim=-1)


def reference_query_loss(q, candidates, gallery, pm):
    """RankLossQueryAttack for one query: A = cdist(q, C) (1, M), B = cdist(X, q) (NX, 1)."""
    a = torch.cdist(q[None], candidates)
    b = torch.cdist(gallery, q[None])
    return ((a - b) if pm == "+" else (-a + b)).clamp(min=0.0).mean()


def reference_candidate_loss(c, queries, gallery, pm):
    """RankLossCandidateAttack for one candidate: A = ||Q - c|| (NX, W), B = cdist(X, Q) (NX, W)."""
    a = (queries - c).norm(dim=1).expand(len(gallery), len(queries))
    b = torch.cdist(gallery, queries)
    return ((a - b) if pm == "+" else (-a + b)).clamp(min=0.0).mean()


def _without(gallery, index):
    keep = torch.ones(len(gallery), dtype=torch.bool)
    keep[index] = False
    return gallery[keep]


@pytest.mark.parametrize("before,pm", [(True, "+"), (False, "-")])
def test_query_ranking_is_minus_robranks_query_attack_loss(before, pm):
    queries, candidates = _unit(B), _unit(B, 3)
    objective = (O.rank_before if before else O.rank_after)(candidates, OWN, GALLERY)
    expected = torch.stack([reference_query_loss(queries[i], candidates[i], _without(GALLERY, OWN[i]), pm)
                            for i in range(B)])
    assert torch.allclose(objective(queries), -expected, atol=1e-6)
    # the same objective restricted to some rows (per-query early stop) keeps its gallery
    rows = torch.tensor([1, 3])
    assert torch.allclose(objective.select(rows)(queries[rows]), -expected[rows], atol=1e-6)


@pytest.mark.parametrize("before,pm", [(True, "+"), (False, "-")])
def test_candidate_ranking_is_minus_robranks_candidate_attack_loss(before, pm):
    moved, queries = _unit(B), _unit(B, 2)
    left_out = [(0, 3), (5, 1), (7, 2), (9, 4)]  # per candidate: gallery items left out of the mean
    query_to_gallery = torch.cdist(queries, GALLERY)
    for row, items in enumerate(left_out):
        query_to_gallery[row, :, list(items)] = float("inf") if before else float("-inf")
    objective = (O.candidate_rank_before if before else O.candidate_rank_after)(queries, query_to_gallery)
    expected = torch.stack([reference_candidate_loss(moved[i], queries[i], _without(GALLERY, list(left_out[i])), pm)
                            for i in range(B)])
    assert torch.allclose(objective(moved), -expected, atol=1e-6)
    moved.requires_grad_(True)
    objective(moved).sum().backward()
    assert torch.isfinite(moved.grad).all()


def test_negatives_first_is_minus_robranks_ltm_loss():
    labels = torch.arange(N) % 3
    queries = _unit(B)
    same = labels[None, :] == labels[OWN][:, None]
    positives = same.clone()
    positives[torch.arange(B), OWN] = False  # the query itself is not one of its positives
    distances = torch.cdist(queries, GALLERY)
    expected = []
    for i in range(B):
        farthest_negative = distances[i, labels != labels[OWN[i]]].max()
        nearest_positive = distances[i, positives[i]].min()
        expected.append((farthest_negative - nearest_positive).relu())
    objective = O.negatives_first(positives, ~same, GALLERY)
    assert torch.allclose(objective(queries), -torch.stack(expected), atol=1e-6)


def test_the_query_ranking_gradient_is_finite_at_the_clean_start():
    """A clean-start query sits exactly on its own gallery entry (distance 0); that entry is left
    out, so the gradient stays finite and is decided by the other items."""
    queries = GALLERY[OWN].clone().requires_grad_(True)
    candidates = GALLERY[torch.tensor([[1], [2], [3], [4]])]
    for builder in (O.rank_before, O.rank_after):
        value = builder(candidates, OWN, GALLERY)(queries).sum()
        (gradient,) = torch.autograd.grad(value, queries)
        assert torch.isfinite(gradient).all() and gradient.abs().sum() > 0


def test_ranking_losses_vanish_exactly_when_the_order_is_reached():
    """[.]_+ is 0 once every candidate ranks before (QA+) or after (QA-) every other gallery item."""
    query = GALLERY[:1]
    own = torch.tensor([0])
    order = torch.cdist(query, GALLERY)[0].argsort()
    nearest, farthest = order[1], order[-1]
    assert O.rank_before(GALLERY[nearest].view(1, 1, E), own, GALLERY)(query).item() == 0
    assert O.rank_after(GALLERY[farthest].view(1, 1, E), own, GALLERY)(query).item() == 0
    assert O.rank_before(GALLERY[farthest].view(1, 1, E), own, GALLERY)(query).item() < 0
    assert np.isclose(O.rank_after(GALLERY[nearest].view(1, 1, E), own, GALLERY)(query).item(),
                      -torch.cdist(query, GALLERY)[0, order[2:]].sub(torch.cdist(query, GALLERY)[0, nearest])
                      .sum().item() / (N - 1), atol=1e-6)
