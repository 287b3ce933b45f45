"""Attacks must really hurt a naturally trained model, and the report must tell the truth."""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from robustdml.attacks import build_engine
from robustdml.attacks.context import AttackContext
from robustdml.attacks.retrieval import run_attack
from robustdml.robustness.spec import AttackSpec
from robustdml.robustness import render
from robustdml.robustness.checks import UntrustworthyEvaluation
from robustdml.robustness.evaluate import evaluate_robustness
from robustdml.cli import main
from robustdml.evaluation import compute_embeddings

QUERIES = 120


def _spec(**options):
    """A quick spec for tests: no convergence probe or sanity checks unless asked for."""
    options = {"max_queries": QUERIES, "probe_queries": 0, "sanity_checks": False, **options}
    return AttackSpec(**options)


def _nn_r1(model, dataset, engine, eps, steps=5):
    report = evaluate_robustness(model, dataset, _spec(attacks=("nn",), eps=(eps,), engine=engine, steps=steps),
                                 progress=False)
    return report.clean.value, report.rows[0].r1.value


def test_nn_attack_at_the_published_28px_eps_drives_r1_to_near_zero(natural_fmnist):
    model, test = natural_fmnist
    clean, robust = _nn_r1(model, test, "pgd", 77 / 255)
    assert clean > 0.6
    assert robust < 0.05


@pytest.mark.parametrize("engine,steps", [("fgsm", 1), ("pgd", 5), ("apgd", 5), ("cw", 20)])
def test_every_engine_lowers_r1(natural_fmnist, engine, steps):
    """C&W optimises a tanh-reparametrised perturbation with Adam: it needs more than 5 steps to saturate."""
    model, test = natural_fmnist
    clean, robust = _nn_r1(model, test, engine, 0.05, steps=steps)
    assert robust < clean - 0.1, (engine, clean, robust)


def test_apgd_is_at_least_as_strong_as_pgd_at_equal_steps(natural_fmnist):
    """On the margin objective at a budget APGD's step-size schedule is made for (at 5 steps its first
    checkpoint comes after one step, and PGD can be stronger)."""
    model, test = natural_fmnist
    results = {}
    for engine in ("pgd", "apgd"):
        report = evaluate_robustness(model, test, _spec(attacks=("margin",), eps=(0.03,), engine=engine, steps=20),
                                     progress=False)
        results[engine] = report.rows[0].r1.value
    assert results["apgd"] <= results["pgd"] + 0.02, results


def _context(model, test, eps=0.1, steps=5):
    gallery, labels = compute_embeddings(model, test, progress=False)
    return AttackContext(model=model, dataset=test, gallery=gallery, labels=labels.numpy(),
                         engine=build_engine("pgd", eps=eps, steps=steps), device=torch.device("cpu"),
                         generator=torch.Generator().manual_seed(0))


def test_ranking_attacks_move_ranks_the_way_they_claim(natural_fmnist):
    model, test = natural_fmnist
    queries = np.arange(0, len(test), 10)[:60]
    weak = _context(model, test, eps=1e-6, steps=1)   # effectively clean
    strong = _context(model, test, eps=0.1)
    for name, key, direction in [("qa+", "QA+", -1), ("ca+", "CA+", -1), ("qa-", "QA-", 1), ("ca-", "CA-", 1)]:
        before = run_attack(name, weak, queries)[key]
        after = run_attack(name, strong, queries)[key]
        assert direction * (after - before) > 5, (name, before, after)  # rank percentile moves by > 5 points
    assert run_attack("tma", strong, queries)["TMA"] > run_attack("tma", weak, queries)["TMA"] + 0.1
    shift = run_attack("es", strong, queries)
    assert shift["ES:D"] > 0.1 and shift["ES:R"] < 100 * run_attack("es", weak, queries)["R@1"]


