"""Training configuration: one dataclass, YAML in and out, validated before any work starts.

Precedence: built-in defaults < per-dataset defaults < YAML file < command-line flags. The
resolved config is written into the run directory, so every number can be traced to what produced it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Optional

import yaml


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the field."""


# CPU-sized defaults per dataset. Paper-sized settings are options (e.g. --epochs 150 --full-data).
DATASET_DEFAULTS: Dict[str, Dict[str, Any]] = {
    "fashion-mnist": dict(model="convnet", batch_size=128, samples_per_class=16, epochs=8, lr=1e-3,
                          weight_decay=1e-4, miner="semihard"),
    "mnist-idx": dict(model="convnet", batch_size=128, samples_per_class=16, epochs=8, lr=1e-3,
                      weight_decay=1e-4, miner="semihard"),
    "synthetic-gaussian": dict(model="mlp", embedding_dim=2, batch_size=32, samples_per_class=16, epochs=20,
                               lr=1e-3, weight_decay=0.0, miner="all"),
    "cub200": dict(model="resnet50", batch_size=112, samples_per_class=2, epochs=150, lr=1e-5,
                   weight_decay=4e-4, miner="distance-weighted"),
    "cars196": dict(model="resnet50", batch_size=112, samples_per_class=2, epochs=150, lr=1e-5,
                    weight_decay=4e-4, miner="distance-weighted"),
    "sop": dict(model="resnet50", batch_size=112, samples_per_class=2, epochs=100, lr=1e-5,
                weight_decay=4e-4, miner="distance-weighted"),
    "image-folder": dict(model="resnet50", batch_size=112, samples_per_class=2, epochs=100, lr=1e-5,
                         weight_decay=4e-4, miner="distance-weighted"),
}


@dataclass
class TrainConfig:
    # data
    dataset: str = "fashion-mnist"
    data_root: Optional[str] = None
    image_size: int = 224
    train_per_class: Optional[int] = None   # CPU-sized subset: at most this many training images per class
    train_fraction: float = 1.0             # class-stratified fraction of the training data (data-scarce setting)
    val_fraction: float = 0.1               # validation split carved from training data for model selection
    test_per_class: Optional[int] = None    # evaluate on at most this many test images per class
    # model
    model: Optional[str] = None
    embedding_dim: int = 128
    pretrained: str = "imagenet"
    # objective
    loss: str = "triplet"
    loss_options: Dict[str, Any] = field(default_factory=dict)
    miner: Optional[str] = None
    defense: str = "natural"
    defense_options: Dict[str, Any] = field(default_factory=dict)
    # optimisation
    epochs: Optional[int] = None
    batch_size: Optional[int] = None
    samples_per_class: Optional[int] = None
    lr: Optional[float] = None
    weight_decay: Optional[float] = None
    steps_per_epoch: Optional[int] = None
    # runtime
    seed: int = 0
    device: str = "auto"
    amp: str = "none"
    channels_last: bool = False
    num_workers: int = 0
    checkpoint_every: int = 200
    eval_batch_size: int = 256
    progress: bool = True
    output: Optional[str] = None

    def resolved(self) -> "TrainConfig":
        """Fill every ``None`` that has a per-dataset default, then validate."""
        defaults = DATASET_DEFAULTS.get(self.dataset, DATASET_DEFAULTS["image-folder"])
        values = dataclasses.asdict(self)
        for key, value in defaults.items():
            if key == "embedding_dim":
                if self.embedding_dim == TrainConfig.embedding_dim:
                    values[key] = value
            elif values.get(key) is None:
                values[key] = value
        config = TrainConfig(**values)
        config.validate()
        return config

    def validate(self) -> None:
        def require(condition: bool, name: str, message: str) -> None:
            if not condition:
                raise ConfigError(f"invalid {name}={getattr(self, name)!r}: {message}")

        for name in ("epochs", "batch_size", "samples_per_class", "embedding_dim", "eval_batch_size",
                     "checkpoint_every", "image_size", "train_per_class", "test_per_class", "steps_per_epoch"):
            value = getattr(self, name)
            require(value is None or (isinstance(value, int) and value >= 1), name, "must be an integer >= 1")
        require(0.0 < self.train_fraction <= 1.0, "train_fraction", "must be in (0, 1]")
        require(0.0 <= self.val_fraction < 1.0, "val_fraction", "must be in [0, 1)")
        require(self.lr is None or self.lr > 0, "lr", "must be > 0")
        require(self.weight_decay is None or self.weight_decay >= 0, "weight_decay", "must be >= 0")
        require(self.amp in ("none", "bf16", "fp16"), "amp", "choose one of none, bf16, fp16")
        require(self.num_workers >= 0, "num_workers", "must be >= 0")
        if self.batch_size is not None and self.samples_per_class is not None:
            require(self.batch_size % self.samples_per_class == 0, "batch_size",
                    f"must be divisible by samples_per_class={self.samples_per_class}")
        self._validate_names()
        from robustdml.losses import build_loss

        try:  # cheap: builds the loss object only, so a typo in loss_options fails before any work
            build_loss(self.loss, **self.loss_options)
        except (TypeError, ValueError) as error:
            raise ConfigError(f"invalid loss_options={self.loss_options!r}: {error}") from None
        from robustdml.defenses.common import number_option

        options = {key: number_option(self.defense, key, value) if key in ("eps", "step_size", "attack_rate", "steps") else value
                   for key, value in self.defense_options.items()}
        for key in ("eps", "step_size"):
            if key in options and float(options[key]) < 0:
                raise ConfigError(f"invalid defense_options.{key}={options[key]!r}: must be >= 0")
        if "attack_rate" in options and not 0.0 <= float(options["attack_rate"]) <= 1.0:
            raise ConfigError(f"invalid defense_options.attack_rate={options['attack_rate']!r}: must be in [0, 1]")
        if "steps" in options and int(options["steps"]) < 1:
            raise ConfigError(f"invalid defense_options.steps={options['steps']!r}: must be >= 1")

    def _validate_names(self) -> None:
        """Unknown names fail here, before any data is read, listing the valid ones."""
        from robustdml.data import DATASETS
        from robustdml.defenses import DEFENSES
        from robustdml.losses import LOSSES, MINERS
        from robustdml.models import MODELS

        checks = [("dataset", DATASETS, self.dataset), ("loss", LOSSES, self.loss),
                  ("defense", DEFENSES, self.defense), ("model", MODELS, self.model), ("miner", MINERS, self.miner)]
        for field_name, registry, value in checks:
            if value is not None and value not in registry:
                raise ConfigError(f"invalid {field_name}={value!r}; valid {field_name} names: {', '.join(registry.names())}")

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    def save(self, path: Path) -> None:
        Path(path).write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))

    @classmethod
    def from_dict(cls, values: Dict[str, Any], source: str = "config") -> "TrainConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"{source}: unknown field(s) {', '.join(unknown)}; valid fields: {', '.join(sorted(known))}")
        return cls(**values)

    @classmethod
    def load(cls, path: Path) -> "TrainConfig":
        path = Path(path)
        try:
            values = yaml.safe_load(path.read_text()) or {}
        except FileNotFoundError:
            raise ConfigError(f"config file {path} does not exist") from None
        except yaml.YAMLError as error:
            raise ConfigError(f"config file {path} is not valid YAML: {error}") from None
        if not isinstance(values, dict):
            raise ConfigError(f"config file {path} must hold a mapping of field: value")
        return cls.from_dict(values, source=str(path))
