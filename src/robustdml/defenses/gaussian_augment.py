"""Gaussian data augmentation (Cohen et al., "Certified Adversarial Robustness via Randomized
Smoothing", ICML 2019): train the base model on x + N(0, sigma^2 I), the noise the smoothed model
averages over, so that the smoothed embedding is still discriminative and its certificate
(:mod:`robustdml.certify`) is not vacuous.

As in Cohen et al.'s code the noise is added in pixel units and not clipped to [0, 1]; certify
with the same sigma as was trained with. One forward+backward pass per step, like natural training.
"""

from __future__ import annotations

import torch

from robustdml.defenses.base import DEFENSES, Defense, StepOutput
from robustdml.options import number_option

DEFAULT_SIGMA = 0.25


@DEFENSES.register("gaussian-augment")
class GaussianAugment(Defense):
    name = "gaussian-augment"

    def __init__(self, sigma: float = DEFAULT_SIGMA, loss: str = "triplet", miner: str = "semihard",
                 loss_options=None, miner_options=None, image_shape=None):
        super().__init__(loss=loss, miner=miner, loss_options=loss_options, miner_options=miner_options,
                         image_shape=image_shape)
        self.sigma = number_option(self.name, "sigma", sigma, above=0)

    def step(self, model, images, labels, generator):
        noise = torch.randn(images.shape, generator=generator, dtype=images.dtype).to(images.device)
        embeddings = model(images + self.sigma * noise)
        return StepOutput(loss=self.metric_loss(embeddings, labels), passes=1.0)
