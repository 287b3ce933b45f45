"""Defense building blocks and claims: triplet selection, seeded determinism, option parsing, costs,
and that each adversary moves embeddings the way its formula says."""

import copy
import math

import pytest
import torch

from robustdml.defenses import build_defense
from robustdml.defenses.adversarial import clean_embeddings
from robustdml.losses.triplets import one_index_per_value, one_triplet_per_anchor, random_triplet_per_anchor, triplet_hardness
from robustdml.options import number_option
from robustdml.defenses.robrank import lga_destination
from robustdml.losses import build_miner
from robustdml.losses.ics import intra_class_structure_loss
from robustdml.models import build_model

ALL = [("robust-triplet", {}), ("robust-triplet", {"formulation": 3, "perturb": "anchor"}),
       ("robust-pair", {"loss": "contrastive", "perturb": "negative"}), ("est", {}), ("act", {}),
       ("act", {"miner": "all"}), ("hm", {}), ("hm", {"destination": "random", "ics": True}), ("hm", {"lga": True}),
       ("hm", {"destination": "semihard"}), ("hm", {"destination": "distance-weighted"})]


def _batch(classes=4, per_class=6, seed=0):
    generator = torch.Generator().manual_seed(seed)
    images = torch.rand(classes * per_class, 1, 28, 28, generator=generator)
    return images, torch.arange(classes).repeat_interleave(per_class)


def _model(seed=0, dim=16):
    torch.manual_seed(seed)
    return build_model("convnet", (1, 28, 28), embedding_dim=dim)


def test_random_triplet_per_anchor_is_valid_and_covers_every_anchor():
    labels = torch.tensor([0, 0, 0, 1, 1, 2, 3])  # class 2 and 3 anchors have no positive
    a, p, n = random_triplet_per_anchor(labels, torch.Generator().manual_seed(0))
    assert a.tolist() == [0, 1, 2, 3, 4]
    assert (labels[a] == labels[p]).all() and (a != p).all() and (labels[a] != labels[n]).all()


def test_random_triplet_per_anchor_is_uniform_over_positives_and_negatives():
    labels = torch.tensor([0, 0, 0, 0, 1, 1, 1])  # anchor 0: 3 positives, 3 negatives
    generator = torch.Generator().manual_seed(0)
    draws = 3000
    positives = torch.zeros(7)
    negatives = torch.zeros(7)
    for _ in range(draws):
        a, p, n = random_triplet_per_anchor(labels, generator)
        positives[p[0]] += 1
        negatives[n[0]] += 1
    bound = 4 * math.sqrt(draws * (1 / 3) * (2 / 3))
    for counts, members in ((positives, [1, 2, 3]), (negatives, [4, 5, 6])):
        assert counts.sum() == draws and counts[members].sum() == draws
        assert ((counts[members] - draws / 3).abs() < bound).all(), counts


def test_one_index_per_value_picks_each_value_once_uniformly():
    values = torch.tensor([2, 0, 2, 2, 0, 5])
    seen = {0: set(), 2: set(), 5: set()}
    generator = torch.Generator().manual_seed(0)
    for _ in range(200):
        chosen = one_index_per_value(values, 6, generator)
        assert values[chosen].tolist() == [0, 2, 5]
        for position in chosen.tolist():
            seen[int(values[position])].add(position)
    assert seen == {0: {1, 4}, 2: {0, 2, 3}, 5: {5}}


def test_one_triplet_per_anchor_falls_back_to_random_when_the_miner_finds_nothing():
    labels = torch.arange(3).repeat_interleave(4)
    # perfectly separated classes: semihard mining finds no triplet
    embeddings = torch.nn.functional.one_hot(labels, 8).float()
    miner = build_miner("semihard")
    assert len(miner(embeddings, labels)[0]) == 0
    a, p, n = one_triplet_per_anchor(embeddings, labels, miner, torch.Generator().manual_seed(0))
    assert len(a) == 12 and (labels[a] == labels[p]).all() and (labels[a] != labels[n]).all()


def test_one_triplet_per_anchor_keeps_mined_triplets():
    labels = torch.arange(4).repeat_interleave(4)
    embeddings = torch.nn.functional.normalize(torch.randn(16, 8, generator=torch.Generator().manual_seed(1)), dim=1)
    miner = build_miner("hardest")
    mined = set(zip(*[t.tolist() for t in miner(embeddings, labels)]))
    chosen = one_triplet_per_anchor(embeddings, labels, miner, torch.Generator().manual_seed(0))
    assert set(zip(*[t.tolist() for t in chosen])) <= mined


@pytest.mark.parametrize("name,extra", ALL)
def test_same_seed_gives_the_same_step(name, extra):
    """Every random choice (attacked tuples, triplet picks, random destinations, PGD starts) comes
    from the run generator: the global RNG is moved between runs and must not matter."""
    images, labels = _batch()
    options = {"loss": "triplet", "miner": "semihard", "eps": 0.05, "steps": 2, **extra}
    results = []
    for run, seed in enumerate((0, 0, 1)):
        model = _model()  # fresh: a training step updates batch-norm statistics
        defense = build_defense(name, **options)
        # PML's distance-weighted miner samples with the global generator: the one exception
        torch.manual_seed(123 if extra.get("destination") == "distance-weighted" else run)
        output = defense.step(model, images, labels, torch.Generator().manual_seed(seed))
        results.append(output.loss.item())
    assert results[0] == results[1]
    assert results[0] != results[2]


