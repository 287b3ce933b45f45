"""Training configuration: one typed dataclass, YAML in and out, validated before any work starts.

Precedence: built-in defaults < per-dataset defaults (on the dataset's registry entry) < YAML file <
command-line flags. Every field is checked for type and range (text is never read as a number or a
bool) before anything is built; the resolved config is written into the run directory, so every number
can be traced to what produced it.
"""

from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import yaml

from robustdml.engine.yaml_text import DuplicateKeyError, parse_yaml  # noqa: F401 (parse_yaml: the CLI's too)


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the field (and the file it came from)."""


# Larger embeddings than this are a typo (DML papers use 64-2048); the head alone would need gigabytes.
MAX_EMBEDDING_DIM = 16384
# What may differ when a run is resumed: how long and where it runs, never what it computes.
RESUME_SAFE_FIELDS = ("epochs", "device", "progress", "num_workers", "checkpoint_every")
# How a run is executed, never what it computes: a finished run trained with other values of these is the same run.
RUNTIME_FIELDS = ("device", "progress", "num_workers", "checkpoint_every", "output")
# Config files written before dataset/model facts moved to the registries held these values for every
# dataset/model, also where they do not apply; read such run directories as if they were unset.
_LEGACY_DEFAULTS = {"image_size": 224, "pretrained": "imagenet"}


@dataclass
class TrainConfig:
    # data
    dataset: str = "fashion-mnist"
    data_root: Optional[str] = None
    image_size: Optional[int] = None        # image benchmarks: crop size (default: the dataset's, 224)
    train_per_class: Optional[int] = None   # CPU-sized subset: at most this many training images per class
    train_fraction: float = 1.0             # class-stratified fraction of the training data (data-scarce setting)
    val_fraction: float = 0.1               # validation split carved from training data for model selection
    test_per_class: Optional[int] = None    # evaluate on at most this many test images per class
    # model
    model: Optional[str] = None
    embedding_dim: Optional[int] = None     # default: the dataset's (2 for the synthetic set), else the model's
    pretrained: Optional[str] = None        # models with pretrained weights (ResNets): imagenet | none | PATH
    # objective
    loss: str = "triplet"
    loss_options: Dict[str, Any] = field(default_factory=dict)
    miner: Optional[str] = None
    defense: str = "natural"
    defense_options: Dict[str, Any] = field(default_factory=dict)
    # optimisation
    epochs: Optional[int] = None
    batch_size: Optional[int] = None
    samples_per_class: Optional[int] = None  # m of the m-per-class sampler
    sampler: str = "m-per-class"            # m-per-class | pairs (RobRank's SPC-2: anchor, random positive)
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
        """Fill every ``None`` that has a default on the dataset's or the model's registry entry, then validate."""
        self.check_types()
        from robustdml.data import dataset_spec
        from robustdml.models import model_embedding_dim, model_options

        self._validate_names()
        spec = dataset_spec(self.dataset)
        values = dataclasses.asdict(self)
        for key, value in spec.defaults.items():
            if values.get(key) is None:
                values[key] = value
        if values["embedding_dim"] is None:  # the model's own default (rc2f2: 512, as published), else 128
            values["embedding_dim"] = model_embedding_dim(values["model"]) if values["model"] else 128
        if values["image_size"] is None and "image_size" in spec.options():
            values["image_size"] = spec.options()["image_size"]
        model_defaults = model_options(values["model"]) if values["model"] is not None else {}
        if values["pretrained"] is None and "pretrained" in model_defaults:
            values["pretrained"] = model_defaults["pretrained"]
        config = TrainConfig(**values)
        config.validate()
        return config

    def check_types(self, source: str = "config") -> None:
        """Every field has its declared type: no bool for a number, no text for a number or a bool."""
        for item in dataclasses.fields(self):
            _check_type(source, item.name, getattr(self, item.name), _FIELD_TYPES[item.name])

    def validate(self) -> None:
        def require(condition: bool, name: str, message: str) -> None:
            if not condition:
                raise ConfigError(f"invalid {name}={getattr(self, name)!r}: {message}")

        self.check_types()
        for name in ("epochs", "batch_size", "samples_per_class", "embedding_dim", "eval_batch_size",
                     "checkpoint_every", "image_size", "train_per_class", "test_per_class", "steps_per_epoch"):
            value = getattr(self, name)
            require(value is None or value >= 1, name, "must be an integer >= 1")
        require(self.embedding_dim is None or self.embedding_dim <= MAX_EMBEDDING_DIM, "embedding_dim",
                f"must be at most {MAX_EMBEDDING_DIM} (DML models use 64 to 2048)")
        require(self.samples_per_class is None or self.samples_per_class >= 2, "samples_per_class",
                "must be >= 2 (a batch needs two images of a class to form a positive pair)")
        require(0.0 < self.train_fraction <= 1.0, "train_fraction", "must be in (0, 1]")
        require(0.0 <= self.val_fraction < 1.0, "val_fraction", "must be in [0, 1)")
        require(self.lr is None or 0 < self.lr < math.inf, "lr", "must be a finite number > 0")
        require(self.weight_decay is None or 0 <= self.weight_decay < math.inf, "weight_decay",
                "must be a finite number >= 0")
        require(0 <= self.seed < 2**63, "seed", "must be an integer in [0, 2**63)")
        require(self.amp in ("none", "bf16", "fp16"), "amp", "choose one of none, bf16, fp16")
        require(self.num_workers >= 0, "num_workers", "must be >= 0")
        require(_is_device_name(self.device), "device", "choose auto, cpu, cuda, cuda:N or mps")
        require(self.data_root is None or self.data_root.strip() != "", "data_root", "must name a folder")
        from robustdml.data.sampler import SAMPLERS

        require(self.sampler in SAMPLERS, "sampler", f"choose one of {', '.join(SAMPLERS)}")
        if self.sampler == "pairs" and self.batch_size is not None:
            require(self.batch_size % 2 == 0, "batch_size", "must be even with sampler=pairs (anchor, positive "
                    "pairs)")
        if self.batch_size is not None and self.samples_per_class is not None and self.sampler == "m-per-class":
            require(self.batch_size % self.samples_per_class == 0, "batch_size",
                    f"must be divisible by samples_per_class={self.samples_per_class}")
        if self.miner == "spc2-random" and self.sampler == "m-per-class" and self.samples_per_class is not None:
            require(self.samples_per_class % 2 == 0, "miner", "needs batches of (anchor, positive) pairs: use "
                    "sampler=pairs (or an even samples_per_class)")
        self._validate_names()
        self._validate_applicable()
        from robustdml.losses import build_loss

        try:  # cheap: builds the loss object only, so a typo in loss_options fails before any work
            build_loss(self.loss, **self.loss_options)
        except (TypeError, ValueError) as error:
            raise ConfigError(f"invalid loss_options={self.loss_options!r}: {error}") from None
        self._validate_defense_options()

    def _validate_defense_options(self) -> None:
        """The defense checks its own options (each defense owns their names, defaults and bounds): a dry
        build here turns a bad value into an error naming ``defense_options.<field>`` before any work."""
        from robustdml.defenses import build_defense
        from robustdml.options import OptionError

        try:
            build_defense(self.defense, **self.defense_options)
        except OptionError as error:
            raise ConfigError(f"invalid defense_options.{error.field}={error.value!r}: {error.reason}") from None
        except (TypeError, ValueError):
            pass  # needs the loss, the miner or the data: checked where the defense is built for training

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

    def _validate_applicable(self) -> None:
        """Fields that only some datasets / models take are refused where they would be ignored."""
        from robustdml.data import DATASETS, dataset_options
        from robustdml.models import MODELS, model_options

        if self.image_size is not None and "image_size" not in dataset_options(self.dataset):
            takers = [name for name in DATASETS.names() if "image_size" in dataset_options(name)]
            raise ConfigError(f"invalid image_size={self.image_size!r}: dataset {self.dataset!r} has a fixed input "
                              f"size; drop the option (it applies to {', '.join(takers)})")
        if self.pretrained is not None and self.model is not None and "pretrained" not in model_options(self.model):
            takers = [name for name in MODELS.names() if "pretrained" in model_options(name)]
            raise ConfigError(f"invalid pretrained={self.pretrained!r}: model {self.model!r} has no pretrained "
                              f"weights; drop the option (it applies to {', '.join(takers)})")

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    def save(self, path: Path) -> None:
        """Write the YAML atomically (robustdml.files): a crash never leaves a torn config.yaml, and a symlink
        at its name is replaced, never written through."""
        from robustdml.files import atomic_write_text

        atomic_write_text(path, yaml.safe_dump(self.to_dict(), sort_keys=False))

    @classmethod
    def from_dict(cls, values: Dict[str, Any], source: str = "config") -> "TrainConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"{source}: unknown field(s) {', '.join(unknown)}; valid fields: {', '.join(sorted(known))}")
        for name, value in values.items():
            _check_type(source, name, value, _FIELD_TYPES[name])
        return cls(**{name: float(value) if _FIELD_TYPES[name][0] is float and value is not None else value
                      for name, value in values.items()})

    @classmethod
    def read(cls, path: Path, run_directory: bool = False) -> Dict[str, Any]:
        """The fields YAML file ``path`` sets, type-checked (errors name the file). ``run_directory``: a run's own
        config.yaml (older runs are read as they were meant, see ``_LEGACY_DEFAULTS``)."""
        path = Path(path)
        try:
            values = parse_yaml(path.read_text())
        except FileNotFoundError:
            raise ConfigError(f"config file {path} does not exist") from None
        except DuplicateKeyError as error:
            raise ConfigError(f"config file {path}: field {error.key!r} is set twice (lines {error.first_line} and "
                              f"{error.second_line}); keep one of them") from None
        except (OSError, UnicodeDecodeError) as error:
            raise ConfigError(f"config file {path} cannot be read: {error}") from None
        except yaml.YAMLError as error:
            raise ConfigError(f"config file {path} is not valid YAML: {' '.join(str(error).split())}") from None
        if values is None or values == {}:
            raise ConfigError(f"config file {path} is empty; write the fields to set, one `field: value` a line "
                              "(`robustdml train --help` lists them), or leave out --config")
        if not isinstance(values, dict):
            raise ConfigError(f"config file {path} must hold a mapping of field: value, got {type(values).__name__}")
        if run_directory:
            values = _drop_legacy_defaults(values)
        cls.from_dict(values, source=str(path))  # unknown fields and wrong types fail here, naming the file
        return values

    @classmethod
    def load(cls, path: Path, run_directory: bool = False) -> "TrainConfig":
        """The configuration in YAML file ``path`` (fields it does not set keep their defaults)."""
        return cls.from_dict(cls.read(path, run_directory), source=str(path))


def resume_config(saved: TrainConfig, changes: Dict[str, Any]) -> Tuple[TrainConfig, Dict[str, List[Any]]]:
    """``saved`` (a run's config) with ``changes`` (the fields given again when resuming) applied.

    Fields in RESUME_SAFE_FIELDS are applied (returned as {field: [old, new]}); any other difference is a
    ConfigError naming the fields: a resumed run computes exactly what it started computing.
    """
    values = saved.to_dict()
    applied: Dict[str, List[Any]] = {}
    refused: List[str] = []
    for key, value in changes.items():
        if key in ("loss_options", "defense_options"):
            for option, new in (value or {}).items():
                old = values[key].get(option, "unset")
                if old != new:
                    refused.append(f"{key}.{option} ({old!r} -> {new!r})")
            continue
        if value == values.get(key) or key == "output":
            continue
        if key in RESUME_SAFE_FIELDS:
            applied[key] = [values[key], value]
            values[key] = value
        else:
            refused.append(f"{key} ({values.get(key)!r} -> {value!r})")
    if refused:
        raise ConfigError(f"cannot change {', '.join(refused)} when resuming: a resumed run computes what it "
                          f"started computing (only {', '.join(RESUME_SAFE_FIELDS)} may change). Start a new run "
                          "with another --output to change them")
    return TrainConfig.from_dict(values).resolved(), applied


def config_differences(stored: TrainConfig, wanted: TrainConfig, ignore: Sequence[str] = RUNTIME_FIELDS) -> List[str]:
    """The one comparison of settings: the fields (outside ``ignore``) in which ``wanted`` differs from the
    config a run ``stored``, as ``field (stored -> wanted)``. Used for ``--resume`` (the checkpoint's config
    against config.yaml) and for benchmark reuse (a run's config.yaml against what the suite asks for)."""
    old, new = stored.resolved().to_dict(), wanted.resolved().to_dict()
    return [f"{name} ({old[name]!r} -> {new[name]!r})" for name in old if name not in ignore and old[name] != new[name]]


def stored_config(values: Dict[str, Any], source: str) -> TrainConfig:
    """The resolved config a run stored (a checkpoint's ``config`` entry), read as config.yaml is read."""
    if not isinstance(values, dict):
        raise ConfigError(f"{source}: the stored config is not a mapping of field: value")
    return TrainConfig.from_dict(_drop_legacy_defaults(values), source=source).resolved()


def _drop_legacy_defaults(values: Dict[str, Any]) -> Dict[str, Any]:
    from robustdml.data import DATASETS, dataset_options
    from robustdml.models import MODELS, model_options

    values = dict(values)
    dataset, model = values.get("dataset"), values.get("model")
    if values.get("image_size") == _LEGACY_DEFAULTS["image_size"] and dataset in DATASETS \
            and "image_size" not in dataset_options(dataset):
        values["image_size"] = None
    if values.get("pretrained") == _LEGACY_DEFAULTS["pretrained"] and model in MODELS \
            and "pretrained" not in model_options(model):
        values["pretrained"] = None
    return values


def _is_device_name(name: str) -> bool:
    import torch

    if name == "auto":
        return True
    try:
        return torch.device(name).type in ("cpu", "cuda", "mps")
    except (RuntimeError, ValueError):
        return False


def _declared_types() -> Dict[str, Tuple[type, bool]]:
    """{field: (type, optional)} from the dataclass annotations."""
    hints = typing.get_type_hints(TrainConfig)
    declared = {}
    for name, hint in hints.items():
        optional = typing.get_origin(hint) is typing.Union
        if optional:
            hint = next(arg for arg in typing.get_args(hint) if arg is not type(None))
        declared[name] = (typing.get_origin(hint) or hint, optional)
    return declared


_FIELD_TYPES = _declared_types()
_TYPE_WORDS = {bool: "true or false", int: "a whole number", float: "a number", str: "text",
               dict: "a mapping of option: value"}


def _check_type(source: str, name: str, value: Any, declared: Tuple[type, bool]) -> None:
    kind, optional = declared
    if value is None:
        if optional:
            return
        ok = False
    elif kind is bool:
        ok = isinstance(value, bool)
    elif kind is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif kind is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    elif kind is dict:
        ok = isinstance(value, dict) and all(isinstance(key, str) for key in value)
    else:
        ok = isinstance(value, kind)
    if ok:
        return
    hint = ""
    if isinstance(value, str) and kind in (int, float, bool):
        hint = (" (write it without quotes: a quoted value is text)" if _looks_like(value, kind) else "")
    elif isinstance(value, bool) and kind in (int, float):
        hint = " (true/false/yes/no are booleans in YAML)"
    where = "" if source == "config" else f"{source}: "
    raise ConfigError(f"{where}invalid {name}={value!r}: must be {_TYPE_WORDS.get(kind, kind.__name__)}"
                      + (" or null" if optional else "") + hint)


def _looks_like(text: str, kind: type) -> bool:
    if kind is bool:
        return text.strip().lower() in ("true", "false", "yes", "no", "on", "off")
    try:
        float(text)
        return True
    except ValueError:
        return False
