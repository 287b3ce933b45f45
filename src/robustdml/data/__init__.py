"""Datasets, splits and samplers. Every dataset yields ``(image in [0,1], label)``; see ``base.py``."""

from __future__ import annotations

from typing import Optional

from robustdml.data.base import DatasetNotFoundError, RetrievalDataset, TensorRetrievalDataset, subset
from robustdml.data.images import load_cars196, load_cub200, load_image_folder, load_sop
from robustdml.data.mnist import download_fashion_mnist, fashion_mnist_search_path, load_fashion_mnist, load_mnist_idx
from robustdml.data.sampler import MPerClassBatchSampler
from robustdml.data.splits import limit_per_class, stratified_fraction, validation_split
from robustdml.data.synthetic import make_two_gaussians
from robustdml.registry import Registry

DATASETS: Registry = Registry("dataset")
DATASETS.add("fashion-mnist", lambda split, root=None, **_: load_fashion_mnist(split, root))
DATASETS.add("mnist-idx", lambda split, root=None, **_: load_mnist_idx(split, root))
DATASETS.add("synthetic-gaussian", lambda split, root=None, **options: make_two_gaussians(split, **options))
DATASETS.add("cub200", load_cub200)
DATASETS.add("cars196", load_cars196)
DATASETS.add("sop", load_sop)
DATASETS.add("image-folder", load_image_folder)

SPLITS = ("train", "test")


def build_dataset(name: str, split: str, root: Optional[str] = None, **options) -> RetrievalDataset:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    return DATASETS.get(name)(split, root=root, **options)


def fetch(name: str, root: Optional[str] = None) -> None:
    """``robustdml data NAME``: make a dataset available, or say exactly how to."""
    DATASETS.get(name)
    if name == "fashion-mnist":
        for folder in fashion_mnist_search_path(root):
            try:
                load_fashion_mnist("test", str(folder))
                print(f"fashion-mnist: found in {folder}")
                return
            except DatasetNotFoundError:
                continue
        target = download_fashion_mnist(root or "data/fashion-mnist")
        print(f"fashion-mnist: downloaded into {target}")
    elif name == "synthetic-gaussian":
        print("synthetic-gaussian is generated on the fly; nothing to fetch")
    else:
        build_dataset(name, "test", root=root)  # raises DatasetNotFoundError with instructions when missing
        print(f"{name}: found in {root}")


__all__ = ["DATASETS", "DatasetNotFoundError", "MPerClassBatchSampler", "RetrievalDataset", "TensorRetrievalDataset",
           "build_dataset", "fetch", "limit_per_class", "stratified_fraction", "subset", "validation_split"]
