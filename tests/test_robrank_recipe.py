"""RobRank's training recipe as named options: SPC-2 pair batches (``sampler: pairs``), the
``spc2-random`` miner, the triplet loss averaged over all triplets (``reduction: mean``), and the
RobRank defenses forming their triplets from the pairs when the recipe is configured."""

import pytest
import torch
import torch.nn.functional as F

from robustdml.defenses import build_defense
from robustdml.losses.triplets import one_triplet_per_anchor, sampled_triplet_per_anchor
from robustdml.engine.config import ConfigError, TrainConfig
from robustdml.losses import build_loss, build_miner
from robustdml.losses.tuples import SPC2RandomMiner, spc2_random_triplets

RECIPE = dict(miner="spc2-random", loss_options={"reduction": "mean"})


def _pair_labels(classes=(0, 1, 2, 0, 3, 1, 2, 2)):
    """An SPC-2 batch's labels: [c0, c0, c1, c1, ...] (classes repeat across pairs)."""
    return torch.tensor(classes).repeat_interleave(2)


def test_spc2_random_forms_one_triplet_per_pair_with_a_negative_of_another_class():
    labels = _pair_labels()
    a, p, n = build_miner("spc2-random")(torch.randn(len(labels), 4), labels)
    assert a.tolist() == list(range(0, 16, 2)) and p.tolist() == list(range(1, 16, 2))
    assert (labels[n] != labels[a]).all()


def test_spc2_random_draws_negatives_uniformly_from_the_whole_batch():
    labels = _pair_labels((0, 1, 1, 2))
    generator = torch.Generator().manual_seed(0)
    counts = torch.zeros(len(labels))
    for _ in range(400):
        _, _, n = spc2_random_triplets(labels, generator)
        counts += torch.bincount(n[:1], minlength=len(labels))  # negatives of the first pair (class 0)
    assert counts[:2].sum() == 0 and (counts[2:] > 40).all()  # the 6 items of classes 1, 2 (anchors too)


def test_spc2_random_refuses_a_batch_that_is_not_pairs():
    with pytest.raises(ValueError, match="pair 1"):
        SPC2RandomMiner()(torch.randn(6, 4), torch.tensor([0, 0, 1, 2, 2, 2]))
    with pytest.raises(ValueError, match="even size"):
        SPC2RandomMiner()(torch.randn(5, 4), torch.tensor([0, 0, 1, 1, 2]))


def test_pairs_without_any_negative_form_no_triplet():
    a, p, n = spc2_random_triplets(torch.tensor([3, 3, 3, 3]))
    assert len(a) == len(p) == len(n) == 0


def _manual_triplet_losses(embeddings, a, p, n, margin=0.2):
    x = F.normalize(embeddings)
    return torch.relu((x[a] - x[p]).norm(dim=1) - (x[a] - x[n]).norm(dim=1) + margin)


def test_mean_reduction_averages_over_all_triplets_including_zeros():
    generator = torch.Generator().manual_seed(1)
    labels = _pair_labels()
    embeddings = torch.randn(len(labels), 8, generator=generator)
    triplets = spc2_random_triplets(labels, generator)
    per_triplet = _manual_triplet_losses(embeddings, *triplets)
    assert 0 < int((per_triplet > 0).sum()) < len(per_triplet)  # some zeros: the two reductions differ
    mean = build_loss("triplet", reduction="mean")(embeddings, labels, triplets)
    nonzero = build_loss("triplet")(embeddings, labels, triplets)
    assert mean.item() == pytest.approx(per_triplet.mean().item(), rel=1e-5)
    assert nonzero.item() == pytest.approx(per_triplet[per_triplet > 0].mean().item(), rel=1e-5)
    reference = F.triplet_margin_loss(*(F.normalize(embeddings)[t] for t in triplets), margin=0.2)
    assert mean.item() == pytest.approx(reference.item(), rel=1e-4)  # RobRank's ptripletN


