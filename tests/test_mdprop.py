"""MDProp: the reference code's defaults (random targets, 1 / 5 targets, eps in normalised space, one
step, [clean; STAX; MTAX] through three BNs), our named options, and AdvProp-D."""

import copy

import pytest
import torch

from robustdml.attacks.engines import PGD
from robustdml.cli import main
from robustdml.defenses import build_defense
from robustdml.defenses.mdprop import ChannelPGD, class_centres, nearest_other_class, pull_towards
from robustdml.models import build_model
from robustdml.models.multibn import MultiBatchNorm, use_distribution

LABELS = torch.arange(4).repeat_interleave(8)
OLD = {"targets": "nearest-other-class", "num_targets": "3", "eps_space": "pixel", "eps": "0.03", "steps": "3",
       "mix": "separate", "uax": "true"}  # our earlier defaults, spelled as --defense-option strings


def _setup(name="mdprop", channels=1, **options):
    torch.manual_seed(0)
    extra = {"mean": (0.5,) * 3, "std": (0.1, 0.2, 0.4)} if channels == 3 else {}
    model = build_model("convnet", (channels, 28, 28), embedding_dim=16, **extra)
    defense = build_defense(name, loss="triplet", miner="semihard", **options)
    return defense.prepare_model(model), defense


def _running(model, name):
    return {k: v.clone() for k, v in model.state_dict().items() if f"norms.{name}." in k and "running" in k}


def _record_bn_calls(model):
    """(training, route, batch size) of every call of the first multi-BN layer."""
    calls = []
    first = next(m for m in model.modules() if isinstance(m, MultiBatchNorm))
    first.register_forward_pre_hook(lambda module, args: calls.append((module.training, module.active,
                                                                       args[0].shape[0])))
    return calls


def test_reference_defaults():
    defense = build_defense("mdprop")
    assert (defense.target_rule, defense.num_targets, defense.eps_space, defense.mix) == ("random", 5, "normalised",
                                                                                          "joint")
    assert defense.distributions == ("clean", "stax", "mtax")
    engine = defense.engine
    assert isinstance(engine, ChannelPGD)
    assert (engine.eps, engine.steps, engine.step_size) == (0.01, 1, 0.01)
    assert engine.start == pytest.approx(0.0005)  # the reference's uniform(-0.0005, 0.0005) start
    assert defense.passes == 3  # every image perturbed once (1 step) + one pass over 2B images


def test_random_targets_ignore_labels():
    defense = build_defense("mdprop")
    pool = torch.nn.functional.normalize(torch.randn(16, 8), dim=1)
    labels = LABELS[:16]
    stax = defense.targets("stax", pool, labels, torch.Generator().manual_seed(3))
    mtax = defense.targets("mtax", pool, labels, torch.Generator().manual_seed(3))
    assert stax.shape == (16, 1, 8) and mtax.shape == (16, 5, 8)
    for column in mtax.unbind(1):  # each target set is a permutation of the batch's clean embeddings
        assert sorted(torch.cdist(column, pool).argmin(dim=1).tolist()) == list(range(16))
    assert not torch.equal(mtax[:, 0], mtax[:, 1])  # independent permutations
    for other in (labels[torch.randperm(16)], torch.zeros(16, dtype=torch.long)):
        assert torch.equal(defense.targets("mtax", pool, other, torch.Generator().manual_seed(3)), mtax)
    # the rule that uses labels does move when the labels do
    ours = build_defense("mdprop", targets="nearest-other-class")
    shuffled = labels.roll(4)
    assert not torch.equal(ours.targets("mtax", pool, labels, None), ours.targets("mtax", pool, shuffled, None))


