"""Image transforms for the image benchmarks. No normalisation: pixels stay in [0,1] (the model normalises)."""

from __future__ import annotations

from torchvision import transforms as T


def train_transform(size: int = 224):
    """Random resized crop over 60-100% of the area, then a random horizontal flip."""
    return T.Compose([T.RandomResizedCrop(size, scale=(0.6, 1.0)), T.RandomHorizontalFlip(), T.ToTensor()])


def test_transform(size: int = 224):
    return T.Compose([T.Resize(int(round(size * 256 / 224))), T.CenterCrop(size), T.ToTensor()])
