"""MNIST-format idx files (Fashion-MNIST, MNIST, KMNIST, ...), gzipped or not."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}

FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


class IdxFormatError(ValueError):
    """An idx file is corrupt or truncated; the message names the file."""


def read_idx(path: Path) -> np.ndarray:
    path = Path(path)
    try:
        raw = gzip.open(path).read() if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError) as error:
        raise IdxFormatError(f"cannot read idx file {path}: {error}") from error
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _DTYPES:
        raise IdxFormatError(f"{path} is not an idx file (bad magic number)")
    ndim = raw[3]
    header = 4 + 4 * ndim
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(_DTYPES[raw[2]])
    expected = header + int(np.prod(shape)) * dtype.itemsize
    if len(raw) != expected:
        raise IdxFormatError(f"{path} is truncated or corrupt: {len(raw)} bytes, expected {expected} for shape {shape}")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)


def find_idx_file(folder: Path, stem: str) -> Path | None:
    for candidate in (folder / f"{stem}.gz", folder / stem):
        if candidate.is_file():
            return candidate
    return None


def load_idx_split(folder: Path, split: str):
    """(images uint8 [N,H,W], labels int64 [N]) of ``split`` in ``folder``, or None if files are missing."""
    image_stem, label_stem = FILES[split]
    image_path, label_path = find_idx_file(folder, image_stem), find_idx_file(folder, label_stem)
    if image_path is None or label_path is None:
        return None
    images, labels = read_idx(image_path), read_idx(label_path)
    if images.ndim != 3:
        raise IdxFormatError(f"{image_path}: expected 3 dimensions (N, H, W), got shape {images.shape}")
    if len(images) != len(labels):
        raise IdxFormatError(f"{image_path} has {len(images)} images but {label_path} has {len(labels)} labels")
    return images, labels.astype(np.int64)