def test_pixel_fractions_and_yaml_strings_are_accepted():
    assert number_option("hm", "eps", "77/255") == pytest.approx(77 / 255)
    defense = build_defense("hm", eps="8/255", steps="3", lga="false", ics="true")
    assert defense.eps == pytest.approx(8 / 255) and defense.steps == 3
    assert defense.lga is False and defense.ics is True
    with pytest.raises(ValueError, match="eps"):
        build_defense("act", eps="lots")
    with pytest.raises(ValueError, match="steps"):
        build_defense("act", steps=2.5)
    with pytest.raises(ValueError, match="lga"):
        build_defense("hm", lga="maybe")
    with pytest.raises(ValueError, match="formulation"):
        build_defense("robust-triplet", formulation=4)
    with pytest.raises(ValueError, match="perturb"):
        build_defense("robust-triplet", perturb="query")
    with pytest.raises(ValueError, match="step_size"):
        build_defense("est", step_size=-0.1)


@pytest.mark.parametrize("name", ["est", "act", "hm"])
def test_robrank_defenses_reject_pair_losses(name):
    with pytest.raises(ValueError, match="needs a triplet loss"):
        build_defense(name, loss="contrastive")


def test_published_defaults():
    """RobRank's configs_rank.py: 32 steps of 3/255 at eps 77/255 (28 px), from the clean image."""
    for name in ("est", "act", "hm"):
        defense = build_defense(name)
        assert defense.eps == pytest.approx(77 / 255) and defense.steps == 32 and defense.passes == 33
        assert defense.engine.step_size == pytest.approx(3 / 255) and not defense.engine.random_start
    assert build_defense("act", step_size=0.01).engine.step_size == 0.01
    assert build_defense("act", random_start=True).engine.random_start
    hm = build_defense("hm")
    assert (hm.source, hm.destination) == ("softhard", "semihard")
    assert not hm.lga and not hm.ics and hm.ics_weight == 0.5
    robust = build_defense("robust-triplet")
    assert robust.steps == 5 and robust.attack_rate == 0.5 and robust.perturb == "positive"
    assert build_defense("robust-pair").loss_name == "contrastive"


def test_robust_tuple_passes_count_the_attacked_fraction_and_the_shift_adversary():
    images, labels = _batch()
    model = _model()
    generator = torch.Generator().manual_seed(0)
    never = build_defense("robust-triplet", attack_rate=0.0, steps=4).step(model, images, labels, generator)
    assert never.passes == 1.0 and never.info["attacked_fraction"] == 0.0
    always = build_defense("robust-triplet", attack_rate=1.0, steps=4).step(model, images, labels, generator)
    assert always.passes == pytest.approx(4 * always.info["attacked_fraction"] + 1)
    shifted = build_defense("robust-triplet", attack_rate=0.0, steps=4, formulation=3).step(
        model, images, labels, generator)
    assert shifted.passes == 5.0 and shifted.info["shift"] > 0


def _spy_on_engine(defense, monkeypatch):
    calls = []
    original = defense.engine.perturb

    def spy(model, inputs, objective, generator=None):
        adversarial = original(model, inputs, objective, generator)
        calls.append((inputs, adversarial, objective))
        return adversarial

    monkeypatch.setattr(defense.engine, "perturb", spy)
    return calls


@pytest.mark.parametrize("name,extra", [
    ("robust-triplet", {"attack_rate": 1.0}), ("robust-triplet", {"attack_rate": 1.0, "perturb": "anchor"}),
    ("robust-triplet", {"attack_rate": 1.0, "perturb": "negative"}), ("est", {}), ("act", {}),
    ("hm", {"destination": "hardest"})])
def test_each_adversary_increases_its_own_objective(name, extra, monkeypatch):
    images, labels = _batch()
    model = _model()
    attacked = copy.deepcopy(model)  # the training pass updates batch-norm statistics
    defense = build_defense(name, eps=0.1, steps=5, **extra)
    calls = _spy_on_engine(defense, monkeypatch)
    defense.step(model, images, labels, torch.Generator().manual_seed(0))
    assert calls
    for inputs, adversarial, objective in calls:
        model = attacked
        before = objective(clean_embeddings(model, inputs)).sum()
        after = objective(clean_embeddings(model, adversarial)).sum()
        assert after > before, (name, before.item(), after.item())


