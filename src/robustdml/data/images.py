"""On-disk image benchmarks in their standard layouts, with the zero-shot split.

CUB-200-2011 and CARS196: first half of the classes train, second half test. Stanford Online
Products: Ebay_train.txt / Ebay_test.txt encode the same convention (11,318 / 11,316 classes).
Images load lazily with PIL; a corrupt or truncated file raises an error naming it.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image

from robustdml.data.base import DatasetNotFoundError, RetrievalDataset
from robustdml.data.transforms import test_transform, train_transform

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp"}

SOURCES = {
    "cub200": "https://data.caltech.edu/records/65de6-vp158 (CUB_200_2011.tgz; extract so ROOT/images.txt exists)",
    "cars196": "https://ai.stanford.edu/~jkrause/cars/car_dataset.html (car_ims/ and cars_annos.mat in ROOT)",
    "sop": "https://cvgl.stanford.edu/projects/lifted_struct/ (Stanford_Online_Products; ROOT/Ebay_train.txt)",
}


class CorruptImageError(ValueError):
    """An image file cannot be decoded; the message names it."""


def load_image(path: Path) -> Image.Image:
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except (OSError, ValueError, SyntaxError) as error:
        raise CorruptImageError(f"cannot read image {path}: {error}") from error


class ImageListDataset(RetrievalDataset):
    """Paths + labels (remapped to 0..C-1), decoded on access and transformed to [0,1] tensors."""

    def __init__(self, paths: Sequence[Path], labels: Sequence[int], name: str, train: bool, image_size: int = 224):
        if not paths:
            raise DatasetNotFoundError(f"{name}: no images found for this split")
        classes = sorted(set(int(label) for label in labels))
        remap = {label: index for index, label in enumerate(classes)}
        self.paths = [Path(p) for p in paths]
        self.labels = np.asarray([remap[int(label)] for label in labels], dtype=np.int64)
        self.name = name
        self.transform = train_transform(image_size) if train else test_transform(image_size)
        self.image_shape = (3, image_size, image_size)

    def __getitem__(self, index: int):
        return self.transform(load_image(self.paths[index])), int(self.labels[index])


def zero_shot_classes(classes: Sequence[int], split: str) -> set:
    """First half of the sorted classes for ``train``, second half for ``test``."""
    ordered = sorted(set(classes))
    half = len(ordered) // 2
    return set(ordered[:half] if split == "train" else ordered[half:])


def _require(path: Path, dataset: str) -> None:
    if not path.exists():
        raise DatasetNotFoundError(f"{dataset}: {path} not found. Get the dataset from {SOURCES[dataset]} and pass "
                                   f"--data-root ROOT.")


def _root(root: Optional[str], dataset: str) -> Path:
    if not root:
        raise DatasetNotFoundError(f"{dataset} needs --data-root. Get the dataset from {SOURCES[dataset]}.")
    return Path(root)


def _split_by_class(items: List[Tuple[Path, int]], split: str):
    keep = zero_shot_classes([label for _, label in items], split)
    chosen = [(path, label) for path, label in items if label in keep]
    return [p for p, _ in chosen], [label for _, label in chosen]


def load_cub200(split: str, root: Optional[str] = None, image_size: int = 224) -> ImageListDataset:
    base = _root(root, "cub200")
    for name in ("images.txt", "image_class_labels.txt", "images"):
        _require(base / name, "cub200")
    paths = dict(line.split() for line in (base / "images.txt").read_text().splitlines() if line.strip())
    labels = dict(line.split() for line in (base / "image_class_labels.txt").read_text().splitlines() if line.strip())
    items = [(base / "images" / paths[i], int(labels[i])) for i in sorted(paths, key=int)]
    return ImageListDataset(*_split_by_class(items, split), name="cub200", train=split == "train", image_size=image_size)


def load_cars196(split: str, root: Optional[str] = None, image_size: int = 224) -> ImageListDataset:
    from scipy.io import loadmat

    base = _root(root, "cars196")
    _require(base / "cars_annos.mat", "cars196")
    annotations = loadmat(str(base / "cars_annos.mat"))["annotations"][0]
    items = [(base / str(entry["relative_im_path"][0]), int(entry["class"][0][0])) for entry in annotations]
    return ImageListDataset(*_split_by_class(items, split), name="cars196", train=split == "train", image_size=image_size)


def load_sop(split: str, root: Optional[str] = None, image_size: int = 224) -> ImageListDataset:
    base = _root(root, "sop")
    listing = base / ("Ebay_train.txt" if split == "train" else "Ebay_test.txt")
    _require(listing, "sop")
    rows = [line.split() for line in listing.read_text().splitlines()[1:] if line.strip()]
    paths, labels = [base / row[3] for row in rows], [int(row[1]) for row in rows]
    return ImageListDataset(paths, labels, name="sop", train=split == "train", image_size=image_size)


def load_image_folder(split: str, root: Optional[str] = None, image_size: int = 224,
                      zero_shot: bool = True) -> ImageListDataset:
    """ROOT/<class>/*.jpg with the zero-shot class split, or ROOT/train|test/<class>/* with zero_shot=False."""
    if not root:
        raise DatasetNotFoundError("image-folder needs --data-root ROOT holding one sub-folder per class")
    base = Path(root) if zero_shot else Path(root) / split
    if not base.is_dir():
        raise DatasetNotFoundError(f"image-folder: {base} is not a folder")
    class_dirs = sorted(d for d in base.iterdir() if d.is_dir())
    items = [(path, index) for index, folder in enumerate(class_dirs)
             for path in sorted(folder.iterdir()) if path.suffix.lower() in IMAGE_SUFFIXES]
    paths, labels = _split_by_class(items, split) if zero_shot else ([p for p, _ in items], [l for _, l in items])
    return ImageListDataset(paths, labels, name="image-folder", train=split == "train", image_size=image_size)
