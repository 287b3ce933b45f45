import pytest
import torch

from robustdml.models import build_model
from robustdml.models.multibn import MultiBatchNorm, convert_to_multi_bn, use_distribution

DISTRIBUTIONS = ("clean", "stax", "mtax", "uax")


def _bn_state(model, name):
    return {k: v.clone() for k, v in model.state_dict().items() if f"norms.{name}." in k}


def test_adversarial_batches_leave_clean_statistics_untouched():
    model = convert_to_multi_bn(build_model("convnet", (1, 28, 28)), DISTRIBUTIONS)
    assert sum(isinstance(m, MultiBatchNorm) for m in model.modules()) == 2
    clean_before, stax_before = _bn_state(model, "clean"), _bn_state(model, "stax")
    model.train()
    with use_distribution(model, "stax"):
        model(torch.rand(8, 1, 28, 28))
    assert all(torch.equal(v, clean_before[k]) for k, v in _bn_state(model, "clean").items())
    assert any(not torch.equal(v, stax_before[k]) for k, v in _bn_state(model, "stax").items()
               if k.endswith("running_mean"))
    model(torch.rand(8, 1, 28, 28))  # back to clean after the block
    assert any(not torch.equal(v, clean_before[k]) for k, v in _bn_state(model, "clean").items()
               if k.endswith("running_mean"))


def test_routing_changes_the_output_in_eval():
    model = convert_to_multi_bn(build_model("convnet", (1, 28, 28)), DISTRIBUTIONS)
    model.train()
    with use_distribution(model, "uax"):
        model(torch.rand(16, 1, 28, 28) * 0.1)  # very different statistics for the uax BN
    model.eval()
    x = torch.rand(4, 1, 28, 28)
    clean = model(x)
    with use_distribution(model, "uax"):
        other = model(x)
    assert not torch.allclose(clean, other)


def test_resnet_batch_norms_are_converted_and_bad_names_rejected():
    model = convert_to_multi_bn(build_model("resnet18", (3, 32, 32), pretrained="none"), ("clean", "adv"))
    assert sum(isinstance(m, MultiBatchNorm) for m in model.modules()) == 20
    with pytest.raises(ValueError, match="unknown distribution 'stax'"):
        with use_distribution(model, "stax"):
            pass
    with pytest.raises(ValueError, match="must include 'clean'"):
        convert_to_multi_bn(build_model("convnet", (1, 28, 28)), ("adv",))
