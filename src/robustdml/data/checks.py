"""Input checks at the API boundary: images enter every model as float pixels in [0,1].

A model fed 0..255 pixels, or images already normalised with a mean/std, still runs; attacks then
clamp to [0,1] and report a huge, meaningless "attack" effect. One cheap look at the first batch
catches both, with a message that says how to fix the input.
"""

from __future__ import annotations

import torch

# One grey level of slack: resampling transforms can overshoot [0,1] by a rounding error.
PIXEL_TOLERANCE = 1.0 / 255


def check_pixel_range(images, where: str) -> None:
    """Raise ValueError unless ``images`` is a float tensor [batch, ...] of finite values in [0,1].

    ``where`` names the input in the message (e.g. "the first batch of the test set").
    """
    if not isinstance(images, torch.Tensor):
        raise ValueError(f"{where}: images must be a torch.Tensor [batch, ...], got {type(images).__name__}")
    if images.dim() < 2:
        raise ValueError(f"{where}: images must have a batch dimension ([batch, channels, height, width] or "
                         f"[batch, features]), got shape {tuple(images.shape)}")
    if not images.is_floating_point():
        raise ValueError(f"{where}: images are {images.dtype}; robustdml expects float pixels in [0,1]: "
                         "convert with images.float() / 255 (or return them so from your dataset)")
    if images.numel() == 0:
        return
    detached = images.detach()
    if not bool(torch.isfinite(detached).all()):
        raise ValueError(f"{where}: images contain NaN or infinite values")
    low, high = float(detached.min()), float(detached.max())
    if low < -PIXEL_TOLERANCE or high > 1 + PIXEL_TOLERANCE:
        if high > 1 + PIXEL_TOLERANCE and low >= -PIXEL_TOLERANCE and high <= 255 + PIXEL_TOLERANCE:
            fix = "they look like 0..255 pixels: divide by 255"
        else:
            fix = ("they look normalised (mean/std): pass raw pixels in [0,1] and normalise inside the model's "
                   "forward(), so attacks measure eps in pixel units")
        raise ValueError(f"{where}: pixel values range over [{low:.4g}, {high:.4g}], but robustdml expects float "
                         f"pixels in [0,1]; {fix}")
