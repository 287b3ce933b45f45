import pytest
import torch
import torch.nn.functional as F

from robustdml.losses import LOSSES, MINERS, build_loss, build_miner, loss_kind


@pytest.mark.parametrize("loss_name", LOSSES.names())
@pytest.mark.parametrize("miner_name", MINERS.names())
def test_every_loss_and_miner_trains_embeddings_apart(loss_name, miner_name):
    torch.manual_seed(0)
    points = torch.randn(32, 8, requires_grad=True)
    labels = torch.arange(8).repeat_interleave(4)
    loss_fn, miner = build_loss(loss_name), build_miner(miner_name)
    optimizer = torch.optim.SGD([points], lr=0.5)

    def full_loss():  # every tuple, no mining: comparable before and after
        return build_loss(loss_name)(F.normalize(points, dim=1), labels).item()

    initial = full_loss()
    for _ in range(30):
        embeddings = F.normalize(points, dim=1)
        tuples = miner(embeddings, labels) if miner else None
        optimizer.zero_grad()
        loss_fn(embeddings, labels, tuples).backward()
        optimizer.step()
    assert full_loss() < initial


def test_published_defaults():
    assert build_loss("triplet").margin == 0.2
    assert build_loss("contrastive").neg_margin == 1.0
    assert loss_kind("contrastive") == "pair" and loss_kind("triplet") == "triplet"


def test_unknown_loss_and_miner_options_are_errors():
    with pytest.raises(ValueError, match="loss 'contrastive' has no option.*beta.*its options: margin"):
        build_loss("contrastive", beta=1.0)
    with pytest.raises(ValueError, match="miner 'hardest' has no option.*margin.*its options: none"):
        build_miner("hardest", margin=0.1)