def test_eps_is_per_channel_in_normalised_space_and_pixels_stay_in_range():
    model, defense = _setup(channels=3, eps=0.05)
    radius = 0.05 * torch.tensor([0.1, 0.2, 0.4]).view(1, 3, 1, 1)
    images = torch.rand(16, 3, 28, 28) * 0.6 + 0.2
    images[:, :, :4] = 0.0
    images[:, :, -4:] = 1.0
    pool = defense.clean_embeddings(model, images, "stax")
    goal = defense.targets("stax", pool, LABELS[:16], torch.Generator().manual_seed(0))
    adversarial = defense.generate(model, "stax", images, pull_towards(goal), torch.Generator().manual_seed(1))
    delta = adversarial - images
    assert adversarial.min() >= 0 and adversarial.max() <= 1
    assert (delta.abs() <= radius + 1e-6).all()
    interior = (delta[:, :, 4:-4].abs() / radius).transpose(0, 1).flatten(1)  # (channel, pixels)
    # one sign step of size eps from a start within 0.05 eps: nearly every pixel sits at >= 0.95 eps * std
    assert ((interior >= 0.95 - 1e-4).float().mean(dim=1) > 0.9).all()
    with torch.no_grad(), use_distribution(model, "stax"):
        before, after = [(model(x) - goal[:, 0]).norm(dim=1) for x in (images, adversarial)]
    assert (after < before).float().mean() > 0.8  # descends: pulled towards the target
    # eps_space=pixel: one radius for every channel
    model, defense = _setup(channels=3, eps_space="pixel", eps=0.01, steps=1)
    adversarial = defense.generate(model, "stax", images, pull_towards(goal), torch.Generator().manual_seed(1))
    assert torch.allclose((adversarial - images)[:, :, 4:-4].abs().amax(dim=(0, 2, 3)), torch.full((3,), 0.01))


def test_one_step_and_the_batch_layout():
    """[clean; STAX of the first half; MTAX of the second half], each block through its own BN; target
    embeddings and the single adversary step under the BN of the distribution being generated."""
    model, defense = _setup()
    images = torch.rand(32, 1, 28, 28)
    calls = _record_bn_calls(model)
    seen = []
    model.register_forward_hook(lambda module, args, out: seen.append(args[0].detach().clone()) if module.training
                                else None)
    loss_labels = []
    metric_loss = defense.metric_loss
    defense.metric_loss = lambda embeddings, labels: loss_labels.append(labels) or metric_loss(embeddings, labels)
    model.train()
    defense.step(model, images, LABELS, torch.Generator().manual_seed(0))
    assert calls == [(False, "stax", 16), (False, "stax", 16),  # STAX: target embeddings, one adversary step
                     (False, "mtax", 16), (False, "mtax", 16),  # MTAX: likewise
                     (True, (("clean", 32), ("stax", 16), ("mtax", 16)), 64)]  # one training forward
    (batch,) = seen
    radius = 0.01 * 0.353 + 1e-6
    assert torch.equal(batch[:32], images)
    for block, source in ((batch[32:48], images[:16]), (batch[48:], images[16:])):
        assert (block - source).abs().max() <= radius and (block - source).abs().max() > 0.9 * radius
    assert torch.equal(loss_labels[0], torch.cat([LABELS, LABELS[:16], LABELS[16:]]))
    model, defense = _setup(steps=3)
    calls = _record_bn_calls(model)
    defense.step(model.train(), images, LABELS, torch.Generator().manual_seed(0))
    assert [route for _, route, _ in calls[:-1]] == ["stax"] * 4 + ["mtax"] * 4 and defense.passes == 5


def test_each_batch_norm_sees_only_its_own_distribution():
    model, defense = _setup()
    images = torch.rand(32, 1, 28, 28)
    alone = copy.deepcopy(model)
    generated = defense.adversarial_examples(copy.deepcopy(model), images, LABELS, torch.Generator().manual_seed(0))
    initial = {name: _running(model, name) for name in defense.distributions}
    model.train()
    defense.step(model, images, LABELS, torch.Generator().manual_seed(0))
    alone.train()
    for name, block in [("clean", images)] + [(name, adversarial) for name, adversarial, _ in generated]:
        with use_distribution(alone, name):
            alone(block)  # one training forward of only this distribution
    for name in defense.distributions:
        for key, value in _running(model, name).items():
            assert torch.allclose(value, _running(alone, name)[key], atol=1e-6), key
            assert not torch.equal(value, initial[name][key]), key


