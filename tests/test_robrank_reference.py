"""RobRank's defenses and model as the reference code (cdluminate/robrank) has them: the adversary's
eps and step by input size, clean starts, HM's samplers and early stop, losses averaged over all
triplets, and the rc2f2 model."""

import pytest
import torch

from robustdml.defenses import build_defense
from robustdml.attacks.engines import EarlyStopPGD
from robustdml.defenses.adversarial import clean_embeddings
from robustdml.losses.triplets import sampled_triplet_per_anchor, triplet_hardness
from robustdml.engine.config import TrainConfig
from robustdml.engine.run_dir import RunDirectory
from robustdml.models import build_model


def _batch(classes=4, per_class=6, seed=0):
    generator = torch.Generator().manual_seed(seed)
    images = torch.rand(classes * per_class, 1, 28, 28, generator=generator)
    return images, torch.arange(classes).repeat_interleave(per_class)


def _model(seed=0):
    torch.manual_seed(seed)
    return build_model("rc2f2", (1, 28, 28))


@pytest.mark.parametrize("name", ["est", "act", "hm"])
def test_eps_and_step_follow_the_input_size(name):
    """configs_rank.py: 77/255 and 3/255 for 28x28 inputs, 8/255 and 1/255 for 224x224."""
    for shape, eps, step in [((1, 28, 28), 77 / 255, 3 / 255), ((3, 32, 32), 77 / 255, 3 / 255),
                             ((3, 224, 224), 8 / 255, 1 / 255), ((2,), 77 / 255, 3 / 255), (None, 77 / 255, 3 / 255)]:
        defense = build_defense(name, image_shape=shape)
        assert (defense.eps, defense.engine.step_size) == pytest.approx((eps, step)), shape
        assert defense.steps == 32 and not defense.random_start
    explicit = build_defense(name, image_shape=(3, 224, 224), eps=0.1, step_size=0.02)
    assert (explicit.eps, explicit.engine.step_size) == pytest.approx((0.1, 0.02))
    fgsm = build_defense(name, image_shape=(3, 224, 224), steps=1)  # pgditer 1: one step of eps
    assert fgsm.engine.step_size == pytest.approx(8 / 255)


def test_panum_and_mdprop_keep_their_own_defaults():
    defense = build_defense("robust-triplet", image_shape=(3, 224, 224))
    assert defense.eps == pytest.approx(0.1) and defense.random_start
    assert build_defense("mdprop", image_shape=(3, 224, 224)).eps == pytest.approx(0.01)  # normalised space


def test_the_trainer_tells_the_defense_its_input_shape(tmp_path):
    from robustdml.engine.trainer import Trainer

    config = TrainConfig(dataset="synthetic-gaussian", defense="est", defense_options={"steps": 2}, epochs=1,
                         progress=False, device="cpu", output=str(tmp_path / "run"))
    trainer = Trainer(config, RunDirectory.create(config.output, []))
    assert trainer.defense.image_shape == tuple(trainer.splits.train.image_shape) == (2,)


def test_est_moves_embeddings_from_a_clean_start():
    images, labels = _batch()
    model = _model()
    defense = build_defense("est", steps=3, eps=0.1)
    clean = clean_embeddings(model, images)
    adversarial = defense.engine.perturb(model, images, defense.shift_objective(clean, torch.Generator()), None)
    assert (clean_embeddings(model, adversarial) - clean).norm(dim=1).min() > 0


def test_explicit_triplet_losses_average_over_all_triplets():
    """F.triplet_margin_loss (reference) averages over every triplet, zero ones included."""
    defense = build_defense("act")
    embeddings = torch.tensor([[0.0, 0.0], [0.1, 0.0], [1.0, 0.0], [0.0, 0.0], [0.5, 0.0], [0.4, 0.0]])
    a, p, n = torch.tensor([0, 3]), torch.tensor([1, 4]), torch.tensor([2, 5])
    # triplet 1: [0.1 - 1.0 + 0.2]_+ = 0; triplet 2: [0.5 - 0.4 + 0.2]_+ = 0.3
    assert defense.triplet_loss(embeddings, a, p, n).item() == pytest.approx(0.15)


