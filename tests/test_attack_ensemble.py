"""The default evaluation: an ensemble at least as strong, per query, as its members and as a
longer NN-PGD; early stop that saves passes without changing the result; a convergence check that
fires on a weak attack and stays silent on the default; honest intervals."""

import numpy as np
import pytest
import torch

from robustdml.attacks.ensemble import EnsembleRunner, Misranked, find_candidates
from robustdml.attacks.context import AttackContext
from robustdml.attacks.members import AUTO, MEMBERS
from robustdml.attacks.settings import EngineSettings, EnsembleSettings
from robustdml.robustness.spec import AttackSpec
from robustdml.robustness import render
from robustdml.robustness.checks import UntrustworthyEvaluation
from robustdml.robustness.evaluate import evaluate_robustness
from robustdml.evaluation import compute_embeddings, retrieval_metrics
from robustdml.evaluation.intervals import binomial_interval

EPS = 0.03
QUERIES = 80
AUTO_MEMBERS = tuple(cls() for cls in AUTO)


def settings(engine: str = "apgd", steps: int = 100, early_stop: bool = True, restarts: int = 1) -> EnsembleSettings:
    return EnsembleSettings(EngineSettings(engine, steps), restarts=restarts, early_stop=early_stop)


@pytest.fixture(scope="module")
def runner(natural_fmnist):
    model, test = natural_fmnist
    gallery, labels = compute_embeddings(model, test, progress=False)
    ctx = AttackContext(model=model, dataset=test, gallery=gallery, labels=labels.numpy(), engine=EngineSettings().build(0.0),
                        device=torch.device("cpu"), generator=torch.Generator().manual_seed(0))
    queries = np.sort(np.random.default_rng(0).choice(len(test), QUERIES, replace=False))
    return EnsembleRunner(ctx, seed=0), queries


def _broken(outcome):
    return set(np.flatnonzero(~outcome.correct & (outcome.broken_by != "clean")))


def test_the_ensemble_is_per_query_at_least_as_strong_as_each_member_and_a_4x_longer_nn_pgd(runner):
    runner, queries = runner
    spec = settings(steps=10)
    ensemble = runner.run(queries, spec, EPS, AUTO_MEMBERS)
    broken = _broken(ensemble)
    clean_correct = runner.clean_correct(queries)
    assert 0.2 * clean_correct.sum() < len(broken) < clean_correct.sum(), "eps must leave something to find"
    for member in AUTO_MEMBERS:
        alone = _broken(runner.run(queries, spec, EPS, (member,)))
        # Same starts per query; only floating-point differences between batch compositions could
        # let a borderline query escape, so at most one may.
        assert len(alone - broken) <= 1, (member, sorted(alone - broken))
    longer_nn = _broken(runner.run(queries, settings("pgd", steps=40), EPS, (MEMBERS.get("nn")(),)))
    assert len(longer_nn - broken) <= 1, sorted(longer_nn - broken)
    assert len(broken) > len(longer_nn), "the ensemble should find more than NN-PGD alone"


def test_early_stop_gives_the_same_robust_r1_for_fewer_passes(runner):
    runner, queries = runner
    fast = runner.run(queries, settings(steps=10), EPS, AUTO_MEMBERS)
    full = runner.run(queries, settings(steps=10, early_stop=False), EPS, AUTO_MEMBERS)
    # identical up to floating-point differences between batch sizes (see the engine test for the exact case)
    assert abs(int(fast.correct.sum()) - int(full.correct.sum())) <= 1
    assert fast.passes.sum() < 0.7 * full.passes.sum()
    assert (fast.broken_by[fast.correct] == "").all()


def test_the_convergence_check_fires_on_a_weak_attack_and_is_silent_on_the_default(natural_fmnist):
    model, test = natural_fmnist
    weak = AttackSpec(eps=(EPS,), steps=2, max_queries=QUERIES, sanity_checks=False, escalations=0)
    with pytest.warns(UntrustworthyEvaluation, match="not converged: .*margin"):
        report = evaluate_robustness(model, test, weak, progress=False)
    check = report.convergence[EPS]
    assert not check.converged and check.stronger_r1 < check.r1 - 0.01
    assert "NO" in render.to_markdown(report)
    # 100 probe queries, so that one more query broken (one point) is still within the tolerance
    default = AttackSpec(eps=(0.1,), max_queries=100, sanity_checks=False)
    report = evaluate_robustness(model, test, default, progress=False)
    assert report.convergence[0.1].converged, report.convergence
    assert report.convergence[0.1].probe == 100
    assert report.warnings == []


