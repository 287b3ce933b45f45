import pytest
import torch

from robustdml.models import build_model
from robustdml.models.resnet import PretrainedWeightsNotFound, imagenet_weights_path
from robustdml.registry import UnknownNameError


def test_convnet_outputs_unit_embeddings_and_normalises_inside():
    model = build_model("convnet", (1, 28, 28), embedding_dim=64)
    embeddings = model(torch.rand(5, 1, 28, 28))
    assert embeddings.shape == (5, 64)
    assert torch.allclose(embeddings.norm(dim=1), torch.ones(5), atol=1e-5)
    # Pixel normalisation lives in the model: a constant image at the mean maps to zero input.
    x = torch.full((1, 1, 28, 28), float(model.mean[0]))
    assert torch.allclose(model.normalize_input(x), torch.zeros_like(x))


def test_mlp_for_vector_inputs():
    model = build_model("mlp", (2,), embedding_dim=2)
    assert model(torch.rand(8, 2)).shape == (8, 2)


def test_resnet_batch_norm_is_frozen_in_training():
    model = build_model("resnet18", (3, 64, 64), embedding_dim=32, pretrained="none")
    bn = model.backbone.net.bn1
    before = bn.running_mean.clone()
    model.train()
    model(torch.rand(4, 3, 64, 64))
    assert not bn.training
    assert torch.equal(bn.running_mean, before)
    assert not any(p.requires_grad for p in bn.parameters())
    assert model.head.weight.requires_grad


def test_local_imagenet_weights_are_loaded(monkeypatch, tmp_path):
    import torchvision

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    reference = torchvision.models.resnet18(weights=None)
    path = imagenet_weights_path("resnet18")
    path.parent.mkdir(parents=True)
    torch.save(reference.state_dict(), path)
    model = build_model("resnet18", (3, 64, 64))
    assert torch.equal(model.backbone.net.conv1.weight, reference.conv1.weight)


def test_unknown_model_lists_valid_names():
    with pytest.raises(UnknownNameError, match="convnet, mlp, resnet18, resnet50"):
        build_model("vgg16", (3, 32, 32))


def test_model_builders_reject_options_they_do_not_take():
    from robustdml.models import model_options

    assert "pretrained" in model_options("resnet18") and "pretrained" not in model_options("convnet")
    with pytest.raises(ValueError, match=r"model 'convnet' has no option\(s\) pretrained; its options: hidden_dim"):
        build_model("convnet", (1, 28, 28), pretrained="imagenet")
    with pytest.raises(ValueError, match="model 'mlp' takes vectors"):
        build_model("mlp", (1, 28, 28))
