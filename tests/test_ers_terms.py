"""Each ERS term on a small naturally trained model under the published 28px profile (PGD from the
clean image, 32 steps of 3/255, eps 77/255): the attack moves its score the way the term says,
and the score stays in its range. The clean scores come from an attack with eps ~ 0."""

import numpy as np
import pytest
import torch

from robustdml.attacks import build_engine
from robustdml.attacks import objectives as O
from robustdml.attacks.context import AttackContext, load_images
from robustdml.attacks.objectives import jittered
from robustdml.attacks.retrieval import RETRIEVAL_ATTACKS, reference_gtm_targets, run_attack
from robustdml.attacks.retrieval.base import from_top_fraction as _from_top_fraction
from robustdml.evaluation import compute_embeddings
from robustdml.evaluation.ers import ERS_INPUTS, empirical_robustness_score, ers_interval, ers_per_query
from robustdml.models import eval_mode

ATTACKS = ("ca+", "ca-", "qa+", "qa-", "tma", "es", "ltm", "gtm", "gtt")
QUERIES = 12


def _context(model, test, gallery, labels, eps, steps, step_size):
    engine = build_engine("pgd", eps=eps, steps=steps, step_size=step_size, random_start=False)
    return AttackContext(model=model, dataset=test, gallery=gallery, labels=labels, engine=engine,
                         device=torch.device("cpu"), generator=torch.Generator().manual_seed(0))