@pytest.mark.parametrize("name,extra", [("est", {}), ("act", {}), ("hm", {"destination": "hardest"})])
def test_robrank_adversaries_start_at_the_clean_image(name, extra, monkeypatch):
    """One sign step of size s from the clean image moves every pixel by 0 or +-s (no clipping
    here); a random start would not. EST moves too: its target is jittered."""
    images, labels = _batch()
    images = images * 0.5 + 0.25  # away from 0 and 1: no clipping
    defense = build_defense(name, steps=1, eps=0.1, step_size=0.01, **extra)
    calls = _spy_on_engine(defense, monkeypatch)
    defense.step(_model(), images, labels, torch.Generator().manual_seed(0))
    (inputs, adversarial, _), = calls
    moved = (adversarial - inputs).abs()
    assert ((moved < 1e-6) | ((moved - 0.01).abs() < 1e-6)).all()
    assert (moved > 1e-6).float().mean() > 0.5


def test_act_collapses_positive_and_negative(monkeypatch):
    images, labels = _batch()
    model = _model()
    attacked = copy.deepcopy(model)  # the training pass updates batch-norm statistics
    defense = build_defense("act", eps=0.1, steps=5)
    calls = _spy_on_engine(defense, monkeypatch)
    defense.step(model, images, labels, torch.Generator().manual_seed(0))
    model = attacked
    (inputs, adversarial, _), = calls
    half = len(inputs) // 2
    clean, moved = clean_embeddings(model, inputs), clean_embeddings(model, adversarial)
    assert (moved[:half] - moved[half:]).norm(dim=1).mean() < (clean[:half] - clean[half:]).norm(dim=1).mean()


def test_lga_destination_follows_the_previous_loss_and_resumes():
    images, labels = _batch()
    model = _model()
    defense = build_defense("hm", lga=True, eps=0.05, steps=2)
    first = defense.step(model, images, labels, torch.Generator().manual_seed(0))
    # previous loss = margin before the first step: H_D = -margin
    assert first.info["hardness_destination"] == pytest.approx(-0.2)
    assert defense.previous_loss == pytest.approx(first.loss.item())
    resumed = build_defense("hm", lga=True, eps=0.05, steps=2)
    resumed.load_state_dict(defense.state_dict())
    assert resumed.previous_loss == defense.previous_loss
    second = resumed.step(model, images, labels, torch.Generator().manual_seed(1))
    assert second.info["hardness_destination"] == pytest.approx(lga_destination(defense.previous_loss, 0.2))


def test_intra_class_structure_loss_arithmetic():
    """[d(a, a') - d(a, p)]_+ with margin 0 (robrank amd.py: raw(a, a', p, override_margin=0))."""
    clean_anchor = torch.tensor([[0.0, 0.0], [0.0, 0.0]])
    adversarial_anchor = torch.tensor([[0.5, 0.0], [0.1, 0.0]])
    clean_positive = torch.tensor([[0.0, 0.4], [0.0, 1.0]])
    # [0.5 - 0.4]_+ = 0.1 and [0.1 - 1.0]_+ = 0
    loss = intra_class_structure_loss(clean_anchor, adversarial_anchor, clean_positive)
    assert loss.item() == pytest.approx(0.05)


def test_triplet_hardness_arithmetic():
    embeddings = torch.tensor([[0.0, 0.0], [3.0, 4.0], [0.0, 1.0]])
    index = torch.tensor([0])
    assert triplet_hardness(embeddings, index, index + 1, index + 2).item() == pytest.approx(5.0 - 1.0)


def test_hm_makes_triplets_harder(monkeypatch):
    images, labels = _batch()
    model = _model()
    attacked = copy.deepcopy(model)  # the training pass updates batch-norm statistics
    defense = build_defense("hm", destination="hardest", eps=0.1, steps=5)
    calls = _spy_on_engine(defense, monkeypatch)
    output = defense.step(model, images, labels, torch.Generator().manual_seed(0))
    (inputs, adversarial, _), = calls
    model = attacked
    index = torch.arange(len(inputs) // 3)
    before = triplet_hardness(clean_embeddings(model, inputs), index, index + len(index), index + 2 * len(index))
    after = triplet_hardness(clean_embeddings(model, adversarial), index, index + len(index), index + 2 * len(index))
    assert after.mean() > before.mean()
    assert before.mean().item() == pytest.approx(output.info["hardness_source"], abs=1e-5)
    assert output.info["hardness_destination"] > output.info["hardness_source"]


@pytest.mark.parametrize("perturb", ["positive", "anchor", "negative"])
def test_robust_tuple_objectives_follow_eq_14(perturb):
    """Where the perturbed member's embedding would help the attacker most / least."""
    defense = build_defense("robust-triplet", perturb=perturb)
    clean = torch.eye(3)  # embeddings of a=0, p=1, n=2
    a, p, n = torch.tensor([0]), torch.tensor([1]), torch.tensor([2])
    objective = defense._objective(clean, a, p, n)
    value = {name: objective(clean[[i]]).item() for name, i in (("a", 0), ("p", 1), ("n", 2))}
    if perturb == "positive":   # p' away from a, towards n
        assert value["n"] > value["p"] > value["a"]
    elif perturb == "anchor":   # a' away from p, towards n
        assert value["n"] > value["a"] > value["p"]
    else:                       # n' onto a
        assert value["a"] > value["n"] and value["a"] > value["p"]
