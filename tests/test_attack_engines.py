import pytest
import torch

from robustdml.attacks import ENGINES, build_engine
from robustdml.attacks.objectives import cosine_to, pull_to, pull_to_many, pull_to_mean, push_from
from robustdml.models import build_model

ENGINE_NAMES = ENGINES.names()


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build_model("convnet", (1, 28, 28), embedding_dim=16)


@pytest.mark.parametrize("name", ENGINE_NAMES)
@pytest.mark.parametrize("norm,eps", [("linf", 0.03), ("l2", 0.5)])
def test_perturbation_stays_in_the_eps_ball_and_pixel_range(model, name, norm, eps, generator):
    images = torch.rand(6, 1, 28, 28)
    images[:, :, :5] = 0.0  # pixels at the box edges must stay there when pushed out
    images[:, :, -5:] = 1.0
    with torch.no_grad():
        clean = model.eval()(images)
    adversarial = build_engine(name, eps=eps, steps=4, norm=norm).perturb(model, images, push_from(clean), generator)
    delta = (adversarial - images).flatten(1)
    size = delta.abs().amax(1) if norm == "linf" else delta.norm(dim=1)
    assert (size <= eps + 1e-5).all()
    assert adversarial.min() >= 0 and adversarial.max() <= 1
    assert (size > 0).any(), "the attack did not move at all"
    with torch.no_grad():
        moved = (model(adversarial) - clean).norm(dim=1)
    assert moved.mean() > 0.01


@pytest.mark.parametrize("name", ENGINE_NAMES)
def test_model_weights_get_no_gradient_and_mode_is_restored(model, name, generator):
    model.train()
    model.zero_grad(set_to_none=True)
    images = torch.rand(4, 1, 28, 28)
    build_engine(name, eps=0.05, steps=2).perturb(model, images, lambda e: e.sum(dim=1), generator)
    assert model.training
    assert all(p.grad is None for p in model.parameters())
    running_mean = model.backbone.conv[1].running_mean.clone()
    build_engine(name, eps=0.05, steps=2).perturb(model, images, lambda e: e.sum(dim=1), generator)
    assert torch.equal(running_mean, model.backbone.conv[1].running_mean), "attack ran the model in train mode"


@pytest.mark.parametrize("options,fragment", [({"eps": -0.1}, "eps"), ({"eps": 0.1, "steps": 0}, "steps"),
                                              ({"eps": 0.1, "norm": "l1"}, "norm")])
def test_bad_options_are_rejected(options, fragment):
    with pytest.raises(ValueError, match=fragment):
        build_engine("pgd", **options)


def test_apgd_checkpoints_follow_autoattack_schedule():
    assert build_engine("apgd", eps=0.1, steps=100).checkpoints()[:4] == [22, 41, 57, 70]


def test_zero_eps_returns_the_input(model):
    images = torch.rand(2, 1, 28, 28)
    assert torch.equal(build_engine("pgd", eps=0.0, steps=3).perturb(model, images, lambda e: e.sum(1)), images)


def _vector_model():
    torch.manual_seed(0)
    return build_model("mlp", (20,), embedding_dim=8)


@pytest.mark.parametrize("name", ENGINE_NAMES)
@pytest.mark.parametrize("norm,eps", [("linf", 0.1), ("l2", 0.3)])
def test_vector_inputs_stay_in_the_ball_and_unit_box(name, norm, eps, generator):
    model = _vector_model()
    vectors = torch.rand(10, 20, generator=torch.Generator().manual_seed(3))
    vectors[:3] = 0.0
    with torch.no_grad():
        clean = model.eval()(vectors)
    adversarial = build_engine(name, eps=eps, steps=5, norm=norm).perturb(model, vectors, push_from(clean), generator)
    delta = adversarial - vectors
    size = delta.abs().amax(1) if norm == "linf" else delta.norm(dim=1)
    assert adversarial.shape == vectors.shape
    assert (size <= eps + 1e-5).all() and adversarial.min() >= 0 and adversarial.max() <= 1
    assert size.max() > eps / 10, "the attack did not move"


