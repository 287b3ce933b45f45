"""Every defense: its loss decreases, its perturbations stay in the eps-ball, its options are checked."""

import math

import pytest
import torch

from robustdml.data import MPerClassBatchSampler, make_two_gaussians
from robustdml.defenses import DEFENSES, build_defense
from robustdml.losses.triplets import one_triplet_per_anchor
from robustdml.defenses.robrank import lga_destination
from robustdml.losses import build_miner
from robustdml.models import build_model

ADVERSARIAL = [("robust-triplet", {}), ("robust-pair", {"loss": "contrastive"}), ("est", {}), ("act", {}),
               ("hm", {}), ("hm", {"lga": True, "ics": True}), ("robust-triplet", {"formulation": 3})]


def _tiny_problem(seed=0):
    torch.manual_seed(seed)
    data = make_two_gaussians("train", dim=8, samples_per_class=64, seed=seed)
    images, labels = data.get_batch(torch.arange(len(data)))
    # four classes: split each Gaussian by the sign of its first coordinate's deviation
    labels = labels * 2 + (images[:, 0] > images[:, 0].median()).long()
    return images, labels


def _options(extra):
    return {"loss": "triplet", "miner": "semihard", "eps": 0.02, "steps": 2, **extra}


@pytest.mark.parametrize("name,extra", ADVERSARIAL + [("natural", {})])
def test_loss_decreases_on_a_tiny_problem(name, extra):
    images, labels = _tiny_problem()
    model = build_model("mlp", (8,), embedding_dim=4, hidden_dim=32)
    options = _options(extra) if name != "natural" else {"loss": "triplet", "miner": "semihard"}
    defense = build_defense(name, **options)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(40):
        model.train()
        output = defense.step(model, images, labels, generator)
        optimizer.zero_grad()
        output.loss.backward()
        optimizer.step()
        losses.append(output.loss.item())
    assert sum(losses[-8:]) / 8 < 0.8 * sum(losses[:8]) / 8, losses


@pytest.mark.parametrize("name,extra", ADVERSARIAL)
def test_generated_perturbations_stay_in_the_eps_ball(name, extra, monkeypatch):
    images = torch.rand(32, 1, 28, 28)
    labels = torch.arange(4).repeat_interleave(8)
    model = build_model("convnet", (1, 28, 28), embedding_dim=16)
    defense = build_defense(name, **_options({**extra, "eps": 0.03, "attack_rate": 1.0} if "robust" in name
                                              else _options(extra)))
    seen = []
    original = defense.engine.perturb

    def spy(model_, inputs, objective, generator=None):
        adversarial = original(model_, inputs, objective, generator)
        seen.append((inputs, adversarial))
        return adversarial

    monkeypatch.setattr(defense.engine, "perturb", spy)
    if getattr(defense, "lga", False):
        defense.previous_loss = 0.0  # H_D = 0: the first step's H_D = -margin would leave every triplet as it is
    output = defense.step(model, images, labels, torch.Generator().manual_seed(0))
    assert math.isfinite(output.loss.item()) and output.passes >= 2
    assert seen, "the defense generated no adversarial example"
    for inputs, adversarial in seen:
        assert (adversarial - inputs).abs().max() <= defense.eps + 1e-6
        assert adversarial.min() >= 0 and adversarial.max() <= 1
        assert (adversarial - inputs).abs().max() > 0


def test_attack_rate_is_respected_statistically():
    images = torch.rand(64, 1, 28, 28)
    labels = torch.arange(8).repeat_interleave(8)
    model = build_model("convnet", (1, 28, 28), embedding_dim=8)
    defense = build_defense("robust-triplet", loss="triplet", miner="all", eps=0.01, steps=1, attack_rate=0.25)
    generator = torch.Generator().manual_seed(0)
    fractions = [defense.step(model, images, labels, generator).info["attacked_fraction"] for _ in range(10)]
    total = 10 * 64  # one tuple per anchor, 64 anchors per step
    observed = sum(fractions) * 64
    assert abs(observed - 0.25 * total) < 4 * math.sqrt(total * 0.25 * 0.75)


def test_lga_schedule_arithmetic():
    """H_D = -0.2 * clip(l_prev, 0, 0.2) / 0.2 (robrank defenses/amd.py, gradual adversary)."""
    assert lga_destination(previous_loss=0.2, margin=0.2) == pytest.approx(-0.2)
    assert lga_destination(previous_loss=5.0, margin=0.2) == pytest.approx(-0.2)
    assert lga_destination(previous_loss=0.05, margin=0.2) == pytest.approx(-0.05)
    assert lga_destination(previous_loss=0.0, margin=0.2) == 0.0
    assert lga_destination(previous_loss=-0.1, margin=0.2) == 0.0


def test_hm_raises_triplet_hardness_towards_the_destination():
    images = torch.rand(32, 1, 28, 28)
    labels = torch.arange(4).repeat_interleave(8)
    model = build_model("convnet", (1, 28, 28), embedding_dim=16).eval()
    defense = build_defense("hm", loss="triplet", miner="semihard", destination="hardest", eps=0.1, steps=5)
    output = defense.step(model, images, labels, torch.Generator().manual_seed(0))
    assert output.info["hardness_destination"] > output.info["hardness_source"]


def test_one_triplet_per_anchor_is_valid():
    labels = torch.arange(4).repeat_interleave(4)
    embeddings = torch.nn.functional.normalize(torch.randn(16, 8), dim=1)
    a, p, n = one_triplet_per_anchor(embeddings, labels, build_miner("all"), torch.Generator().manual_seed(0))
    assert len(a) == 16 and len(set(a.tolist())) == 16
    assert (labels[a] == labels[p]).all() and (labels[a] != labels[n]).all() and (a != p).all()


@pytest.mark.parametrize("name,options,fragment", [
    ("robust-triplet", {"loss": "contrastive"}, "needs a triplet loss"),
    ("robust-pair", {"loss": "triplet"}, "needs a pair loss"),
    ("act", {"eps": -1.0}, "eps"),
    ("robust-triplet", {"attack_rate": 1.5}, "attack_rate"),
    ("hm", {"steps": 0}, "steps"),
    ("hm", {"destination": "easiest"}, "destination"),
    ("hm", {"source": "easiest"}, "source"),
    ("hm", {"lga": True, "destination": "semihard"}, "no effect"),
    ("est", {"random_start": "maybe"}, "random_start"),
    ("est", {"lga": True}, "unknown option"),
])
def test_bad_options_are_rejected(name, options, fragment):
    with pytest.raises(ValueError, match=fragment):
        build_defense(name, **{"loss": "triplet", "miner": "semihard", **options})


def test_every_defense_is_registered():
    assert set(DEFENSES.names()) >= {"natural", "robust-pair", "robust-triplet", "est", "act", "hm"}