class _GradientMasked(nn.Module):
    """Quantised input: zero gradients everywhere, the classic way to fake robustness."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(torch.round(x * 4) / 4)


def test_sanity_checks_flag_gradient_masking(natural_fmnist):
    model, test = natural_fmnist
    with pytest.warns(UntrustworthyEvaluation, match="unbounded"):
        report = evaluate_robustness(_GradientMasked(model), test, _spec(attacks=("nn",), eps=(0.05,), steps=3,
                                                                         max_queries=60, sanity_checks=True),
                                     progress=False)
    assert any("unbounded" in warning for warning in report.warnings)


def test_report_files_and_the_headline_is_the_per_query_worst_case(natural_fmnist, tmp_path):
    model, test = natural_fmnist
    report = evaluate_robustness(model, test, _spec(attacks=("nn", "gtm"), eps=(0.02, 0.05), steps=10,
                                                    max_queries=80, sanity_checks=True), progress=False)
    assert report.warnings == [], "a healthy model and attack must pass the sanity checks"
    assert report.settings.unbounded_r1 <= 0.05
    for eps in (0.02, 0.05):
        per_attack = [row.r1.value for row in report.rows if row.eps == eps]
        assert report.worst_case[eps].r1.value <= min(per_attack) + 1e-9
        low, high = report.worst_case[eps].r1.low, report.worst_case[eps].r1.high
        assert low <= report.worst_case[eps].r1.value <= high and high - low < 0.3
        assert report.worst_case[eps].passes_per_query > 0
    folder = render.write(report, tmp_path / "robustness")
    for name in ("robustness.md", "robustness.csv", "robustness.json", "robust_r1_vs_eps.png"):
        assert (folder / name).stat().st_size > 0
    saved = json.loads((folder / "robustness.json").read_text())
    assert saved["settings"]["spec"]["attacks"] == ["nn", "gtm"] and saved["settings"]["spec_key"]
    assert set(saved["worst_case"]) == {"0.02", "0.05"}


def test_attack_cli_on_a_run(natural_fmnist_run, tmp_path, capsys):
    arguments = ["attack", str(natural_fmnist_run[0]), "--attacks", "nn,es", "--eps", "0.02,8/255", "--steps", "2",
                 "--max-queries", "40", "--probe-queries", "0", "--no-sanity-checks", "--no-progress",
                 "--output", str(tmp_path / "r")]
    assert main(arguments) == 0
    out = capsys.readouterr().out
    assert "| nn | 0.03137 |" in out and "| es | 0.03137 |" in out
    assert (tmp_path / "r" / "robustness.json").is_file()
    assert main(arguments) == 0
    assert "reusing the result" in capsys.readouterr().out
    assert main(arguments[:-2] + ["--eps", "0.02"]) == 0  # another spec: computed anew, never reused
    assert "reusing" not in capsys.readouterr().out
    assert main(["attack", str(natural_fmnist_run[0]), "--attacks", "bogus"]) == 2
    # an option of an attack that does not run is refused, naming the attacks that have it
    assert main(arguments[:-2] + ["--qa-candidates", "2"]) == 2
    assert "--qa-candidates is an option of qa+, qa-, which this evaluation does not run" in capsys.readouterr().err
    # --gtm-target reaches the spec (and so the cache key) and the description
    gtm = arguments[:3] + ["gtm", "--gtm-target", "reference"] + arguments[4:-1] + [str(tmp_path / "g")]
    assert main(gtm) == 0
    assert "GTM towards the reference target" in capsys.readouterr().out
    saved = json.loads((tmp_path / "g" / "robustness.json").read_text())
    assert saved["settings"]["spec"]["options"] == {"gtm": {"target": "reference"}}
    with pytest.raises(SystemExit):  # argparse names the valid choices
        main(gtm[:-4] + ["--gtm-target", "random"] + gtm[-4:])
    assert "invalid choice: 'random' (choose from 'nearest', 'reference')" in capsys.readouterr().err


def test_gtt_moves_the_top1_out_of_the_top_k(natural_fmnist):
    model, test = natural_fmnist
    queries = np.arange(0, len(test), 10)[:60]
    weak, strong = _context(model, test, eps=1e-6, steps=1), _context(model, test, eps=0.1, steps=10)
    before, after = run_attack("gtt", weak, queries), run_attack("gtt", strong, queries)
    assert before["GTT"] == pytest.approx(100.0)  # retain@4: the top-1 is still in the top-4
    assert after["GTT"] < 30, after


def test_qa_with_several_candidates_and_ca_with_several_queries(natural_fmnist):
    model, test = natural_fmnist
    queries = np.arange(0, len(test), 10)[:40]
    weak, strong = _context(model, test, eps=1e-6, steps=1), _context(model, test, eps=0.1)
    for name, key, direction in [("qa+", "QA+", -1), ("qa-", "QA-", 1), ("ca+", "CA+", -1), ("ca-", "CA-", 1)]:
        several = {"candidates": 3} if name.startswith("qa") else {"queries": 3}
        before, after = run_attack(name, weak, queries, several)[key], run_attack(name, strong, queries, several)[key]
        assert direction * (after - before) > 5, (name, before, after)
        if name == "qa-":
            assert before < 1.0  # the clean top-3 rank at the very top


def test_robust_r1_falls_with_eps_and_the_worst_case_is_no_better_than_any_attack(natural_fmnist):
    model, test = natural_fmnist
    report = evaluate_robustness(model, test, _spec(attacks=("nn", "gtt"), eps=(0.0, 0.01, 0.05), steps=3,
                                                    max_queries=60), progress=False)
    nn_curve = [row.r1.value for row in report.rows if row.attack == "nn"]
    assert nn_curve[0] == pytest.approx(report.clean.value)  # eps 0 = clean
    assert nn_curve[0] > nn_curve[1] > nn_curve[2]
    assert report.worst_case[0.05].r1.value <= min(row.r1.value for row in report.rows if row.eps == 0.05)
    assert "| GTT " in render.to_markdown(report)  # retain@4 in the "other" column


def test_apgd_reaches_a_higher_embedding_shift_than_pgd_at_equal_steps(natural_fmnist):
    from robustdml.attacks.objectives import push_from
    from robustdml.attacks.context import load_images

    model, test = natural_fmnist
    images = load_images(test, np.arange(0, len(test), 10)[:48])
    with torch.no_grad():
        clean = model.eval()(images)
    objective = push_from(clean)
    values = {}
    for name in ("pgd", "apgd"):
        adversarial = build_engine(name, eps=0.03, steps=10).perturb(model, images, objective,
                                                                      torch.Generator().manual_seed(0))
        with torch.no_grad():
            values[name] = float(objective(model(adversarial)).mean())
    assert values["apgd"] >= values["pgd"] * 0.98, values


def test_ers_comes_with_its_interval_over_the_queries(natural_fmnist):
    """ERS is a mean over the attacked queries like robust R@1: the report gives each query's ERS,
    the 95% interval of their mean, and the interval in the markdown and the JSON."""
    from robustdml.robustness.spec import ers_spec

    model, test = natural_fmnist
    report = evaluate_robustness(model, test, _spec(attacks=(), ers=ers_spec(28, steps=2), max_queries=10),
                                 progress=False)
    ers = json.loads(json.dumps(report.to_dict()))["ers"]
    low, high = ers["interval"]
    assert len(ers["per_query"]) == 10 and np.mean(ers["per_query"]) == pytest.approx(ers["ERS"], abs=1e-3)
    assert low < ers["ERS"] < high and ers["level"] == 0.95
    assert f"[{low:.2f}, {high:.2f}] (95% interval over 10 queries" in render.to_markdown(report)
    assert all("per_query" not in row for row in ers["rows"])
