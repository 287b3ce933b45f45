"""The dataset registry, ``build_dataset`` and ``fetch`` (the ``robustdml data NAME`` command).

Each registry entry is a :class:`~robustdml.data.entries.DatasetSpec`: how to build the dataset and every
fact about it the rest of the library needs (training defaults, zero-shot split, input size, source,
download); its builder's keyword arguments are its options (``image_size`` for the image benchmarks). A new
dataset is one builder with its ``@_dataset(...)`` line here (or in a module of its own that uses it).

Builders import their loaders lazily: the image benchmarks pull in torchvision and PIL, which
``robustdml data --list`` or a Fashion-MNIST run should not pay for.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Dict, Optional

import robustdml.data.sources as S
from robustdml.data.base import DatasetNotFoundError, RetrievalDataset
from robustdml.data.download import DownloadError
from robustdml.data.entries import DATASETS, DatasetSpec, dataset_spec, how_to_get
from robustdml.data.sources import DATA_DIR, DatasetDownload
from robustdml.registry import check_known_options

SPLITS = ("train", "test")

# CPU-sized training defaults for 28px sets; the paper-sized protocol (ResNet-50 with frozen BN, 2 images
# per class, batch 112, Adam 1e-5, weight decay 4e-4) for the image benchmarks.
SMALL_IMAGES = dict(model="convnet", batch_size=128, samples_per_class=16, epochs=8, lr=1e-3, weight_decay=1e-4,
                    miner="semihard")
IMAGE_BENCHMARK = dict(model="resnet50", batch_size=112, samples_per_class=2, epochs=100, lr=1e-5,
                       weight_decay=4e-4, miner="distance-weighted")


def _dataset(name: str, defaults: Dict[str, Any], source: str, input_size: Optional[int] = None,
             zero_shot: bool = False, download: Optional[DatasetDownload] = None, fetch: Optional[Callable] = None):
    """The registry line of a dataset: its builder below, with its entry's facts (see :class:`DatasetSpec`)."""
    def register(build):
        DATASETS.add(name, DatasetSpec(build, dict(defaults), zero_shot, input_size, source, download, fetch))
        return build

    return register


def _fetch_fashion_mnist(root: Optional[str], report: Callable[[str], None], allow_download: bool) -> bool:
    from robustdml.data.mnist import (LOCAL_FASHION_MNIST, download_fashion_mnist, fashion_mnist_folder,
                                      verify_fashion_mnist)

    try:
        folder = fashion_mnist_folder(root)
    except DatasetNotFoundError as error:
        if not allow_download:
            report(str(error))
            return False
        folder = download_fashion_mnist(Path(root) if root else LOCAL_FASHION_MNIST)
        report(f"fashion-mnist: downloaded into {folder.resolve()} (checksums verified)")
        return True
    try:
        verify_fashion_mnist(folder)
    except DownloadError as error:
        report(f"fashion-mnist: {error}")
        return False
    report(f"fashion-mnist: found in {folder.resolve()} (checksums verified)")
    return True


def _generated(root: Optional[str], report: Callable[[str], None], allow_download: bool) -> bool:
    report(S.SYNTHETIC_SOURCE)
    return True


@_dataset("fashion-mnist", SMALL_IMAGES, S.FASHION_MNIST_SOURCE, input_size=28, fetch=_fetch_fashion_mnist)
def _fashion_mnist(split: str, root: Optional[str] = None) -> RetrievalDataset:
    from robustdml.data.mnist import load_fashion_mnist

    return load_fashion_mnist(split, root)


@_dataset("mnist-idx", SMALL_IMAGES, S.MNIST_IDX_SOURCE, input_size=28)
def _mnist_idx(split: str, root: Optional[str] = None) -> RetrievalDataset:
    from robustdml.data.mnist import load_mnist_idx

    return load_mnist_idx(split, root)


@_dataset("synthetic-gaussian", dict(model="mlp", embedding_dim=2, batch_size=32, samples_per_class=16, epochs=20,
                                     lr=1e-3, weight_decay=0.0, miner="all"), S.SYNTHETIC_SOURCE, fetch=_generated)
def _synthetic_gaussian(split: str, root: Optional[str] = None, dim: int = 2, samples_per_class: int = 500,
                        seed: int = 0) -> RetrievalDataset:
    from robustdml.data.synthetic import make_two_gaussians

    return make_two_gaussians(split, dim=dim, samples_per_class=samples_per_class, seed=seed)


@_dataset("cub200", {**IMAGE_BENCHMARK, "epochs": 150}, S.CUB200_SOURCE, 224, zero_shot=True,
          download=S.CUB200_DOWNLOAD)
def _cub200(split: str, root: Optional[str] = None, image_size: int = 224) -> RetrievalDataset:
    from robustdml.data.images import load_cub200

    return load_cub200(split, root, image_size=image_size)


@_dataset("cars196", {**IMAGE_BENCHMARK, "epochs": 150}, S.CARS196_SOURCE, 224, zero_shot=True,
          download=S.CARS196_DOWNLOAD)
