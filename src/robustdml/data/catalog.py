"""The dataset registry, ``build_dataset`` and ``fetch`` (the ``robustdml data NAME`` command).

Builders import their loaders lazily: the image benchmarks pull in torchvision and PIL, which
``robustdml data --list`` or a Fashion-MNIST run should not pay for.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Callable, Optional

from robustdml.data.base import DatasetNotFoundError, RetrievalDataset
from robustdml.data.sources import how_to_get
from robustdml.registry import Registry

SPLITS = ("train", "test")

DATASETS: Registry = Registry("dataset")


@DATASETS.register("fashion-mnist")
def _fashion_mnist(split: str, root: Optional[str] = None) -> RetrievalDataset:
    from robustdml.data.mnist import load_fashion_mnist

    return load_fashion_mnist(split, root)


@DATASETS.register("mnist-idx")
def _mnist_idx(split: str, root: Optional[str] = None) -> RetrievalDataset:
    from robustdml.data.mnist import load_mnist_idx

    return load_mnist_idx(split, root)


@DATASETS.register("synthetic-gaussian")
def _synthetic_gaussian(split: str, root: Optional[str] = None, dim: int = 2, samples_per_class: int = 500,
                        seed: int = 0) -> RetrievalDataset:
    from robustdml.data.synthetic import make_two_gaussians

    return make_two_gaussians(split, dim=dim, samples_per_class=samples_per_class, seed=seed)


@DATASETS.register("cub200")
def _cub200(split: str, root: Optional[str] = None, image_size: int = 224) -> RetrievalDataset:
    from robustdml.data.images import load_cub200

    return load_cub200(split, root, image_size=image_size)


@DATASETS.register("cars196")
def _cars196(split: str, root: Optional[str] = None, image_size: int = 224) -> RetrievalDataset:
    from robustdml.data.images import load_cars196

    return load_cars196(split, root, image_size=image_size)


@DATASETS.register("sop")
def _sop(split: str, root: Optional[str] = None, image_size: int = 224) -> RetrievalDataset:
    from robustdml.data.images import load_sop

    return load_sop(split, root, image_size=image_size)


@DATASETS.register("image-folder")
def _image_folder(split: str, root: Optional[str] = None, image_size: int = 224,
                  zero_shot: bool = True) -> RetrievalDataset:
    from robustdml.data.images import load_image_folder

    return load_image_folder(split, root, image_size=image_size, zero_shot=zero_shot)


def dataset_options(name: str) -> dict:
    """The options (beyond split and root) that dataset ``name`` accepts, with their defaults."""
    parameters = inspect.signature(DATASETS.get(name)).parameters
    return {key: p.default for key, p in parameters.items() if key not in ("split", "root")}


def build_dataset(name: str, split: str, root: Optional[str] = None, **options) -> RetrievalDataset:
    """Dataset ``name`` (see ``DATASETS.names()``), ``split`` in {"train", "test"}; ``root`` where it lives."""
    builder: Callable[..., RetrievalDataset] = DATASETS.get(name)
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    valid = dataset_options(name)
    unknown = sorted(set(options) - set(valid))
    if unknown:
        raise ValueError(f"dataset {name!r} has no option(s) {', '.join(map(repr, unknown))}; its options: "
                         + (", ".join(f"{k} (default {v!r})" for k, v in valid.items()) or "none"))
    return builder(split, root=root, **options)


def fetch(name: str, root: Optional[str] = None, report: Callable[[str], None] = print) -> bool:
    """``robustdml data NAME``: download the dataset where that is possible (Fashion-MNIST), otherwise check
    ``root`` or say where to get the data and where to put it. Returns whether the dataset is ready."""
    DATASETS.get(name)  # unknown names fail with the list of valid ones
    if name == "synthetic-gaussian":
        report(how_to_get(name))
        return True
    if name == "fashion-mnist":
        from robustdml.data.mnist import LOCAL_FASHION_MNIST, download_fashion_mnist, fashion_mnist_search_path
        from robustdml.data.idx import load_idx_split

        for folder in fashion_mnist_search_path(root):
            if all(load_idx_split(folder, split) is not None for split in SPLITS):
                report(f"fashion-mnist: found in {folder.resolve()}")
                return True
        target = download_fashion_mnist(Path(root) if root else LOCAL_FASHION_MNIST)
        report(f"fashion-mnist: downloaded into {target.resolve()}")
        return True
    if root is None:
        report(f"{name}: no automatic download. {how_to_get(name)}")
        return False
    try:
        sizes = {split: len(build_dataset(name, split, root=root)) for split in SPLITS}
    except DatasetNotFoundError as error:
        report(str(error))
        return False
    report(f"{name}: found in {Path(root).resolve()} ({sizes['train']} train / {sizes['test']} test items)")
    return True