@pytest.mark.parametrize("name", ENGINE_NAMES)
def test_same_seed_same_perturbation(model, name):
    images = torch.rand(3, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        clean = model.eval()(images)
    runs = [build_engine(name, eps=0.05, steps=3).perturb(model, images, push_from(clean),
                                                          torch.Generator().manual_seed(7)) for _ in range(2)]
    assert torch.equal(runs[0], runs[1])


class _Identity(torch.nn.Module):
    """Embedding = input: the objective's landscape in input space is exactly known."""

    def forward(self, x):
        return x


def _distance_to_target(name, steps=40):
    target = torch.rand(16, 12, generator=torch.Generator().manual_seed(5)) * 0.4 + 0.3
    start = (target + 0.2 * (2 * torch.rand(16, 12, generator=torch.Generator().manual_seed(6)) - 1)).clamp(0, 1)
    engine = build_engine(name, eps=0.3, steps=steps)
    adversarial = engine.perturb(_Identity(), start, pull_to(target), torch.Generator().manual_seed(0))
    return (adversarial - target).abs().amax(dim=1)


def test_apgd_halves_its_step_and_converges_where_fixed_step_pgd_oscillates():
    """A concave objective with its maximum inside the ball: PGD's fixed sign step keeps bouncing
    around the target (error ~ step size); APGD's halving at checkpoints shrinks the error."""
    pgd, apgd = _distance_to_target("pgd"), _distance_to_target("apgd")
    assert pgd.mean() > 0.005
    assert apgd.mean() < pgd.mean() / 4, (float(apgd.mean()), float(pgd.mean()))


def test_apgd_returns_the_best_iterate_never_worse_than_its_start():
    target = torch.rand(8, 12, generator=torch.Generator().manual_seed(2))
    start = torch.rand(8, 12, generator=torch.Generator().manual_seed(3))
    objective = pull_to(target)
    for steps in (1, 3, 10):
        adversarial = build_engine("apgd", eps=0.05, steps=steps, random_start=False).perturb(_Identity(), start,
                                                                                              objective)
        assert (objective(adversarial) >= objective(start) - 1e-7).all()


def test_apgd_step_size_and_checkpoint_schedule():
    engine = build_engine("apgd", eps=0.1, steps=100)
    assert engine.step_size == pytest.approx(0.2)  # first step 2 * eps
    assert engine.checkpoints() == [22, 41, 57, 70, 80, 87, 93, 99]  # AutoAttack: 22%, windows -3% down to 6%
    assert build_engine("apgd", eps=0.1, steps=10).checkpoints() == [2, 3, 4, 5, 6, 7, 8, 9, 10]


def test_default_step_sizes():
    assert build_engine("pgd", eps=0.1, steps=10).step_size == pytest.approx(0.025)  # 2.5 * eps / steps
    assert build_engine("pgd", eps=0.1, steps=10, step_size=0.01).step_size == 0.01
    fgsm = build_engine("fgsm", eps=0.1)
    assert (fgsm.steps, fgsm.step_size, fgsm.random_start) == (1, pytest.approx(0.1), False)


@pytest.mark.parametrize("builder,better", [
    (lambda t: pull_to(t[:, 0]), lambda e, t: -(e - t[:, 0]).pow(2).sum(1)),
    (pull_to_mean, lambda e, t: -(e - t.mean(1)).pow(2).sum(1)),
    (pull_to_many, lambda e, t: -(e[:, None] - t).pow(2).sum(2).mean(1)),
    (lambda t: cosine_to(t[:, 0]), lambda e, t: torch.nn.functional.cosine_similarity(e, t[:, 0], dim=1)),
])
def test_targeted_objectives_move_embeddings_towards_their_targets(model, builder, better, generator):
    images = torch.rand(6, 1, 28, 28, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        clean = model.eval()(images)
        targets = clean.roll(1, dims=0)[:, None].repeat(1, 3, 1) + 0.01 * torch.randn(6, 3, 16, generator=generator)
    adversarial = build_engine("pgd", eps=0.1, steps=10).perturb(model, images, builder(targets), generator)
    with torch.no_grad():
        after = model(adversarial)
    assert (better(after, targets) > better(clean, targets)).all()


@pytest.mark.parametrize("options,fragment", [({"eps": 0.1, "step_size": 0.0}, "step_size"),
                                              ({"eps": float("nan")}, "eps"), ({"eps": 0.1, "steps": 2.5}, "steps")])
def test_more_bad_options_are_named(options, fragment):
    with pytest.raises(ValueError, match=fragment):
        build_engine("pgd", **options)
    with pytest.raises(ValueError, match="rho"):
        build_engine("apgd", eps=0.1, rho=0.0)
    with pytest.raises(ValueError, match="attack engine"):
        build_engine("bim", eps=0.1)


class _MovedAway:
    """Stop criterion for tests: the embedding moved more than ``radius`` from its clean value."""

    def __init__(self, clean, radius):
        self.clean, self.radius = clean, radius

    def __call__(self, embeddings):
        return (embeddings - self.clean).norm(dim=1) > self.radius

    def select(self, index):
        return _MovedAway(self.clean[index], self.radius)


class _RowWise(torch.nn.Module):
    """Embeds each image with element-wise operations only, so a sample's output and gradient are
    bitwise the same whatever else is in its batch. (A convnet's need not be: oneDNN may pick another
    algorithm for another batch size, changing the last bit, after which sign steps can diverge.)"""

    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.randn(784, generator=torch.Generator().manual_seed(0)))

    def forward(self, x):
        features = torch.tanh(x.flatten(1) * self.weight)
        return torch.nn.functional.normalize(features.view(len(x), 16, 49).sum(dim=2), dim=1)


@pytest.mark.parametrize("name", ["pgd", "apgd", "fgsm"])
def test_early_stop_changes_the_cost_not_the_result(name, generator):
    model = _RowWise()
    images = torch.rand(12, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        clean = model.eval()(images)
    engine = build_engine(name, eps=0.05, steps=8)
    start = engine.clip(images, images + 0.02 * (2 * torch.rand(images.shape, generator=generator) - 1))
    unstopped = engine.attack(model, images, push_from(clean), start=start).adversarial
    with torch.no_grad():  # a radius that about half of the samples reach
        radius = float((model(unstopped) - clean).norm(dim=1).median())
    stop = _MovedAway(clean, radius=radius)
    fast = engine.attack(model, images, push_from(clean), stop=stop, early_stop=True, start=start)
    full = engine.attack(model, images, push_from(clean), stop=stop, early_stop=False, start=start)
    assert 0 < int(fast.success.sum()) < len(images), "the test needs some successes and some failures"
    assert torch.equal(fast.success, full.success)
    assert torch.allclose(fast.adversarial, full.adversarial, atol=1e-6)
    assert (fast.passes <= full.passes).all()
    if name != "fgsm":  # one step: nothing to save
        assert fast.passes.sum() < full.passes.sum()
    with torch.no_grad():
        moved = (model(fast.adversarial) - clean).norm(dim=1)
    assert (moved[fast.success] > radius - 1e-4).all(), "a success must keep its successful iterate"


def test_a_given_start_replaces_the_random_start(model):
    images = torch.rand(4, 1, 28, 28)
    with torch.no_grad():
        clean = model.eval()(images)
    engine = build_engine("pgd", eps=0.05, steps=3)
    start = images + 0.04
    one = engine.attack(model, images, push_from(clean), generator=torch.Generator().manual_seed(0), start=start)
    two = engine.attack(model, images, push_from(clean), generator=torch.Generator().manual_seed(9), start=start)
    assert torch.equal(one.adversarial, two.adversarial)
    assert (one.passes == 3.0).all()