def _cars196(split: str, root: Optional[str] = None, image_size: int = 224) -> RetrievalDataset:
    from robustdml.data.images import load_cars196

    return load_cars196(split, root, image_size=image_size)


@_dataset("sop", IMAGE_BENCHMARK, S.SOP_SOURCE, 224, zero_shot=True, download=S.SOP_DOWNLOAD)
def _sop(split: str, root: Optional[str] = None, image_size: int = 224) -> RetrievalDataset:
    from robustdml.data.images import load_sop

    return load_sop(split, root, image_size=image_size)


@_dataset("image-folder", IMAGE_BENCHMARK, S.IMAGE_FOLDER_SOURCE, 224, zero_shot=True)
def _image_folder(split: str, root: Optional[str] = None, image_size: int = 224,
                  zero_shot: bool = True) -> RetrievalDataset:
    from robustdml.data.images import load_image_folder

    return load_image_folder(split, root, image_size=image_size, zero_shot=zero_shot)


def dataset_options(name: str) -> dict:
    """The options (beyond split and root) that dataset ``name`` accepts, with their defaults."""
    return dataset_spec(name).options()


def build_dataset(name: str, split: str, root: Optional[str] = None, **options) -> RetrievalDataset:
    """Dataset ``name`` (see ``DATASETS.names()``), ``split`` in {"train", "test"}; ``root`` where it lives."""
    spec = dataset_spec(name)
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    check_known_options("dataset", name, options, spec.options())
    return spec.build(split, root=root, **options)


def _sizes(name: str, root: Optional[str]) -> str:
    sizes = {split: len(build_dataset(name, split, root=root)) for split in SPLITS}
    return f"{sizes['train']} train / {sizes['test']} test items"


def _fetch_archives(name: str, root: Optional[str], report: Callable[[str], None], allow_download: bool) -> bool:
    """Download (unless present) and extract the files of ``name`` so that ``root`` (default
    ./data/<folder>) holds the dataset; checksums verified where known, the layout always."""
    from robustdml.data.download import download, extract
    from robustdml.data.sources import local_path

    plan = dataset_spec(name).download
    folder = Path(root) if root else DATA_DIR / plan.folder
    try:
        report(f"{name}: found in {folder.resolve()} ({_sizes(name, str(folder))})")
        return True
    except DatasetNotFoundError as error:
        if not allow_download:
            report(str(error))
            return False
    for remote in plan.files:
        path = local_path(remote, folder)
        if remote.top and remote.into and (folder / remote.into).is_dir() and any((folder / remote.into).iterdir()):
            continue  # a part of the dataset that is already extracted
        if path.is_file():
            if remote.checksum is not None:
                remote.checksum.verify(path, str(path))
        else:
            try:
                download(remote.urls, path, checksum=remote.checksum,
                         verify=None if remote.checksum else _archive_check(remote))
            except DownloadError as error:
                raise DownloadError(f"{name}: {error}. Offline? Download {remote.urls[0]} on a machine with "
                                    f"internet, put it at {path}, and run `robustdml data {name}` again") from None
        if remote.top:
            extract(path, remote.top, folder / remote.into if remote.into else folder)
    report(f"{name}: ready in {folder.resolve()} ({_sizes(name, str(folder))}); train with --data-root {folder}")
    return True


def _archive_check(remote) -> Callable[[Path], None]:
    """Integrity check for an archive without a known checksum: every zip member's CRC (or, for a tar
    archive, that its member list reads), and the expected top folder."""

    def check(path: Path) -> None:
        import tarfile
        import zipfile

        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as bundle:
                damaged = bundle.testzip()
                names = bundle.namelist()
            if damaged is not None:
                raise DownloadError(f"{path}: member {damaged} is damaged")
        else:
            try:
                with tarfile.open(path) as bundle:
                    names = bundle.getnames()
            except (tarfile.TarError, EOFError, OSError) as error:
                raise DownloadError(f"{path} is not a complete .tgz/.zip archive: {error}") from None
        if not any(n.startswith(f"{remote.top}/") for n in names):
            raise DownloadError(f"{path} has no {remote.top}/ folder; is it the right file?")

    return check


def fetch(name: str, root: Optional[str] = None, report: Callable[[str], None] = print,
          allow_download: bool = True) -> bool:
    """``robustdml data NAME``: find the dataset (in ``root`` when given), or download it where that is
    possible (Fashion-MNIST, CUB-200-2011, CARS196, SOP), checking checksums; otherwise say where to get it
    and where to put it. Returns whether the dataset is ready; raises DownloadError when a download fails."""
    spec = dataset_spec(name)  # unknown names fail with the list of valid ones
    if spec.fetch is not None:
        return spec.fetch(root, report, allow_download)
    if spec.download is not None:
        return _fetch_archives(name, root, report, allow_download)
    if root is None:
        report(f"{name}: no automatic download. {how_to_get(name)}")
        return False
    try:
        report(f"{name}: found in {Path(root).resolve()} ({_sizes(name, root)})")
    except DatasetNotFoundError as error:
        report(str(error))
        return False
    return True