def test_named_options_give_the_old_behaviour():
    model, defense = _setup(**OLD)
    assert defense.distributions == ("clean", "stax", "mtax", "uax") and defense.passes == 3 * 3 + 4
    assert isinstance(defense.engine, PGD) and (defense.engine.eps, defense.engine.steps) == (0.03, 3)
    assert defense.engine.step_size == pytest.approx(2.5 * 0.03 / 3)
    pool = torch.nn.functional.normalize(torch.randn(32, 8), dim=1)
    nearest = nearest_other_class(pool, LABELS, 3)
    assert torch.equal(defense.targets("stax", pool, LABELS, None), pool[nearest[:, :1]])
    assert torch.equal(defense.targets("mtax", pool, LABELS, None), pool[nearest])
    assert torch.allclose(defense.targets("uax", pool, LABELS, None)[:, 0], class_centres(pool, LABELS))
    assert [(name, part) for name, part in defense.parts(32)] == [(n, slice(0, 32)) for n in ("stax", "mtax", "uax")]
    images = torch.rand(32, 1, 28, 28) * 0.2 + LABELS.float().view(-1, 1, 1, 1) * 0.2
    calls = _record_bn_calls(model)
    output = defense.step(model.train(), images, LABELS, torch.Generator().manual_seed(0))
    assert set(output.info) == {"loss_clean", "loss_stax", "loss_mtax", "loss_uax"}
    # each distribution on the whole batch (target embeddings + 3 steps under its BN), then 4 separate losses
    assert [(route, size) for _, route, size in calls] == (
        [(name, 32) for name in ("stax", "mtax", "uax") for _ in range(4)]
        + [(name, 32) for name in ("clean", "stax", "mtax", "uax")])
    model, defense = _setup(**{**OLD, "steps": "1"})  # the training signal, at a third of the cost
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(6):
        output = defense.step(model.train(), images, LABELS, torch.Generator().manual_seed(0))
        optimizer.zero_grad()
        output.loss.backward()
        optimizer.step()
        losses.append(output.loss.item())
    assert sum(losses[-2:]) < sum(losses[:2])


def test_options_are_checked():
    for options, message in [({"num_targets": 0}, "num_targets"), ({"targets": "nearest"}, "targets must be one of"),
                             ({"eps_space": "raw"}, "eps_space must be"), ({"mix": "both"}, "mix must be"),
                             ({"uax": "maybe"}, "uax must be true or false"),
                             ({"weights": {"stax": 2.0}}, "weights apply to mix=separate"),
                             ({"mix": "separate", "weights": {"uax": 1.0}}, "unknown distribution 'uax'"),
                             ({"engine": "apgd"}, "engine='apgd' needs eps_space=pixel")]:
        with pytest.raises(ValueError, match=message):
            build_defense("mdprop", **options)
    assert build_defense("mdprop", eps_space="pixel", engine="apgd", steps=2).engine.name == "apgd"
    with pytest.raises(RuntimeError, match="prepare_model"):
        build_defense("mdprop").step(build_model("convnet", (1, 28, 28)), torch.rand(32, 1, 28, 28), LABELS,
                                     torch.Generator())


def test_advprop_d_trains_with_two_batch_norms():
    model, defense = _setup("advprop-d", eps=0.03, steps=1)
    calls = _record_bn_calls(model)
    output = defense.step(model.train(), torch.rand(32, 1, 28, 28), LABELS, torch.Generator().manual_seed(0))
    output.loss.backward()
    assert set(output.info) == {"loss_clean", "loss_adv"} and output.passes == 3
    assert [route for training, route, _ in calls if training] == ["clean", "adv"]


def test_mdprop_run_trains_and_evaluates_with_any_bn(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--dataset", "synthetic-gaussian", "--defense", "mdprop", "--epochs", "1", "--eps", "0.02",
                 "--no-progress", "--device", "cpu", "--output", str(run)]) == 0
    capsys.readouterr()
    assert main(["evaluate", str(run), "--bn", "mtax"]) == 0
    assert main(["evaluate", str(run), "--bn", "uax"]) == 2  # no UAX unless uax=true
