"""Fashion-MNIST (found locally or downloaded) and any folder of MNIST-format idx files."""

from __future__ import annotations

import os
import tempfile
import urllib.request
from pathlib import Path
from typing import List, Optional

import torch
from tqdm.auto import tqdm

from robustdml.data.base import DatasetNotFoundError, TensorRetrievalDataset
from robustdml.data.idx import FILES, load_idx_split, read_idx

FASHION_MNIST_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
LOCAL_FASHION_MNIST = Path("data/fashion-mnist")


def fashion_mnist_search_path(root: Optional[str]) -> List[Path]:
    """Where Fashion-MNIST is looked for, in order: the given root, ./data/fashion-mnist, Debian's package."""
    candidates = [Path(root)] if root else []
    return candidates + [LOCAL_FASHION_MNIST, DEBIAN_FASHION_MNIST]


def _in_memory(images, labels, name: str) -> TensorRetrievalDataset:
    return TensorRetrievalDataset(torch.from_numpy(images.copy()).unsqueeze(1), labels, name=name)


def load_fashion_mnist(split: str, root: Optional[str] = None) -> TensorRetrievalDataset:
    searched = fashion_mnist_search_path(root)
    for folder in searched:
        loaded = load_idx_split(folder, split)
        if loaded is not None:
            return _in_memory(*loaded, name="fashion-mnist")
    raise DatasetNotFoundError(
        "Fashion-MNIST not found; looked in " + ", ".join(str(p) for p in searched) + ". Get it with "
        "`sudo apt-get install dataset-fashion-mnist` (Debian/Ubuntu), or `robustdml data fashion-mnist` to "
        f"download it into {LOCAL_FASHION_MNIST} from {FASHION_MNIST_URL}, or pass --data-root FOLDER holding "
        "train-images-idx3-ubyte(.gz) and the three other idx files.")


def load_mnist_idx(split: str, root: Optional[str] = None) -> TensorRetrievalDataset:
    if not root:
        raise DatasetNotFoundError("mnist-idx needs --data-root: a folder of MNIST-format idx files "
                                   "(train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz], t10k-...)")
    loaded = load_idx_split(Path(root), split)
    if loaded is None:
        image_stem, label_stem = FILES[split]
        raise DatasetNotFoundError(f"{root} has no {image_stem}[.gz] / {label_stem}[.gz] for the {split} split")
    return _in_memory(*loaded, name=f"mnist-idx:{Path(root).name}")


def _download(url: str, target: Path) -> None:
    """Stream ``url`` into ``target`` atomically (temp file + rename) with a progress bar."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".part")
    try:
        with urllib.request.urlopen(url, timeout=60) as response, os.fdopen(fd, "wb") as handle:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=target.name, leave=False) as bar:
                while chunk := response.read(1 << 16):
                    handle.write(chunk)
                    bar.update(len(chunk))
        os.replace(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def download_fashion_mnist(destination: Path = LOCAL_FASHION_MNIST, base_url: str = FASHION_MNIST_URL) -> Path:
    """Fetch the four Fashion-MNIST files into ``destination`` and check that each parses."""
    destination = Path(destination)
    for image_stem, label_stem in FILES.values():
        for stem in (image_stem, label_stem):
            target = destination / f"{stem}.gz"
            if not target.is_file():
                _download(base_url.rstrip("/") + f"/{stem}.gz", target)
            read_idx(target)  # raises IdxFormatError naming the file if the download is broken
    return destination
