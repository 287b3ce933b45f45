"""MDProp: BN routing, target selection, and generated examples that move where they claim."""

import pytest
import torch

from robustdml.attacks import objectives as O
from robustdml.cli import main
from robustdml.defenses import build_defense
from robustdml.defenses.mdprop import class_centres, nearest_other_class
from robustdml.models import build_model
from robustdml.models.multibn import use_distribution

LABELS = torch.arange(4).repeat_interleave(8)


def _setup(**options):
    torch.manual_seed(0)
    model = build_model("convnet", (1, 28, 28), embedding_dim=16)
    defense = build_defense("mdprop", loss="triplet", miner="semihard", **options)
    return defense.prepare_model(model), defense


def _buffers(model, name):
    return {k: v.clone() for k, v in model.state_dict().items() if f"norms.{name}." in k and "running" in k}


def test_clean_bn_statistics_only_see_clean_batches():
    model, defense = _setup(eps=0.05, steps=2)
    images = torch.rand(32, 1, 28, 28)
    reference, _ = _setup(eps=0.05, steps=2)
    reference.train()
    with use_distribution(reference, "clean"):
        reference(images)  # exactly one clean training forward
    before = {name: _buffers(model, name) for name in ("stax", "mtax", "uax")}
    model.train()
    defense.step(model, images, LABELS, torch.Generator().manual_seed(0))
    for key, value in _buffers(model, "clean").items():
        assert torch.allclose(value, _buffers(reference, "clean")[key]), key
    for name, buffers in before.items():
        assert any(not torch.equal(v, _buffers(model, name)[k]) for k, v in buffers.items()), name


def test_target_selection():
    embeddings = torch.nn.functional.normalize(torch.randn(32, 8), dim=1)
    others = nearest_other_class(embeddings, LABELS, 3)
    assert others.shape == (32, 3)
    assert (LABELS[others] != LABELS[:, None]).all()
    assert all(len(set(row.tolist())) == 3 for row in others)
    distances = torch.cdist(embeddings, embeddings)
    for i in range(32):  # the STAX target is the nearest other-class item
        other_class = LABELS != LABELS[i]
        assert distances[i, others[i, 0]] == distances[i][other_class].min()
    centres = class_centres(embeddings, LABELS)
    assert torch.allclose(centres[0], embeddings[:8].mean(dim=0))
    with pytest.raises(ValueError, match="num_targets"):
        nearest_other_class(embeddings, LABELS, 30)


def test_stax_mtax_uax_move_embeddings_towards_their_targets():
    model, defense = _setup(eps=0.1, steps=5)
    model.eval()
    images = torch.rand(32, 1, 28, 28)
    clean = defense.clean_embeddings(model, images)
    stax_target, mtax_targets, uax_target = defense.targets(clean, LABELS)
    generator = torch.Generator().manual_seed(0)
    for name, objective, distance in [
        ("stax", O.pull_to(stax_target), lambda e: (e - stax_target).pow(2).sum(1)),
        ("mtax", O.pull_to_many(mtax_targets), lambda e: (e[:, None] - mtax_targets).pow(2).sum(2).mean(1)),
        ("uax", O.pull_to(uax_target), lambda e: (e - uax_target).pow(2).sum(1)),
    ]:
        adversarial = defense.generate(model, name, images, objective, generator)
        assert (adversarial - images).abs().max() <= 0.1 + 1e-6
        with torch.no_grad(), use_distribution(model, name):
            before, after = distance(model(images)), distance(model(adversarial))
        # MTAX aims at the mean distance to several spread-out targets: it cannot reach zero, only get closer.
        assert after.mean() < 0.9 * before.mean(), name
        assert (after < before).float().mean() > 0.6, name  # most samples, not only on average


def test_loss_decreases_and_options_are_checked():
    model, defense = _setup(eps=0.02, steps=1)
    images = torch.rand(32, 1, 28, 28) * 0.2 + LABELS.float().view(-1, 1, 1, 1) * 0.2
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(15):
        model.train()
        output = defense.step(model, images, LABELS, torch.Generator().manual_seed(0))
        optimizer.zero_grad()
        output.loss.backward()
        optimizer.step()
        losses.append(output.loss.item())
    assert sum(losses[-4:]) < sum(losses[:4])
    assert set(output.info) == {"loss_clean", "loss_stax", "loss_mtax", "loss_uax"} and output.passes == 7
    with pytest.raises(ValueError, match="num_targets"):
        build_defense("mdprop", num_targets=0)
    with pytest.raises(ValueError, match="unknown distribution"):
        build_defense("mdprop", weights={"fgsm": 1.0})
    with pytest.raises(RuntimeError, match="prepare_model"):
        build_defense("mdprop").step(build_model("convnet", (1, 28, 28)), images, LABELS, torch.Generator())


def test_mdprop_run_trains_and_evaluates_with_any_bn(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--dataset", "synthetic-gaussian", "--defense", "mdprop", "--epochs", "1", "--eps", "0.02",
                 "--no-progress", "--device", "cpu", "--output", str(run)]) == 0
    capsys.readouterr()
    assert main(["evaluate", str(run), "--bn", "uax"]) == 0
    assert main(["evaluate", str(run), "--bn", "nope"]) == 2
