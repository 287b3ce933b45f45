"""Where each dataset comes from, how it is checked, and how it must be laid out on disk: the download
declarations (URLs, checksums) and the texts error messages print, so that a missing dataset always says the
same, complete thing (the official URL, where to put the file by hand, the expected layout). Each dataset's
registry entry (:mod:`robustdml.data.catalog`) names its own; nothing here is looked up by name.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Tuple

from robustdml.data.download import Checksum

# Where `robustdml data NAME` puts what it downloads (relative to the working directory).
DATA_DIR = Path("data")

# Fashion-MNIST from its authors (Zalando Research). Their README links the bucket's s3-website
# endpoint, which is http-only; the same bucket's REST endpoint serves the files over https. Their
# GitHub repository holds the same files and is the second mirror.
FASHION_MNIST_MIRRORS = (
    "https://fashion-mnist.s3.eu-central-1.amazonaws.com/",
    "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
)
FASHION_MNIST_URL = FASHION_MNIST_MIRRORS[0]
# SHA-256 of each file's gunzipped content (the idx bytes), not of the .gz bytes: copies re-packed by a
# distribution differ in the gzip header only, and a digest of the content accepts every faithful copy
# and nothing else. Computed from Debian's dataset-fashion-mnist, whose .gz files are the published
# ones with the gzip header's name field stripped and its time field replaced: restoring both (name,
# MTIME 2017-08-31 10:50:06/27 UTC) gives files of the published sizes and MD5s (8d4fb7e6...,
# 25c81989..., bef4ecab..., bb300cfd...), i.e. the same compressed stream. The published .gz files'
# SHA-256s are 3aede38d... (train-images), a04f1713... (train-labels), 346e55b9... (t10k-images) and
# 67da17c7... (t10k-labels).
FASHION_MNIST_SHA256 = {
    "train-images-idx3-ubyte.gz": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "train-labels-idx1-ubyte.gz": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "t10k-images-idx3-ubyte.gz": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "t10k-labels-idx1-ubyte.gz": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}


@dataclass(frozen=True)
class RemoteFile:
    """One file of a dataset, fetched from ``urls``. An archive (``top`` set) is kept beside the dataset
    folder and its ``top/`` folder extracted to ``DATASET/into`` ("" = the dataset folder itself); any
    other file is stored in the dataset folder. ``checksum`` None: no checksum is known with certainty,
    so the archive's own integrity checks (zip CRCs, gzip CRC) and the dataset's layout are verified."""

    urls: Tuple[str, ...]
    filename: str
    checksum: Optional[Checksum]
    top: Optional[str] = None
    into: str = ""


@dataclass(frozen=True)
class DatasetDownload:
    folder: str                      # the dataset folder's name under DATA_DIR (what --data-root points to)
    files: Tuple[RemoteFile, ...]


# CaltechDATA record 65de6-vp158 (the official location); MD5 as published with the record and used by
# torchvision-style loaders.
CUB200_DOWNLOAD = DatasetDownload("CUB_200_2011", (
    RemoteFile(("https://data.caltech.edu/records/65de6-vp158/files/CUB_200_2011.tgz?download=1",),
               "CUB_200_2011.tgz", Checksum("md5", "97eceeb196236b17998738112f37df78"), top="CUB_200_2011"),))
# Stanford's car196 files (Krause et al.); MD5s as published by the loaders that download these same files
# (Stanford publishes none).
CARS196_DOWNLOAD = DatasetDownload("cars196", (
    RemoteFile(("https://ai.stanford.edu/~jkrause/car196/car_ims.tgz",), "car_ims.tgz",
               Checksum("md5", "d5c8f0aa497503f355e17dc7886c3f14"), top="car_ims", into="car_ims"),
    RemoteFile(("https://ai.stanford.edu/~jkrause/car196/cars_annos.mat",), "cars_annos.mat",
               Checksum("md5", "b407c6086d669747186bd1d764ff9dbc"))))
# The copy the authors' README (github.com/rksltnl/Deep-Metric-Learning-CVPR16) links since their FTP server
# went away. Checksum unknown: the MD5 cited for the FTP copy may not match this one, so the zip's CRCs and
# the layout (Ebay_train.txt / Ebay_test.txt) are checked instead.
SOP_DOWNLOAD = DatasetDownload("Stanford_Online_Products", (
    RemoteFile(("https://drive.usercontent.google.com/download?id=1TclrpQOF_ullUP99wk_gjGN8pKvtErG8"
                "&export=download&confirm=t",), "Stanford_Online_Products.zip", None,
               top="Stanford_Online_Products"),))


def local_path(file: RemoteFile, dataset_folder: Path) -> Path:
    """Where ``file`` is stored for the dataset in ``dataset_folder`` (archives beside it, others inside)."""
    return (dataset_folder.parent if file.top else dataset_folder) / file.filename


_IDX_FILES = ("train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte "
              "(each optionally .gz)")


def by_hand(name: str, download: DatasetDownload) -> str:
    """How to get a downloadable dataset, also offline."""
    folder = DATA_DIR / download.folder
    files = " and ".join(f"{file.urls[0]} to {local_path(file, folder)}" for file in download.files)
    return (f"`robustdml data {name}` downloads and extracts it into {folder}; offline, download {files} on a "
            f"machine with internet and run `robustdml data {name}` again to check and extract it")


FASHION_MNIST_SOURCE = (
    "Fashion-MNIST: `sudo apt-get install dataset-fashion-mnist` (Debian/Ubuntu, installs "
    f"/usr/share/datasets/fashion-mnist), or `robustdml data fashion-mnist` to download it from "
    f"{FASHION_MNIST_URL} into {DATA_DIR / 'fashion-mnist'} (offline: put the four .gz files there by hand), "
    f"or pass --data-root FOLDER holding {_IDX_FILES}.")
MNIST_IDX_SOURCE = (
    f"mnist-idx: pass --data-root FOLDER holding MNIST-format idx files named {_IDX_FILES}, e.g. MNIST "
    "from https://yann.lecun.com/exdb/mnist/ or KMNIST from https://github.com/rois-codh/kmnist.")
SYNTHETIC_SOURCE = "synthetic-gaussian is generated on the fly; there is nothing to download."
CUB200_SOURCE = (
    "CUB-200-2011 (https://data.caltech.edu/records/65de6-vp158): " + by_hand("cub200", CUB200_DOWNLOAD)
    + "; or pass --data-root .../CUB_200_2011 (the folder holding images.txt, image_class_labels.txt and "
    "images/).")
CARS196_SOURCE = (
    "CARS196 (https://ai.stanford.edu/~jkrause/cars/car_dataset.html): " + by_hand("cars196", CARS196_DOWNLOAD)
    + "; or pass --data-root FOLDER holding cars_annos.mat and car_ims/.")
SOP_SOURCE = (
    "Stanford Online Products (https://cvgl.stanford.edu/projects/lifted_struct/): " + by_hand("sop", SOP_DOWNLOAD)
    + "; or pass --data-root .../Stanford_Online_Products (the folder holding Ebay_train.txt, Ebay_test.txt "
    "and the <category>_final/ image folders).")
IMAGE_FOLDER_SOURCE = (
    "image-folder: pass --data-root ROOT holding one sub-folder of images per class (ROOT/<class>/*.jpg; "
    "the first half of the classes train, the second half test), or with zero_shot=False "
    "ROOT/train/<class>/* and ROOT/test/<class>/*.")
