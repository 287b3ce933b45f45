"""Where each dataset comes from and how it must be laid out on disk.

One place for the text that error messages and ``robustdml data NAME`` print, so that a missing
dataset always says the same, complete thing: the official URL and the expected layout.
"""

from __future__ import annotations

FASHION_MNIST_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"

SOURCES = {
    "fashion-mnist": (
        f"Fashion-MNIST: `sudo apt-get install dataset-fashion-mnist` (Debian/Ubuntu, installs "
        f"/usr/share/datasets/fashion-mnist), or `robustdml data fashion-mnist` to download it from "
        f"{FASHION_MNIST_URL} into ./data/fashion-mnist, or pass --data-root FOLDER holding "
        "train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte "
        "(each optionally .gz)."),
    "mnist-idx": (
        "mnist-idx: pass --data-root FOLDER holding MNIST-format idx files named "
        "train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte "
        "(each optionally .gz), e.g. MNIST from https://yann.lecun.com/exdb/mnist/ or KMNIST from "
        "https://github.com/rois-codh/kmnist."),
    "synthetic-gaussian": "synthetic-gaussian is generated on the fly; there is nothing to download.",
    "cub200": (
        "CUB-200-2011: download CUB_200_2011.tgz from https://data.caltech.edu/records/65de6-vp158 , "
        "extract it and pass --data-root .../CUB_200_2011 (the folder holding images.txt, "
        "image_class_labels.txt and images/)."),
    "cars196": (
        "CARS196: download car_ims.tgz and cars_annos.mat from "
        "https://ai.stanford.edu/~jkrause/cars/car_dataset.html (mirrors: search 'Stanford Cars car_ims.tgz'), "
        "extract car_ims.tgz next to cars_annos.mat and pass --data-root FOLDER (holding cars_annos.mat and "
        "car_ims/)."),
    "sop": (
        "Stanford Online Products: download Stanford_Online_Products.zip from "
        "https://cvgl.stanford.edu/projects/lifted_struct/ , extract it and pass --data-root "
        ".../Stanford_Online_Products (the folder holding Ebay_train.txt, Ebay_test.txt and the "
        "<category>_final/ image folders)."),
    "image-folder": (
        "image-folder: pass --data-root ROOT holding one sub-folder of images per class (ROOT/<class>/*.jpg; "
        "the first half of the classes train, the second half test), or with zero_shot=False "
        "ROOT/train/<class>/* and ROOT/test/<class>/*."),
}


def how_to_get(name: str) -> str:
    return SOURCES.get(name, f"{name}: no instructions known")
