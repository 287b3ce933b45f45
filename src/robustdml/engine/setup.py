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
    """The device ``name`` stands for; an error naming the fix when this machine does not have it."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise ValueError(f"device={name!r} is not a device; choose auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device={name!r} asked for, but CUDA is not available on this machine; use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"device={name!r}: this machine has {torch.cuda.device_count()} GPU(s) "
                             f"(cuda:0 to cuda:{torch.cuda.device_count() - 1})")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device={name!r} asked for, but MPS is not available on this machine; use --device cpu")
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


def dataset_options(config: TrainConfig) -> dict:
    """The dataset options the config sets (``image_size`` for the datasets that take one)."""
    return {} if config.image_size is None else {"image_size": config.image_size}


def build_splits(config: TrainConfig) -> DataSplits:
    """Train / validation / test datasets; validation is carved from training data, never from test."""
    from robustdml.data import build_dataset, dataset_spec, limit_per_class, stratified_fraction, validation_split

    options = dataset_options(config)
    train = build_dataset(config.dataset, "train", root=config.data_root, **options)
    test = build_dataset(config.dataset, "test", root=config.data_root, **options)
    if config.train_fraction < 1.0:
        train = stratified_fraction(train, config.train_fraction, seed=config.seed)
    val = None
    if config.val_fraction > 0:
        train, val = validation_split(
            train, config.val_fraction, seed=config.seed,
            by="classes" if dataset_spec(config.dataset).zero_shot else "samples")
    if config.train_per_class:
        train = limit_per_class(train, config.train_per_class, seed=config.seed)
        if val is not None:
            val_per_class = max(1, int(round(config.train_per_class * config.val_fraction / (1 - config.val_fraction))))
            val = limit_per_class(val, val_per_class, seed=config.seed)
    if config.test_per_class:
        test = limit_per_class(test, config.test_per_class, seed=config.seed)
    return DataSplits(train=train, val=val, test=test)


def build_defense_for(config: TrainConfig, image_shape):
    """The run's training-step strategy with its loss, miner and options (they are all checked here);
    ``image_shape`` (one input) sets size-dependent defaults such as RobRank's eps and step."""
    from robustdml.defenses import build_defense

    return build_defense(config.defense, loss=config.loss, miner=config.miner, loss_options=config.loss_options,
                         image_shape=image_shape, **config.defense_options)


def build_model_for(config: TrainConfig, image_shape, from_checkpoint: bool = False) -> torch.nn.Module:
    """The run's model; ``from_checkpoint`` skips pretrained weights that a checkpoint will overwrite and
    shapes the model as the defense did in training (MDProp: one BN per distribution)."""
    from robustdml.models import build_model

    options = {}
    if config.pretrained is not None:  # set (resolved) only for models that take pretrained weights
        options["pretrained"] = "none" if from_checkpoint else config.pretrained
    model = build_model(config.model, image_shape, embedding_dim=config.embedding_dim, **options)
    if from_checkpoint:
        model = build_defense_for(config, image_shape).prepare_model(model)
    return model


def build_sampler(config: TrainConfig, labels, rank: int = 0, world_size: int = 1):
    """The batch sampler of rank ``rank`` of ``world_size``: m-per-class or SPC-2 pairs over ``labels``. Its checks
    (enough classes for batch_size / samples_per_class, whole pairs per rank) are ValueErrors naming the fix."""
    from robustdml.data import MPerClassBatchSampler, PairBatchSampler

    common = dict(batch_size=config.batch_size, num_batches=config.steps_per_epoch, seed=config.seed, rank=rank,
                  world_size=world_size)
    if config.sampler == "pairs":
        return PairBatchSampler(labels, **common)
    return MPerClassBatchSampler(labels, m=config.samples_per_class, **common)


@dataclass
class Components:
    """Everything a training run is made of, built once from its config."""

    device: torch.device
    splits: DataSplits
    model: torch.nn.Module
    defense: Any
    sampler: Any = None     # the batch sampler of this process (see build_sampler)


def build_components(config: TrainConfig, rank: int = 0, world_size: int = 1) -> Components:
    """The validation pass: the device, the data source, the model, the defense (with its loss, miner and
    options) and the batch sampler of process ``rank`` of ``world_size``, built once, before anything touches the
    disk. Any invalid value fails here, naming it."""
    config = config.resolved()
    device = select_device(config.device)
    seed_everything(config.seed)  # the model's initial weights come from the run's seed
    splits = build_splits(config)
    model = build_model_for(config, splits.train.image_shape)
    defense = build_defense_for(config, splits.train.image_shape)
    sampler = build_sampler(config, splits.train.labels, rank, world_size)
    return Components(device=device, splits=splits, model=defense.prepare_model(model), defense=defense,
                      sampler=sampler)
