"""Fashion-MNIST (found locally or downloaded) and any folder of MNIST-format idx files."""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional, Sequence

import torch

from robustdml.data.base import DatasetNotFoundError, TensorRetrievalDataset
from robustdml.data.download import Checksum, DownloadError, download
from robustdml.data.idx import FILES, find_idx_file, load_idx_split, missing_idx_files, read_idx
from robustdml.data.entries import how_to_get
from robustdml.data.sources import DATA_DIR, FASHION_MNIST_MIRRORS, FASHION_MNIST_SHA256

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
LOCAL_FASHION_MNIST = DATA_DIR / "fashion-mnist"


def fashion_mnist_search_path(root: Optional[str] = None) -> List[Path]:
    """Where Fashion-MNIST is looked for: only the given root, else ./data/fashion-mnist then Debian's package."""
    return [Path(root)] if root else [LOCAL_FASHION_MNIST, DEBIAN_FASHION_MNIST]


def _in_memory(images, labels, name: str) -> TensorRetrievalDataset:
    # frombuffer arrays are read-only views of the file bytes; torch needs its own writable copy.
    return TensorRetrievalDataset(torch.from_numpy(images.copy()).unsqueeze(1), labels, name=name)


def _check_split(split: str) -> None:
    if split not in FILES:
        raise ValueError(f"split must be one of {tuple(FILES)}, got {split!r}")


def fashion_mnist_folder(root: Optional[str] = None) -> Path:
    """The one folder both splits are read from.

    A given ``root`` is the only source: missing or incomplete is an error naming what is missing.
    Without one, the first of ./data/fashion-mnist and Debian's folder that holds any of the files is
    used, and must hold all four (never the train split of one folder and the test split of another).
    """
    if root:
        missing = missing_idx_files(Path(root))
        if missing:
            where = (f"{Path(root).resolve()} does not exist" if not Path(root).is_dir()
                     else f"{Path(root).resolve()} has no {', '.join(missing)}")
            raise DatasetNotFoundError(f"Fashion-MNIST: --data-root {root}: {where}. " + how_to_get("fashion-mnist"))
        return Path(root)
    searched = fashion_mnist_search_path(None)
    for folder in searched:
        missing = missing_idx_files(folder)
        if len(missing) == 4:
            continue
        if missing:
            raise DatasetNotFoundError(
                f"Fashion-MNIST in {folder.resolve()} is incomplete: no {', '.join(missing)}. Run `robustdml data "
                "fashion-mnist` to complete it, or move the folder away.")
        return folder
    raise DatasetNotFoundError("Fashion-MNIST not found; looked in " + ", ".join(str(p.resolve()) for p in searched)
                               + ". " + how_to_get("fashion-mnist"))


def load_fashion_mnist(split: str, root: Optional[str] = None) -> TensorRetrievalDataset:
    """Fashion-MNIST ``split`` as uint8 [N,1,28,28] in memory, from :func:`fashion_mnist_folder`."""
    _check_split(split)
    return _in_memory(*load_idx_split(fashion_mnist_folder(root), split), name="fashion-mnist")


def load_mnist_idx(split: str, root: Optional[str] = None) -> TensorRetrievalDataset:
    """Any MNIST-format dataset in ``root`` (same four file names as MNIST, gz or not)."""
    _check_split(split)
    if not root:
        raise DatasetNotFoundError("mnist-idx needs a root folder. " + how_to_get("mnist-idx"))
    missing = missing_idx_files(Path(root))
    if missing:
        raise DatasetNotFoundError(f"mnist-idx: {Path(root).resolve()} has no {', '.join(missing)}. "
                                   + how_to_get("mnist-idx"))
    return _in_memory(*load_idx_split(Path(root), split), name=f"mnist-idx:{Path(root).resolve().name}")


def _checksums(checksums: Optional[Dict[str, str]]) -> Dict[str, Checksum]:
    digests = FASHION_MNIST_SHA256 if checksums is None else checksums
    return {name: Checksum("sha256", digest, of_content=True) for name, digest in digests.items()}


def verify_fashion_mnist(folder: Path, checksums: Optional[Dict[str, str]] = None) -> None:
    """Raise DownloadError unless the four files in ``folder`` (gzipped or not) have the published content."""
    for name, checksum in _checksums(checksums).items():
        path = find_idx_file(folder, name[: -len(".gz")])
        if path is None:
            raise DownloadError(f"{folder} has no {name}")
        if path.suffix != ".gz":
            checksum = Checksum(checksum.algorithm, checksum.hexdigest)
        checksum.verify(path, str(path))


def download_fashion_mnist(destination=None, mirrors: Optional[Sequence[str]] = None,
                           checksums: Optional[Dict[str, str]] = None, progress: bool = True) -> Path:
    """Fetch the four Fashion-MNIST ``.gz`` files into ``destination`` over https, each checked against
    the SHA-256 of its content before it is kept (see ``sources.FASHION_MNIST_SHA256``).

    Files already there with the right content are kept; others are downloaded again.
    """
    destination = Path(LOCAL_FASHION_MNIST if destination is None else destination)
    mirrors = FASHION_MNIST_MIRRORS if mirrors is None else mirrors
    for name, checksum in _checksums(checksums).items():
        target = destination / name
        if target.is_file():
            try:
                checksum.verify(target, str(target))
                continue
            except DownloadError:
                pass
        try:
            download([base.rstrip("/") + f"/{name}" for base in mirrors], target, checksum=checksum,
                     verify=read_idx, progress=progress)
        except DownloadError as error:
            raise DownloadError(f"{error}. Offline? Put {name} into {destination.resolve()} by hand (from "
                                f"{mirrors[0]}), or install Debian's dataset-fashion-mnist") from None
    return destination
