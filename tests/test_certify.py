"""Certification of a smoothed embedding model: the certified lower bound never exceeds what an
attack on the same smoothed model leaves, shrinks with the radius, vanishes past the largest
certifiable radius, and more Monte Carlo samples never lower it by more than the confidence allows."""

import numpy as np
import pytest
import torch

from robustdml.certify import AttackSettings, CertifySettings, certify_model
from robustdml.certify.bounds import (ap_lower_bound, largest_certifiable_radius, mean_error_bound,
                                      radius_of_margin)
from robustdml.certify.smoothing import SmoothedEmbedding, monte_carlo_mean
from robustdml.data.synthetic import make_two_gaussians
from robustdml.defenses import build_defense
from robustdml.models.factory import build_model

SIGMA = 0.12
RADII = (0.0, 0.05, 0.1, 0.2, 0.5)


@pytest.fixture(scope="module")
def trained():
    """A 2-d MLP trained under the smoothing noise (gaussian-augment) on the two-Gaussian set."""
    torch.manual_seed(0)
    train = make_two_gaussians("train", samples_per_class=200)
    model = build_model("mlp", (2,), embedding_dim=2)
    defense = build_defense("gaussian-augment", sigma=SIGMA, loss="contrastive", miner="all")
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    generator = torch.Generator().manual_seed(0)
    images, labels = train.get_batch(np.arange(len(train)))
    for _ in range(60):
        batch = torch.randperm(len(train), generator=generator)[:128]
        loss = defense.step(model, images[batch], labels[batch], generator).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    test = make_two_gaussians("test", samples_per_class=60)
    return model.eval(), test


def settings(samples=400, seed=0, **changes):
    return CertifySettings(sigma=SIGMA, radii=RADII, samples=samples, confidence=0.999, gallery_samples=16,
                           max_queries=40, seed=seed,
                           attack=AttackSettings(steps=10, eot_samples=4, candidates=5), **changes)


@pytest.fixture(scope="module")
def report(trained):
    model, test = trained
    return certify_model(model, test, settings(), progress=False)


def test_certified_never_exceeds_attacked_on_the_same_smoothed_model(report):
    rows = report.rows
    assert rows[0]["certified_R@1"] > 0.5, "the noise-trained model must have a non-vacuous certificate"
    for row in rows:
        assert row["certified_R@1"] <= row["attacked_R@1"], row
        assert row["certified_mAP@R"] <= row["attacked_mAP@R"] + 1e-9, row
    attacked = [row["attacked_R@1"] for row in rows]
    assert attacked == sorted(attacked, reverse=True)  # per-query worst case over the radii so far
    assert rows[-1]["attacked_R@1"] < rows[0]["attacked_R@1"], "radius 0.5 must hurt"


def test_certificate_shrinks_with_the_radius_and_vanishes_past_the_largest(report):
    certified = [row["certified_R@1"] for row in report.rows]
    maps = [row["certified_mAP@R"] for row in report.rows]
    assert certified == sorted(certified, reverse=True) and maps == sorted(maps, reverse=True)
    largest = report.settings["largest_certifiable_radius"]
    assert largest == pytest.approx(largest_certifiable_radius(SIGMA, report.settings["error"]))
    assert largest < 0.5 and report.rows[-1]["certified_R@1"] == 0 and report.rows[-1]["certified_mAP@R"] == 0
    radii = radius_of_margin(np.array(report.per_query["margin"]), SIGMA)
    assert radii.max() <= largest + 1e-9


def test_twice_the_samples_never_lowers_a_bound_by_more_than_its_confidence_allows(trained, report):
    """With probability >= 1 - 2 * (1 - confidence) both Monte Carlo errors stay within their bounds,
    and then every pair margin with 2n samples is at least the n-sample one minus 2 * eps_2n
    (l_2n >= <u, g> - 2 eps_2n >= l_n - 2 eps_2n), hence so is each query's certified margin."""
    model, test = trained
    doubled = certify_model(model, test, settings(samples=800), progress=False)
    error_2n = doubled.settings["error"]
    assert error_2n < report.settings["error"]
    once, twice = np.array(report.per_query["margin"]), np.array(doubled.per_query["margin"])
    assert np.all(twice >= once - 2 * error_2n)
    for a, b in zip(report.rows, doubled.rows):
        allowed = (radius_of_margin(once - 2 * error_2n, SIGMA) > a["radius"]).mean()
        assert b["certified_R@1"] >= allowed


