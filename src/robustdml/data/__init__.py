"""Datasets, splits and samplers. Every dataset yields ``(image in [0,1], label)``; see ``base.py``.

Light at import time: the image benchmarks (torchvision, PIL) load only when one is built or one of
their names below is accessed.
"""

from __future__ import annotations

from robustdml.data.base import DatasetNotFoundError, RetrievalDataset, SubsetDataset, TensorRetrievalDataset, subset
from robustdml.data.catalog import DATASETS, SPLITS, DatasetSpec, build_dataset, dataset_options, dataset_spec, fetch
from robustdml.data.idx import IdxFormatError, read_idx
from robustdml.data.mnist import download_fashion_mnist, fashion_mnist_search_path, load_fashion_mnist, load_mnist_idx
from robustdml.data.sampler import SAMPLERS, MPerClassBatchSampler, PairBatchSampler
from robustdml.data.splits import (indices_by_class, limit_per_class, stratified_fraction, validation_split,
                                   zero_shot_split)
from robustdml.data.synthetic import make_two_gaussians

_LAZY_IMAGE_NAMES = ("AnnotationError", "CorruptImageError", "ImageListDataset", "load_cars196", "load_cub200",
                     "load_image_folder", "load_sop")


def __getattr__(name: str):
    if name in _LAZY_IMAGE_NAMES:
        from robustdml.data import images

        return getattr(images, name)
    raise AttributeError(f"module 'robustdml.data' has no attribute {name!r}")


__all__ = ["DATASETS", "SPLITS", "DatasetNotFoundError", "DatasetSpec", "dataset_spec", "IdxFormatError", "MPerClassBatchSampler", "PairBatchSampler", "RetrievalDataset", "SAMPLERS",
           "SubsetDataset", "TensorRetrievalDataset", "build_dataset", "dataset_options", "download_fashion_mnist",
           "fashion_mnist_search_path", "fetch", "indices_by_class", "limit_per_class", "load_fashion_mnist",
           "load_mnist_idx", "make_two_gaussians", "read_idx", "stratified_fraction", "subset", "validation_split",
           "zero_shot_split", *_LAZY_IMAGE_NAMES]
