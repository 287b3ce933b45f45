"""The dataset registry and its entries: each :class:`DatasetSpec` holds everything the library knows about a
dataset (how to build it, training defaults, whether its test classes are unseen, its input size, where it
comes from and how ``robustdml data NAME`` gets it). Loaders read their own entry's facts here for their
error messages; :mod:`robustdml.data.catalog` fills the registry."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Optional

from robustdml.data.base import RetrievalDataset
from robustdml.data.sources import DatasetDownload
from robustdml.registry import Registry, builder_options

DATASETS: Registry = Registry("dataset")


@dataclass(frozen=True)
class DatasetSpec:
    """A registry entry. ``defaults``: training configuration defaults (fields of ``TrainConfig``);
    ``zero_shot``: its test classes are unseen in training, so validation holds out whole classes too;
    ``input_size``: the side of its images in pixels (None for vectors; the image benchmarks' default crop,
    which their ``image_size`` option changes); ``source``: where to get it, in words; ``download``: the
    files ``robustdml data NAME`` downloads (None: none); ``fetch``: a fetch of its own, as
    ``fetch(root, report, allow_download) -> ready`` (None: the generic one)."""

    build: Callable[..., RetrievalDataset]
    defaults: Dict[str, Any] = field(default_factory=dict)
    zero_shot: bool = False
    input_size: Optional[int] = None
    source: str = ""
    download: Optional[DatasetDownload] = None
    fetch: Optional[Callable[..., bool]] = None

    def options(self) -> Dict[str, Any]:
        """The options (beyond split and root) the builder accepts, with their defaults."""
        return builder_options(self.build, exclude=("split", "root"))


def dataset_spec(name: str) -> DatasetSpec:
    """The registry entry of dataset ``name`` (unknown names fail listing the valid ones)."""
    return DATASETS.get(name)


def how_to_get(name: str) -> str:
    """Where dataset ``name`` comes from and how to put it in place, in words."""
    return dataset_spec(name).source if name in DATASETS else f"{name}: no instructions known"