def test_the_whole_table_costs_what_it_says(report):
    row = report.rows[1]
    assert row["certify_passes_per_query"] == 400
    assert row["attack_passes_per_query"] == pytest.approx(4 * 11 + 400)  # APGD: 1 + 10 gradients x 4 draws
    assert report.rows[0]["attack_passes_per_query"] == 0
    assert "[certified, attacked]" in report.to_markdown()


def test_mean_error_bound_is_dimension_free_and_holds():
    assert mean_error_bound(100, 0.01) == pytest.approx(0.1 + (2 * np.log(100) / 100) ** 0.5)
    generator = torch.Generator().manual_seed(0)
    vectors = torch.nn.functional.normalize(torch.randn(2000, 64, generator=generator) + 0.3, dim=1)
    truth = vectors.mean(0)
    misses = 0
    for trial in range(200):
        sample = vectors[torch.randint(0, 2000, (100,), generator=generator)]
        misses += float((sample.mean(0) - truth).norm()) > mean_error_bound(100, 0.05)
    assert misses / 200 <= 0.05


def test_ap_lower_bound_counts_the_negatives_that_may_come_first():
    # 2 positives; the first is certified before both negatives, the second before none
    pair_radii = np.array([[1.0, 1.0], [0.0, 0.0]])
    assert ap_lower_bound(pair_radii, 0.5) == pytest.approx(0.5)   # positions 1 and 4 (> R = 2): (1/1) / 2
    assert ap_lower_bound(pair_radii, 2.0) == 0.0
    assert ap_lower_bound(np.array([[1.0], [1.0]]), 0.5) == 1.0


def test_smoothed_model_averages_noise_draws(trained):
    model, test = trained
    images = test.get_batch(np.arange(4))[0]
    smoothed = SmoothedEmbedding(model, SIGMA, samples=2000, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        one = smoothed(images)
    mean = monte_carlo_mean(model, images, SIGMA, 2000, torch.Generator().manual_seed(2))
    assert torch.allclose(one, torch.nn.functional.normalize(mean, dim=1), atol=0.05)
    with pytest.raises(ValueError, match="sigma"):
        SmoothedEmbedding(model, 0.0, 1)


def test_attacking_the_smoothed_model_leaves_the_base_model_in_its_mode(trained):
    from robustdml.certify.attack import attack_batch

    model, test = trained
    images = test.get_batch(np.arange(4))[0]
    targets = (torch.zeros(4, 1, 2), torch.ones(4, 1, 2))
    attack_batch(model, images, targets, SIGMA, 0.1, AttackSettings(steps=2, eot_samples=2), None)
    assert not model.training


def test_certify_command_writes_and_reuses_its_report(finished_run, capsys):
    from robustdml.cli import main

    command = ["certify", str(finished_run), "--sigma", "0.1", "--radii", "0,0.05", "--samples", "50",
               "--gallery-samples", "2", "--max-queries", "10", "--attack-steps", "2", "--eot-samples", "2",
               "--device", "cpu", "--no-progress"]
    assert main(command) == 0
    out = capsys.readouterr().out
    assert "| 0.05 | [" in out and "report written to" in out
    (folder,) = (finished_run / "certify").iterdir()
    stamp = (folder / "certify.json").stat().st_mtime_ns
    assert main(command) == 0
    assert (folder / "certify.json").stat().st_mtime_ns == stamp, "the same certification was recomputed"
    assert main(command[:3] + ["0"] + command[4:]) == 2
    assert "sigma must be a number > 0" in capsys.readouterr().err


def test_gaussian_augment_trains_on_noisy_inputs_and_checks_its_options():
    with pytest.raises(ValueError, match="sigma must be > 0"):
        build_defense("gaussian-augment", sigma=0)
    with pytest.raises(ValueError, match="unknown option"):
        build_defense("gaussian-augment", eps=0.1)
    seen = []

    class Recorder(torch.nn.Module):
        def forward(self, images):
            seen.append(images)
            return torch.nn.functional.normalize(images + 1.0, dim=1)

    images, labels = torch.full((8, 2), 0.5), torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
    defense = build_defense("gaussian-augment", sigma="1/4", loss="contrastive", miner="all")
    out = defense.step(Recorder(), images, labels, torch.Generator().manual_seed(0))
    assert out.passes == 1.0 and defense.sigma == 0.25
    assert 0.1 < float((seen[0] - images).std()) < 0.4  # N(0, 0.25^2) noise, not clipped
