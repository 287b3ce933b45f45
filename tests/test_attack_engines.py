import pytest
import torch

from robustdml.attacks import ENGINES, build_engine
from robustdml.attacks.objectives import push_from
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