def test_a_failed_check_escalates_so_the_reported_figure_is_the_stronger_one(natural_fmnist):
    model, test = natural_fmnist
    weak = AttackSpec(eps=(EPS,), steps=2, max_queries=QUERIES, sanity_checks=False, escalations=0)
    with pytest.warns(UntrustworthyEvaluation):
        warned = evaluate_robustness(model, test, weak, progress=False)
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UntrustworthyEvaluation)
        escalated = evaluate_robustness(model, test, AttackSpec(eps=(EPS,), steps=2, max_queries=QUERIES,
                                                                sanity_checks=False, escalations=2), progress=False)
    history = escalated.convergence[EPS].escalations
    assert 1 <= len(history) <= 2
    # The first escalation is exactly the failed check's attack, now on every query: it breaks at
    # least what the check broke on the probe, and the headline includes it.
    first = history[0]
    assert first.attack.startswith("auto: APGD-4,") and first.r1 < first.r1_before
    assert first.failed_check.probe == QUERIES   # the probe (100) covers every query here, so ...
    broken_on_probe = first.failed_check.r1 - first.failed_check.stronger_r1
    assert first.r1_before - first.r1 == pytest.approx(broken_on_probe)   # ... the same seeded attack
    assert escalated.worst_case[EPS].r1.value == pytest.approx(history[-1].r1)
    assert escalated.worst_case[EPS].r1.value < warned.worst_case[EPS].r1.value - 0.01
    assert any(row.attack == "auto, escalation 1" for row in escalated.rows)
    assert escalated.worst_case[EPS].passes_per_query > warned.worst_case[EPS].passes_per_query
    if len(history) == 2:
        assert history[1].attack.startswith("auto: APGD-8,")
    assert "escalation" in render.to_markdown(escalated)


def test_the_checks_extra_restart_draws_fresh_starts(runner):
    runner, _ = runner
    spec = AttackSpec(restarts=2, options={"targeted": {"targets": 2}})
    first = runner.runs_of(spec.members, spec.ensemble_settings())
    stronger = spec.stronger()
    extra = runner.runs_of(stronger.members, stronger.ensemble_settings(), first_restart=spec.restarts)
    assert [run.name for run in extra] == ["margin#3", "targeted@1#3", "targeted@2#3", "nn#3"]
    assert not {run.name for run in first} & {run.name for run in extra}


def test_the_stop_criterion_agrees_with_the_metric(runner):
    runner, queries = runner
    ctx = runner.ctx
    own = torch.as_tensor(queries)
    criterion = Misranked(runner.gallery, runner.codes, runner.codes[own], own)
    misranked = criterion(ctx.gallery[queries]).numpy()
    assert np.array_equal(~misranked, runner.clean_correct(queries))
    assert np.array_equal(criterion.select(torch.arange(5))(ctx.gallery[queries[:5]]).numpy(), misranked[:5])


def test_candidates_are_what_they_claim(runner):
    runner, queries = runner
    own = torch.as_tensor(queries[:20])
    codes = runner.codes[own]
    found = find_candidates(runner.gallery[own], codes, own, runner.gallery, runner.codes, runner.classes, k=8,
                            targets=3)
    assert (runner.codes[found.positives] == codes[:, None]).all()
    assert (runner.codes[found.negatives] != codes[:, None]).all()
    assert not (found.positives == own[:, None]).any() and not (found.nearest == own).any()
    target_codes = runner.codes[found.targets]                                         # (B, T, K)
    assert (target_codes == target_codes[:, :, :1]).all(), "each target set is one class"
    assert (target_codes[:, :, 0] != codes[:, None]).all()
    assert all(len(set(row.tolist())) == 3 for row in target_codes[:, :, 0])
    distances = torch.cdist(runner.gallery[own], runner.gallery)
    nearest_negative = distances.gather(1, found.negatives[:, :1]).squeeze(1)
    assert torch.allclose(nearest_negative, distances.gather(1, found.targets[:, 0, :1]).squeeze(1))


def test_robust_r1_comes_with_a_clopper_pearson_interval():
    assert binomial_interval(5, 10) == pytest.approx((0.1871, 0.8129), abs=1e-4)
    assert binomial_interval(0, 10) == pytest.approx((0.0, 0.3085), abs=1e-4)
    assert binomial_interval(10, 10) == pytest.approx((0.6915, 1.0), abs=1e-4)
    with pytest.raises(ValueError):
        binomial_interval(3, 0)


def test_ensemble_metrics_match_the_standard_metric_on_clean_queries(runner):
    runner, queries = runner
    outcome = runner.run(queries, settings(), 0.0, AUTO_MEMBERS)
    clean = retrieval_metrics(runner.ctx.gallery[queries], runner.ctx.labels[queries], runner.ctx.gallery,
                              runner.ctx.labels, exclude_index=queries)
    assert outcome.correct.mean() == pytest.approx(clean["R@1"])
    assert np.nanmean(outcome.ap) == pytest.approx(clean["mAP@R"])
