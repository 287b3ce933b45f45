"""Image transforms for the image benchmarks. No normalisation: pixels stay in [0,1] (the model normalises,
so attacks clip to [0,1] and measure eps in pixel units)."""

from __future__ import annotations

from torchvision import transforms as T


def _check_size(size) -> int:
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ValueError(f"image_size must be a positive integer, got {size!r}")
    return size


def training_transform(size: int = 224):
    """Random resized crop over 60-100% of the area, then a random horizontal flip."""
    size = _check_size(size)
    return T.Compose([T.RandomResizedCrop(size, scale=(0.6, 1.0)), T.RandomHorizontalFlip(), T.ToTensor()])


def evaluation_transform(size: int = 224):
    """Resize the short side to size*256/224 (256 for 224), then take the central size x size crop."""
    size = _check_size(size)
    return T.Compose([T.Resize(int(size * 256 / 224)), T.CenterCrop(size), T.ToTensor()])


def transform_for(split: str, size: int = 224):
    """The training transform for ``train``, the deterministic evaluation transform for anything else."""
    return training_transform(size) if split == "train" else evaluation_transform(size)
