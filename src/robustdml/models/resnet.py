"""torchvision ResNet backbones with frozen batch norm, as in the DML literature.

ImageNet weights are never downloaded at run time: they are read from torch's hub cache (where
``torchvision`` would have put them) or from a path the user gives. When they are missing we say
exactly where to put them, or to pass ``pretrained="none"``.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torchvision
from torch import nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

_WEIGHTS = {
    "resnet18": torchvision.models.ResNet18_Weights.IMAGENET1K_V1,
    "resnet50": torchvision.models.ResNet50_Weights.IMAGENET1K_V1,
}


class PretrainedWeightsNotFound(FileNotFoundError):
    """ImageNet weights were asked for but are not on this machine."""


def imagenet_weights_path(arch: str) -> Path:
    """Where torchvision caches the ImageNet weights of ``arch`` (``$TORCH_HOME/hub/checkpoints``)."""
    url = _WEIGHTS[arch].url
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)


def _load_state_dict(arch: str, pretrained: str) -> dict:
    path = imagenet_weights_path(arch) if pretrained == "imagenet" else Path(pretrained)
    if not path.is_file():
        url = _WEIGHTS[arch].url
        raise PretrainedWeightsNotFound(
            f"ImageNet weights for {arch} not found at {path}. Download {url} on a machine with internet "
            f"access and copy it to {imagenet_weights_path(arch)} (or pass --pretrained PATH), or train "
            f"from scratch with --pretrained none."
        )
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
