"""Fashion-MNIST (found locally or downloaded) and any folder of MNIST-format idx files."""

from __future__ import annotations

import os
import tempfile
import urllib.request
from pathlib import Path
from typing import Callable, List, Optional

import torch

from robustdml.data.base import DatasetNotFoundError, TensorRetrievalDataset
from robustdml.data.idx import FILES, IdxFormatError, load_idx_split, read_idx
from robustdml.data.sources import FASHION_MNIST_URL, how_to_get

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
LOCAL_FASHION_MNIST = Path("data/fashion-mnist")


def fashion_mnist_search_path(root: Optional[str] = None) -> List[Path]:
    """Where Fashion-MNIST is looked for, in order: the given root, ./data/fashion-mnist, Debian's package."""
    candidates = [Path(root)] if root else []
    return candidates + [LOCAL_FASHION_MNIST, DEBIAN_FASHION_MNIST]


def _in_memory(images, labels, name: str) -> TensorRetrievalDataset:
    # frombuffer arrays are read-only views of the file bytes; torch needs its own writable copy.
    return TensorRetrievalDataset(torch.from_numpy(images.copy()).unsqueeze(1), labels, name=name)


def _check_split(split: str) -> None:
    if split not in FILES:
        raise ValueError(f"split must be one of {tuple(FILES)}, got {split!r}")


def load_fashion_mnist(split: str, root: Optional[str] = None) -> TensorRetrievalDataset:
    """Fashion-MNIST ``split`` as uint8 [N,1,28,28] in memory, from the first folder that has it."""
    _check_split(split)
    searched = fashion_mnist_search_path(root)
    for folder in searched:
        loaded = load_idx_split(folder, split)
        if loaded is not None:
            return _in_memory(*loaded, name="fashion-mnist")
    raise DatasetNotFoundError(
        f"Fashion-MNIST ({split}) not found; looked in " + ", ".join(str(p.resolve()) for p in searched)
        + ". " + how_to_get("fashion-mnist"))


def load_mnist_idx(split: str, root: Optional[str] = None) -> TensorRetrievalDataset:
    """Any MNIST-format dataset in ``root`` (same four file names as MNIST, gz or not)."""
    _check_split(split)
    if not root:
        raise DatasetNotFoundError("mnist-idx needs a root folder. " + how_to_get("mnist-idx"))
    loaded = load_idx_split(Path(root), split)
    if loaded is None:
        image_stem, label_stem = FILES[split]
        raise DatasetNotFoundError(f"{Path(root).resolve()} has no {image_stem}[.gz] and {label_stem}[.gz] for "
                                   f"the {split} split. " + how_to_get("mnist-idx"))
    return _in_memory(*loaded, name=f"mnist-idx:{Path(root).resolve().name}")


def download_file(url: str, target: Path, verify: Optional[Callable[[Path], object]] = None) -> Path:
    """Stream ``url`` into ``target`` with a progress bar, atomically: a temporary file in the same folder
    is verified (``verify(tmp)`` must not raise) and only then renamed, so an interrupted or corrupt
    download never leaves a file that looks complete."""
    from tqdm.auto import tqdm

    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    # Same folder (so the rename is atomic) and same suffix (so ``verify`` sees e.g. ``.gz``).
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=f".part{target.suffix}")
    tmp = Path(tmp_name)
    try:
        with urllib.request.urlopen(url, timeout=60) as response, os.fdopen(fd, "wb") as handle:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=target.name, leave=False) as bar:
                while chunk := response.read(1 << 16):
                    handle.write(chunk)
                    bar.update(len(chunk))
        if verify is not None:
            verify(tmp)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return target


def _parses(path: Path) -> bool:
    try:
        read_idx(path)
        return True
    except IdxFormatError:
        return False


def download_fashion_mnist(destination=LOCAL_FASHION_MNIST, base_url: str = FASHION_MNIST_URL) -> Path:
    """Fetch the four Fashion-MNIST ``.gz`` files into ``destination``; each is parsed before it is kept.

    Files already there that parse are kept; broken ones are downloaded again.
    """
    destination = Path(destination)
    for stems in FILES.values():
        for stem in stems:
            target = destination / f"{stem}.gz"
            if target.is_file() and _parses(target):
                continue
            url = base_url.rstrip("/") + f"/{stem}.gz"
            try:
                download_file(url, target, verify=read_idx)
            except IdxFormatError as error:
                raise IdxFormatError(f"downloaded {url} but it is not a valid idx file: {error}") from error
            except OSError as error:
                raise OSError(f"could not download {url} into {target}: {error}. "
                              + how_to_get("fashion-mnist")) from error
    return destination
