"""Turn a resolved :class:`TrainConfig` into datasets, a model and a device.

Shared by training, evaluation and attack commands so that a run directory's config always
rebuilds exactly the data split and model it was trained with.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np
import torch

from robustdml.engine.config import TrainConfig


def select_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={name!r} asked for, but CUDA is not available on this machine; use --device cpu")
    return device


def seed_everything(seed: int) -> None:
    """Seed every global RNG (Python, numpy, torch): libraries such as PML's miners draw from them."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


@dataclass
class DataSplits:
    train: Any
    val: Optional[Any]
    test: Any


# Benchmarks whose test classes are unseen in training: validate on held-out classes too.
ZERO_SHOT_DATASETS = ("cub200", "cars196", "sop", "image-folder")


def dataset_options(config: TrainConfig) -> dict:
    if config.dataset in ZERO_SHOT_DATASETS:
        return {"image_size": config.image_size}
    return {}


def build_splits(config: TrainConfig) -> DataSplits:
    """Train / validation / test datasets; validation is carved from training data, never from test."""
    from robustdml.data import build_dataset, limit_per_class, stratified_fraction, validation_split

    options = dataset_options(config)
    train = build_dataset(config.dataset, "train", root=config.data_root, **options)
    test = build_dataset(config.dataset, "test", root=config.data_root, **options)
    if config.train_fraction < 1.0:
        train = stratified_fraction(train, config.train_fraction, seed=config.seed)
    val = None
    if config.val_fraction > 0:
        train, val = validation_split(
            train, config.val_fraction, seed=config.seed,
            by="classes" if config.dataset in ZERO_SHOT_DATASETS else "samples")
    if config.train_per_class:
        train = limit_per_class(train, config.train_per_class, seed=config.seed)
        if val is not None:
            val_per_class = max(1, int(round(config.train_per_class * config.val_fraction / (1 - config.val_fraction))))
            val = limit_per_class(val, val_per_class, seed=config.seed)
    if config.test_per_class:
        test = limit_per_class(test, config.test_per_class, seed=config.seed)
    return DataSplits(train=train, val=val, test=test)


def build_model_for(config: TrainConfig, image_shape, from_checkpoint: bool = False) -> torch.nn.Module:
    """The run's model; ``from_checkpoint`` skips ImageNet weights that a checkpoint will overwrite."""
    from robustdml.models import build_model

    options = {}
    if config.model and config.model.startswith("resnet"):
        options["pretrained"] = "none" if from_checkpoint else config.pretrained
    model = build_model(config.model, image_shape, embedding_dim=config.embedding_dim, **options)
    if from_checkpoint:
        # Defenses may reshape the model (MDProp: one BN per distribution); match the checkpoint.
        from robustdml.defenses import build_defense

        defense = build_defense(config.defense, loss=config.loss, miner=config.miner,
                                loss_options=config.loss_options, image_shape=image_shape, **config.defense_options)
        model = defense.prepare_model(model)
    return model