def test_recipe_options_are_checked_before_any_work():
    with pytest.raises(ConfigError, match="reduction"):
        TrainConfig(loss_options={"reduction": "sum"}).resolved()
    with pytest.raises(ConfigError, match="sampler"):
        TrainConfig(sampler="pair").resolved()
    with pytest.raises(ConfigError, match="even"):
        TrainConfig(sampler="pairs", batch_size=15).resolved()
    with pytest.raises(ConfigError, match="miner.*sampler=pairs"):
        TrainConfig(miner="spc2-random", batch_size=15, samples_per_class=5).resolved()
    config = TrainConfig(sampler="pairs", batch_size=18, **RECIPE).resolved()  # 18 % 16 != 0: m is not used
    assert (config.sampler, config.miner, config.loss_options) == ("pairs", "spc2-random", {"reduction": "mean"})
    assert TrainConfig().resolved().sampler == "m-per-class"  # the default stays


def test_the_trainer_draws_pair_batches_when_configured(tmp_path):
    from robustdml.data import MPerClassBatchSampler, PairBatchSampler
    from robustdml.engine.run_dir import RunDirectory
    from robustdml.engine.trainer import Trainer

    config = TrainConfig(dataset="synthetic-gaussian", sampler="pairs", batch_size=16, epochs=1, steps_per_epoch=3,
                         progress=False, device="cpu", output=str(tmp_path / "run"), **RECIPE)
    trainer = Trainer(config, RunDirectory.create(config.output, []))
    assert isinstance(trainer.sampler, PairBatchSampler) and trainer.sampler.batch_size == 16
    results = trainer.fit()
    assert results["epochs"] == 1 and results["test/R@1"] > 0.5
    default = TrainConfig(dataset="synthetic-gaussian", epochs=1, progress=False, device="cpu",
                          output=str(tmp_path / "default"))
    assert isinstance(Trainer(default, RunDirectory.create(default.output, [])).sampler, MPerClassBatchSampler)


def test_hm_samplers_keep_to_the_pairs_as_the_reference_miners():
    generator = torch.Generator().manual_seed(0)
    labels = _pair_labels()
    embeddings = F.normalize(torch.randn(len(labels), 8, generator=generator))
    for kind in ("random", "semihard", "softhard", "hardest"):
        a, p, n = sampled_triplet_per_anchor(kind, embeddings, labels, generator, pairs=True)
        assert a.tolist() == list(range(0, 16, 2)), kind
        assert (labels[p] == labels[a]).all() and (p != a).all() and (labels[n] != labels[a]).all(), kind
        if kind != "softhard":
            assert (p == a + 1).all(), kind  # the pair's own positive
        everyone, _, _ = sampled_triplet_per_anchor(kind, embeddings, labels, generator)
        assert len(everyone) == len(labels)  # without pairs: every item is an anchor


def test_act_and_hm_use_the_pairs_under_the_recipe_and_every_anchor_otherwise():
    labels = _pair_labels()
    embeddings = F.normalize(torch.randn(len(labels), 8))
    act = build_defense("act", steps=1, **RECIPE)
    a, p, n = one_triplet_per_anchor(embeddings, labels, act.miner, torch.Generator())
    assert a.tolist() == list(range(0, 16, 2)) and (p == a + 1).all() and (labels[n] != labels[a]).all()
    assert build_defense("hm", steps=1, **RECIPE).pair_batches
    assert not build_defense("hm", steps=1).pair_batches  # default miner (semihard): every anchor


@pytest.mark.parametrize("name,options", [("est", {}), ("act", {}), ("hm", {"lga": True, "ics": True})])
def test_robrank_defenses_train_on_pair_batches(name, options):
    from robustdml.models import build_model

    torch.manual_seed(0)
    model = build_model("rc2f2", (1, 28, 28))
    labels = _pair_labels((0, 1, 2, 0))
    images = torch.rand(len(labels), 1, 28, 28) * 0.2 + labels[:, None, None, None] * 0.2
    defense = build_defense(name, steps=2, image_shape=(1, 28, 28), **RECIPE, **options)
    output = defense.step(model, images, labels, torch.Generator().manual_seed(0))
    output.loss.backward()
    assert torch.isfinite(output.loss) and output.loss.item() > 0
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())
