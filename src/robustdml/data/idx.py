"""MNIST-format idx files (Fashion-MNIST, MNIST, KMNIST, ...), gzipped or not.

Format: two zero bytes, a type code, the number of dimensions, one big-endian uint32 per
dimension, then the data. We parse the whole file once with ``numpy.frombuffer`` (Fashion-MNIST
loads in well under a second) and refuse anything whose size does not match its header.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path
from typing import List, Optional, Tuple

import numpy as np

_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}

FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


class IdxFormatError(ValueError):
    """An idx file is corrupt or truncated; the message names the file."""


def _read_bytes(path: Path) -> bytes:
    try:
        with open(path, "rb") as handle:
            raw = handle.read()
        return gzip.decompress(raw) if path.suffix == ".gz" else raw
    except (OSError, EOFError, zlib.error) as error:
        raise IdxFormatError(f"cannot read idx file {path}: {error} (truncated or corrupt download? "
                             "delete it and fetch it again)") from error


def read_idx(path, expected_ndim: Optional[int] = None) -> np.ndarray:
    """The array stored in idx file ``path`` (``.gz`` is decompressed); IdxFormatError if it is malformed."""
    path = Path(path)
    raw = _read_bytes(path)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _DTYPES:
        raise IdxFormatError(f"{path} is not an idx file (bad magic number {raw[:4].hex() or 'empty file'})")
    ndim = raw[3]
    if expected_ndim is not None and ndim != expected_ndim:
        raise IdxFormatError(f"{path}: expected {expected_ndim} dimension(s), the header says {ndim}")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise IdxFormatError(f"{path} is truncated: {len(raw)} bytes, shorter than its {header}-byte header")
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(_DTYPES[raw[2]])
    expected = header + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) != expected:
        problem = "truncated" if len(raw) < expected else "longer than its header says"
        raise IdxFormatError(f"{path} is {problem}: {len(raw)} bytes, expected {expected} for shape {shape}")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)


def find_idx_file(folder: Path, stem: str) -> Optional[Path]:
    """``folder/stem.gz`` or ``folder/stem``, whichever exists (gz first)."""
    for candidate in (Path(folder) / f"{stem}.gz", Path(folder) / stem):
        if candidate.is_file():
            return candidate
    return None


def missing_idx_files(folder) -> List[str]:
    """The idx files of both splits that ``folder`` lacks (as ``name[.gz]``); all four if it does not exist."""
    return [f"{stem}[.gz]" for stems in FILES.values() for stem in stems if find_idx_file(folder, stem) is None]


def load_idx_split(folder, split: str) -> Optional[Tuple[np.ndarray, np.ndarray]]:
    """(images uint8 [N,H,W], labels int64 [N]) of ``split`` in ``folder``, or None if files are missing."""
    if split not in FILES:
        raise ValueError(f"split must be one of {tuple(FILES)}, got {split!r}")
    image_stem, label_stem = FILES[split]
    image_path, label_path = find_idx_file(folder, image_stem), find_idx_file(folder, label_stem)
    if image_path is None or label_path is None:
        return None
    images, labels = read_idx(image_path, expected_ndim=3), read_idx(label_path, expected_ndim=1)
    if images.dtype != np.uint8:
        raise IdxFormatError(f"{image_path}: expected unsigned-byte pixels, got {images.dtype}")
    if len(images) != len(labels):
        raise IdxFormatError(f"{image_path} has {len(images)} images but {label_path} has {len(labels)} labels")
    return images, labels.astype(np.int64)
