import copy

import pytest
import torch

from robustdml.models import build_model
from robustdml.models.multibn import MultiBatchNorm, convert_to_multi_bn, use_distribution, use_segments

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


def test_segments_route_each_block_through_its_own_batch_norm():
    """One forward of [a; b; c] under segments == a through clean, b through stax, c through mtax on
    their own: same outputs, and each BN's running statistics come from its own block only."""
    torch.manual_seed(0)
    model = convert_to_multi_bn(build_model("convnet", (1, 28, 28)), DISTRIBUTIONS).train()
    alone = copy.deepcopy(model)
    blocks = {"clean": torch.rand(6, 1, 28, 28), "stax": torch.rand(3, 1, 28, 28) * 0.2,
              "mtax": torch.rand(5, 1, 28, 28) * 0.5 + 0.5}
    with use_segments(model, [(name, len(block)) for name, block in blocks.items()] + [("uax", 0)]):
        joint = model(torch.cat(list(blocks.values())))
    separate = []
    for name, block in blocks.items():
        with use_distribution(alone, name):
            separate.append(alone(block))
    assert torch.allclose(joint, torch.cat(separate), atol=1e-5)
    for name in DISTRIBUTIONS:
        for key, value in _bn_state(alone, name).items():
            assert torch.allclose(value, _bn_state(model, name)[key], atol=1e-6), key
    assert all(module.active == "clean" for module in model.modules() if isinstance(module, MultiBatchNorm))
    with pytest.raises(ValueError, match="cover 9"):
        with use_segments(model, [("clean", 6), ("stax", 3)]):
            model(torch.rand(8, 1, 28, 28))
    with pytest.raises(ValueError, match="unknown distribution 'adv'"):
        with use_segments(model, [("clean", 4), ("adv", 4)]):
            pass
    assert all(module.active == "clean" for module in model.modules() if isinstance(module, MultiBatchNorm))