def test_hm_stops_once_every_triplet_reaches_its_destination():
    images, labels = _batch()
    model = _model()
    defense = build_defense("hm", lga=True, steps=20)
    defense.previous_loss = 0.2  # H_D = -0.2: triplets easier than that are few or none
    output = defense.step(model, images, labels, torch.Generator().manual_seed(0))
    assert output.passes == output.info["adversary_steps"] + 1 < 21
    engine = EarlyStopPGD(eps=0.1, steps=7, step_size=0.01)
    target = torch.full((len(images),), 5.0)  # unreachable: every step is taken
    engine.perturb(model, images, lambda embeddings: -(target - embeddings.sum(dim=1)).abs())
    assert engine.steps_taken == 7
    unchanged = engine.perturb(model, images, lambda embeddings: 0 * embeddings.sum(dim=1))  # at its target
    assert engine.steps_taken == 1 and torch.equal(unchanged, images)


def test_hm_manipulation_reaches_its_destination_with_enough_steps():
    images, labels = _batch()
    model = _model()
    defense = build_defense("hm", destination="hardest", eps=0.3, steps=32)
    output = defense.step(model, images, labels, torch.Generator().manual_seed(0))
    assert output.info["hardness_adversarial"] > output.info["hardness_source"]


def test_samplers_pick_the_triplets_the_reference_miners_do():
    generator = torch.Generator().manual_seed(0)
    embeddings = torch.nn.functional.normalize(torch.randn(24, 8, generator=generator), dim=1)
    labels = torch.arange(4).repeat_interleave(6)
    distances = torch.cdist(embeddings, embeddings)
    same = labels[:, None] == labels[None, :]
    positive = same & ~torch.eye(24, dtype=torch.bool)
    for kind in ("random", "semihard", "softhard", "hardest"):
        for _ in range(5):
            a, p, n = sampled_triplet_per_anchor(kind, embeddings, labels, generator, margin=0.2)
            assert len(a) == 24 and (labels[a] == labels[p]).all() and (a != p).all() and (labels[a] != labels[n]).all()
            dap, dan = distances[a, p], distances[a, n]
            if kind == "hardest":
                assert torch.allclose(dan, distances.masked_fill(same, float("inf")).amin(dim=1)[a])
            if kind == "softhard":  # negatives closer than the farthest positive, positives farther than the nearest negative
                farthest = distances.masked_fill(~positive, -1.0).amax(dim=1)[a]
                nearest = distances.masked_fill(same, float("inf")).amin(dim=1)[a]
                assert (dan < farthest).float().mean() >= 0.9 and (dap > nearest).float().mean() >= 0.9
            if kind == "semihard":  # d(a,p) < d(a,n) < d(a,p) + margin where such a negative exists
                window = (~same) & (distances > dap[:, None]) & (distances < dap[:, None] + 0.2)
                has = window.any(dim=1)
                assert ((dan > dap) & (dan < dap + 0.2))[has].all()
    hardness = triplet_hardness(embeddings, *sampled_triplet_per_anchor("softhard", embeddings, labels, generator))
    easy = triplet_hardness(embeddings, *sampled_triplet_per_anchor("random", embeddings, labels, generator))
    assert hardness.mean() > easy.mean()


def test_rc2f2_is_the_reference_model():
    """template_rank.py rc2f2: conv 5x5 32, ReLU, pool; conv 5x5 64, ReLU, pool; FC 3136 -> 1024, ReLU;
    FC 1024 -> 512; no batch norm; raw pixels; L2-normalised embeddings."""
    model = build_model("rc2f2", (1, 28, 28), embedding_dim=None)
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules())
    shapes = [tuple(p.shape) for p in model.parameters()]
    assert shapes == [(32, 1, 5, 5), (32,), (64, 32, 5, 5), (64,), (1024, 3136), (1024,), (512, 1024), (512,)]
    assert model.mean.tolist() == [0.0] and model.std.tolist() == [1.0]
    embeddings = model(torch.rand(3, 1, 28, 28))
    assert embeddings.shape == (3, 512) and torch.allclose(embeddings.norm(dim=1), torch.ones(3))
    assert build_model("rc2f2", (1, 28, 28), embedding_dim=64)(torch.rand(2, 1, 28, 28)).shape == (2, 64)
    with pytest.raises(ValueError, match="hidden_dim"):
        build_model("rc2f2", (1, 28, 28), hidden_dim=256)