@pytest.fixture(scope="module")
def scores(natural_fmnist):
    """{attack: (clean summary, attacked summary)} over the same queries (and the same draws)."""
    model, test = natural_fmnist
    gallery, labels = compute_embeddings(model, test, progress=False)
    labels = labels.numpy()
    queries = np.arange(0, len(test), len(test) // QUERIES)[:QUERIES]
    results = {}
    for name in ATTACKS:
        clean = run_attack(name, _context(model, test, gallery, labels, 1e-6, 1, 1e-6), queries)
        attacked = run_attack(name, _context(model, test, gallery, labels, 77 / 255, 32, 3 / 255), queries)
        results[name] = (clean, attacked)
    return results


@pytest.mark.parametrize("name,key", [("ca+", "CA+"), ("qa+", "QA+")])
def test_promotion_terms_pull_a_random_candidate_to_the_top(scores, name, key):
    clean, attacked = (summary[key] for summary in scores[name])
    assert 25 < clean < 75  # a random candidate ranks near the middle
    assert 0 <= attacked < clean - 25 and attacked < 20


@pytest.mark.parametrize("name,key", [("ca-", "CA-"), ("qa-", "QA-")])
def test_demotion_terms_push_a_top_1_percent_candidate_down(scores, name, key):
    clean, attacked = (summary[key] for summary in scores[name])
    assert 0 <= clean < 1.5  # drawn from the query's top 1%
    assert clean + 25 < attacked <= 100


def test_tma_raises_the_cosine_to_a_random_item(scores):
    clean, attacked = (summary["TMA"] for summary in scores["tma"])
    assert -1 <= clean < 0.6
    assert clean + 0.3 < attacked <= 1


def test_es_moves_the_embedding_from_a_clean_start_and_breaks_retrieval(scores):
    clean, attacked = scores["es"]
    assert clean["ES:D"] < 1e-3
    assert 0.5 < attacked["ES:D"] <= 2
    assert 0 <= attacked["ES:R"] < clean["ES:R"] - 30


@pytest.mark.parametrize("name,key", [("ltm", "LTM"), ("gtm", "GTM")])
def test_misranking_terms_lower_r1(scores, name, key):
    clean, attacked = scores[name]
    assert clean[key] == pytest.approx(100 * clean["R@1"]) and clean[key] > 40
    assert 0 <= attacked[key] < clean[key] - 20


def test_gtt_is_retain_at_4_and_falls(scores):
    clean, attacked = scores["gtt"]
    assert clean["GTT"] == pytest.approx(100.0)  # the top-1 is in the top-4
    assert 0 <= attacked["GTT"] < 30
    assert 0 <= attacked["R@1"] <= clean["R@1"]  # R@1 after GTT stays in the summary


def test_a_natural_model_scores_a_low_ers(scores):
    values = {}
    for _, attacked in scores.values():
        values.update({key: value for key, value in attacked.items() if key in ERS_INPUTS})
    assert 0 <= empirical_robustness_score(values) < 25


def test_per_query_values_give_the_ers_and_an_interval_around_it(scores):
    """Each attack reports its ERS inputs per query; their per-query ERS averages to the ERS."""
    values, per_query = {}, {}
    for _, attacked in scores.values():
        values.update({key: value for key, value in attacked.items() if key in ERS_INPUTS})
        per_query.update(attacked["per_query"])
    assert set(per_query) == set(ERS_INPUTS) and all(len(v) == QUERIES for v in per_query.values())
    each = ers_per_query(per_query)
    assert each.mean() == pytest.approx(empirical_robustness_score(values))
    low, high = ers_interval(each)
    assert low < each.mean() < high and high - low < 50


def test_gtm_pulls_the_query_towards_its_nearest_other_class_item(natural_fmnist):
    model, test = natural_fmnist
    gallery, labels = compute_embeddings(model, test, progress=False)
    labels = labels.numpy()
    queries = np.arange(0, len(test), 40)[:15]
    context = _context(model, test, gallery, labels, 0.05, 5, 0.02)
    distances = context.distances(gallery[queries])
    other = torch.as_tensor(labels[None, :] != labels[queries][:, None])
    target = distances.masked_fill(~other, float("inf")).argmin(dim=1)
    moved = context.embed(context.perturb(queries, O.pull_to, gallery[target]))  # what gtm does
    before = (gallery[queries] - gallery[target]).norm(dim=1)
    after = (moved - gallery[target]).norm(dim=1)
    assert (after < before).all()


def test_the_reference_gtm_target_is_a_position_in_the_masked_list_read_as_a_gallery_index():
    """RobRank's _sel_gtm: the nearest item whose class differs from the query's top-1 is found in the
    masked list, and its position there is used as a gallery index (``gtm_target="reference"``)."""
    labels = np.array([0, 0, 0, 1, 1, 1])
    distances = torch.tensor([[0.0, 0.1, 0.5, 0.9, 0.3, 0.8]])  # query 0; top-1: item 1 (class 0)
    # the other-class items are 3, 4, 5; the nearest of them is item 4, at position 1 of that list
    assert reference_gtm_targets(distances, labels, np.array([0])).tolist() == [1]  # a same-class item
    # the query itself is never the top-1 (ranked last), so its own class is what gets masked
    distances = torch.tensor([[0.0, 0.6, 0.5, 0.9, 0.7, 0.2]])  # top-1: item 5 (class 1)
    assert reference_gtm_targets(distances, labels, np.array([0])).tolist() == [2]  # nearest of 0,1,2 but 0


def test_gtm_pulls_towards_the_target_its_context_names(natural_fmnist):
    """``gtm_target`` really switches the item GTM pulls towards (the attack is deterministic from the
    clean image, so the library's result equals pulling towards that target by hand)."""
    model, test = natural_fmnist
    gallery, labels = compute_embeddings(model, test, progress=False)
    labels = labels.numpy()
    queries = np.arange(0, len(test), 40)[:15]
    distances = _context(model, test, gallery, labels, 0.05, 5, 0.02).distances(gallery[queries])
    other = torch.as_tensor(labels[None, :] != labels[queries][:, None])
    targets = {"nearest": distances.masked_fill(~other, float("inf")).argmin(dim=1).numpy(),
               "reference": reference_gtm_targets(distances, labels, queries)}
    assert not np.array_equal(targets["nearest"], targets["reference"])
    moved = {}
    for name, target in targets.items():
        context = _context(model, test, gallery, labels, 0.05, 5, 0.02)
        moved[name] = RETRIEVAL_ATTACKS.get("gtm").with_options({"target": name}).attack(context, queries)["embeddings"]
        by_hand = context.embed(context.perturb(queries, O.pull_to, gallery[target]))
        assert torch.allclose(moved[name], by_hand, atol=1e-5), name
    assert not torch.allclose(moved["nearest"], moved["reference"], atol=1e-3)


def test_es_needs_the_jittered_target_from_a_clean_start(natural_fmnist):
    """The distance to the clean embedding has zero gradient at the clean image: without the
    jitter a clean-start attack does not move at all (when the target is computed exactly as the
    attack's own forward pass computes it); with it, it does."""
    model, test = natural_fmnist
    images = load_images(test, np.arange(0, len(test), 40)[:10])
    engine = build_engine("pgd", eps=0.1, steps=3, step_size=0.03, random_start=False)
    with torch.no_grad(), eval_mode(model):
        clean = model(images)
    assert torch.equal(engine.perturb(model, images, O.push_from(clean)), images)
    moved = engine.perturb(model, images, O.push_from(jittered(clean, torch.Generator().manual_seed(0))))
    with torch.no_grad(), eval_mode(model):
        assert (model(moved) - clean).norm(dim=1).min() > 0.05


def test_top_fraction_draws_stay_in_the_top_1_percent(natural_fmnist):
    model, test = natural_fmnist
    gallery, labels = compute_embeddings(model, test, progress=False)
    labels = labels.numpy()
    context = _context(model, test, gallery, labels, 0.1, 1, 0.1)
    queries = np.arange(0, len(test), 20)
    top = int(0.01 * len(labels))
    distances = context.distances(gallery[queries])
    distances[torch.arange(len(queries)), torch.as_tensor(queries)] = float("inf")
    nearest = distances.topk(top, dim=1, largest=False).indices.numpy()
    distinct = _from_top_fraction(context, queries, 3, replace=False)
    for row, allowed, query in zip(distinct, nearest, queries):
        assert set(row) <= set(allowed) and len(set(row)) == 3 and query not in row
    single = _from_top_fraction(context, queries, 1, replace=True)[:, 0]
    assert all(candidate in allowed for candidate, allowed in zip(single, nearest))
    assert (single != nearest[:, 0]).mean() > 0.5  # not the top-1 each time
