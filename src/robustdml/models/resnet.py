"""torchvision ResNet backbones with frozen batch norm, as in the DML literature.

ImageNet weights are read from torch's hub cache, where torchvision's weights API keeps them; when
they are missing there they are downloaded the way that API does (``torch.hub``, checking the
SHA-256 prefix in the file name). Offline, the error says exactly where to put the file, or to pass
``pretrained="none"``. A path given by the user is read as it is.
"""

from __future__ import annotations

import os
import urllib.error
from pathlib import Path

import torch
import torchvision
from torch import nn

from robustdml.data.download import DownloadError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

_WEIGHTS = {
    "resnet18": torchvision.models.ResNet18_Weights.IMAGENET1K_V1,
    "resnet50": torchvision.models.ResNet50_Weights.IMAGENET1K_V1,
}


class PretrainedWeightsNotFound(FileNotFoundError):
    """ImageNet weights were asked for but are not on this machine."""


def imagenet_weights_url(arch: str) -> str:
    """torchvision's URL of the ImageNet weights of ``arch``; the file name carries a SHA-256 prefix."""
    return _WEIGHTS[arch].url


def imagenet_weights_path(arch: str) -> Path:
    """Where torchvision caches the ImageNet weights of ``arch`` (``$TORCH_HOME/hub/checkpoints``)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(imagenet_weights_url(arch))


def _download_imagenet_weights(arch: str) -> None:
    """Fetch the weights into the hub cache as torchvision's ``Weights.get_state_dict`` does, with the hash check."""
    url, path = imagenet_weights_url(arch), imagenet_weights_path(arch)
    try:
        torch.hub.load_state_dict_from_url(url, model_dir=str(path.parent), map_location="cpu", progress=True,
                                           check_hash=True, weights_only=True)
    except (urllib.error.URLError, OSError, RuntimeError) as error:
        reason = getattr(error, "reason", None) or error
        raise DownloadError(
            f"ImageNet weights for {arch} are not in {path} and could not be downloaded from {url} ({reason}). "
            f"Offline? Download that file on a machine with internet and copy it to {path} (or pass "
            "--pretrained PATH), or train from scratch with --pretrained none") from None


def _load_state_dict(arch: str, pretrained: str) -> dict:
    path = imagenet_weights_path(arch) if pretrained == "imagenet" else Path(pretrained)
    if pretrained == "imagenet" and not path.is_file():
        _download_imagenet_weights(arch)
    if not path.is_file():
        raise PretrainedWeightsNotFound(
            f"pretrained weights {path} do not exist; pass --pretrained imagenet (downloads torchvision's "
            f"ImageNet weights), the path of a torchvision state dict, or none")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # corrupt or truncated download
        raise ValueError(f"could not read pretrained weights {path}: {error}") from error


class FrozenBatchNormResNet(nn.Module):
    """ResNet trunk (no classifier) whose batch norms stay in eval mode and receive no gradient.

    Frozen BN is the standard DML protocol: with 2 samples per class the batch statistics are too
    noisy to update ImageNet statistics.
    """

    def __init__(self, arch: str = "resnet50", pretrained: str = "imagenet", freeze_bn: bool = True):
        super().__init__()
        if arch not in _WEIGHTS:
            raise ValueError(f"unknown ResNet architecture {arch!r}; valid: {', '.join(_WEIGHTS)}")
        net = getattr(torchvision.models, arch)(weights=None)
        if pretrained not in ("none", None):
            net.load_state_dict(_load_state_dict(arch, pretrained))
        self.output_dim = net.fc.in_features
        net.fc = nn.Identity()
        self.net = net
        self.freeze_bn = freeze_bn
        if freeze_bn:
            for module in self.net.modules():
                if isinstance(module, nn.BatchNorm2d):
                    for parameter in module.parameters():
                        parameter.requires_grad_(False)

    def train(self, mode: bool = True):
        super().train(mode)
        if self.freeze_bn:
            for module in self.net.modules():
                if isinstance(module, nn.BatchNorm2d):
                    module.eval()
        return self

    def forward(self, x):
        return self.net(x)
