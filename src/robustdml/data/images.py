"""On-disk image benchmarks in their standard layouts, with the zero-shot split.

CUB-200-2011 and CARS196: first half of the classes train, second half test. Stanford Online
Products: Ebay_train.txt / Ebay_test.txt encode the same convention (11,318 / 11,316 classes).
Labels are remapped to 0..C-1 within a split. Images load lazily with PIL (converted to RGB) and go
through the train/test transforms; a missing, corrupt or truncated file raises an error naming it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image

from robustdml.data.base import DatasetNotFoundError, RetrievalDataset
from robustdml.data.entries import dataset_spec, how_to_get
from robustdml.data.sources import DATA_DIR
from robustdml.data.splits import zero_shot_split
from robustdml.data.transforms import evaluation_transform, training_transform

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp"}
SPLITS = ("train", "test")


class CorruptImageError(ValueError):
    """An image file cannot be decoded; the message names it."""


class AnnotationError(ValueError):
    """A dataset's annotation file is malformed; the message names the file and line."""


def load_image(path: Path) -> Image.Image:
    """Decode ``path`` fully (PIL is lazy, so truncation shows up here, not later) as RGB."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image {path} listed by the dataset does not exist (incomplete extraction?)")
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except (OSError, ValueError, SyntaxError) as error:
        raise CorruptImageError(f"cannot read image {path}: {error}") from error


class ImageListDataset(RetrievalDataset):
    """Paths + labels (remapped to 0..C-1 in sorted order), decoded on access and transformed to [0,1]."""

    def __init__(self, paths: Sequence[Path], labels: Sequence[int], name: str, train: bool,
                 image_size: int = 224, class_names: Optional[Sequence[str]] = None):
        if len(paths) != len(labels):
            raise ValueError(f"{name}: {len(paths)} paths but {len(labels)} labels")
        if not len(paths):
            raise DatasetNotFoundError(f"{name}: no images found for the {'train' if train else 'test'} split. "
                                       + how_to_get(name))
        original = sorted(set(int(label) for label in labels))
        remap = {label: index for index, label in enumerate(original)}
        self.paths = [Path(p) for p in paths]
        self.labels = np.asarray([remap[int(label)] for label in labels], dtype=np.int64)
        self.original_labels = np.asarray(original, dtype=np.int64)  # label i was class original_labels[i]
        self.class_names = list(class_names) if class_names is not None else [str(c) for c in original]
        self.name = name
        self.transform = training_transform(image_size) if train else evaluation_transform(image_size)
        self.image_shape = (3, image_size, image_size)

    def __getitem__(self, index: int):
        return self.transform(load_image(self.paths[index])), int(self.labels[index])


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")


def _root(root: Optional[str], dataset: str, required: Sequence[str]) -> Path:
    """``root`` (the only place looked at when given), else where ``robustdml data NAME`` puts the dataset."""
    if not root:
        download = dataset_spec(dataset).download
        if download is None:
            raise DatasetNotFoundError(f"{dataset} needs a data root (--data-root). " + how_to_get(dataset))
        root = str(DATA_DIR / download.folder)
    base = Path(root)
    missing = [str((base / name).resolve()) for name in required if not (base / name).exists()]
    if missing:
        raise DatasetNotFoundError(f"{dataset}: looked for {', '.join(missing)} but did not find it. "
                                   + how_to_get(dataset))
    return base


def _read_table(path: Path, columns: int, skip_header: bool = False) -> List[List[str]]:
    """Whitespace-separated rows with at least ``columns`` fields; an error names file and line otherwise."""
    rows = []
    lines = path.read_text().splitlines()
    for number, line in enumerate(lines[1:] if skip_header else lines, start=2 if skip_header else 1):
        if not line.strip():
            continue
        fields = line.split()
        if len(fields) < columns:
            raise AnnotationError(f"{path}, line {number}: expected {columns} columns, got {line!r}")
        rows.append(fields)
    return rows


def _as_int(value: str, path: Path, what: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise AnnotationError(f"{path}: {what} {value!r} is not an integer") from None


def _zero_shot(items: List[Tuple[Path, int]], split: str) -> Tuple[List[Path], List[int]]:
    labels = np.asarray([label for _, label in items])
    train_indices, test_indices = zero_shot_split(labels)
    chosen = train_indices if split == "train" else test_indices
    return [items[i][0] for i in chosen], [items[i][1] for i in chosen]


def load_cub200(split: str, root: Optional[str] = None, image_size: int = 224) -> ImageListDataset:
    """CUB-200-2011 from ROOT/images.txt, image_class_labels.txt, images/; classes 1-100 train, 101-200 test."""
    _check_split(split)
    base = _root(root, "cub200", ("images.txt", "image_class_labels.txt", "images"))
    paths: Dict[str, str] = {row[0]: row[1] for row in _read_table(base / "images.txt", 2)}
    labels = {row[0]: _as_int(row[1], base / "image_class_labels.txt", "class id")
              for row in _read_table(base / "image_class_labels.txt", 2)}
    unlabelled = sorted(set(paths) - set(labels), key=str)
    if unlabelled:
        raise AnnotationError(f"{base / 'image_class_labels.txt'} has no class for image ids "
                              f"{', '.join(unlabelled[:5])} listed in {base / 'images.txt'}")
    ordered_ids = sorted(paths, key=lambda image_id: _as_int(image_id, base / "images.txt", "image id"))
    items = [(base / "images" / paths[i], labels[i]) for i in ordered_ids]
    return ImageListDataset(*_zero_shot(items, split), name="cub200", train=split == "train", image_size=image_size)


def _mat_string(value) -> str:
    return str(np.asarray(value).reshape(-1)[0])


def _mat_int(value) -> int:
    return int(np.asarray(value).reshape(-1)[0])


def load_cars196(split: str, root: Optional[str] = None, image_size: int = 224) -> ImageListDataset:
    """CARS196 from ROOT/cars_annos.mat (relative_im_path, class 1..196); classes 1-98 train, 99-196 test."""
    from scipy.io import loadmat
    from scipy.io.matlab import MatReadError

    _check_split(split)
    base = _root(root, "cars196", ("cars_annos.mat", "car_ims"))
    mat_path = base / "cars_annos.mat"
    try:
        annotations = loadmat(str(mat_path))["annotations"].reshape(-1)
        items = [(base / _mat_string(entry["relative_im_path"]), _mat_int(entry["class"])) for entry in annotations]
    except (MatReadError, KeyError, ValueError, IndexError, TypeError, OSError) as error:
        raise AnnotationError(f"{mat_path} is not a CARS196 annotation file (expected a struct array "
                              f"'annotations' with fields relative_im_path and class): {error}") from error
    return ImageListDataset(*_zero_shot(items, split), name="cars196", train=split == "train", image_size=image_size)


def load_sop(split: str, root: Optional[str] = None, image_size: int = 224) -> ImageListDataset:
    """Stanford Online Products from ROOT/Ebay_train.txt / Ebay_test.txt (image_id class_id super_class_id path)."""
    _check_split(split)
    listing_name = "Ebay_train.txt" if split == "train" else "Ebay_test.txt"
    base = _root(root, "sop", (listing_name,))
    listing = base / listing_name
    rows = _read_table(listing, 4, skip_header=True)
    paths = [base / row[3] for row in rows]
    labels = [_as_int(row[1], listing, "class_id") for row in rows]
    return ImageListDataset(paths, labels, name="sop", train=split == "train", image_size=image_size)


def load_image_folder(split: str, root: Optional[str] = None, image_size: int = 224,
                      zero_shot: bool = True) -> ImageListDataset:
    """ROOT/<class>/*.jpg with the zero-shot class split, or ROOT/train|test/<class>/* with zero_shot=False."""
    _check_split(split)
    base = _root(root, "image-folder", () if zero_shot else (split,))
    base = base if zero_shot else base / split
    if not base.is_dir():
        raise DatasetNotFoundError(f"image-folder: {base.resolve()} is not a folder. " + how_to_get("image-folder"))
    class_dirs = sorted(d for d in base.iterdir() if d.is_dir() and not d.name.startswith("."))
    items = [(path, index) for index, folder in enumerate(class_dirs)
             for path in sorted(folder.iterdir()) if path.suffix.lower() in IMAGE_SUFFIXES]
    found = len({label for _, label in items})
    if found < (2 if zero_shot else 1):
        raise DatasetNotFoundError(f"image-folder: {base.resolve()} has images in {found} class sub-folder(s); "
                                   f"need {2 if zero_shot else 1} or more. " + how_to_get("image-folder"))
    if zero_shot:
        paths, labels = _zero_shot(items, split)
    else:
        paths, labels = [p for p, _ in items], [label for _, label in items]
    names = [class_dirs[label].name for label in sorted(set(labels))]
    return ImageListDataset(paths, labels, name="image-folder", train=split == "train", image_size=image_size,
                            class_names=names)
