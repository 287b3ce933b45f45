"""CUB-200-2011, CARS196, SOP and image folders from tiny fake trees in their standard layouts."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from robustdml.data import DatasetNotFoundError, build_dataset
from robustdml.data.images import AnnotationError, CorruptImageError
from robustdml.data.transforms import evaluation_transform, training_transform

SIZE = 32  # small image_size keeps the tests fast


def save_image(path: Path, class_id: int, size=(40, 30)) -> Path:
    """A flat-colour image whose red channel encodes its class (10 * id mod 250), so tests can check which
    image they got."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color=((class_id * 10) % 250, 100, 200)).save(path)
    return path


def make_cub(root: Path, classes=4, per_class=2) -> Path:
    images, labels, image_id = [], [], 0
    for c in range(1, classes + 1):
        for k in range(per_class):
            image_id += 1
            relative = f"{c:03d}.Bird_{c}/Bird_{c}_{k}.jpg"
            save_image(root / "images" / relative, c)
            images.append(f"{image_id} {relative}")
            labels.append(f"{image_id} {c}")
    (root / "images.txt").write_text("\n".join(images) + "\n")
    (root / "image_class_labels.txt").write_text("\n".join(labels) + "\n")
    return root


def make_cars(root: Path, classes=6, per_class=2) -> Path:
    from scipy.io import savemat

    dtype = [("relative_im_path", "O"), ("class", "O"), ("test", "O")]
    entries, index = [], 0
    for c in range(1, classes + 1):
        for _ in range(per_class):
            index += 1
            relative = f"car_ims/{index:06d}.jpg"
            save_image(root / relative, c)
            entries.append((relative, np.array([[c]], dtype=np.uint8), np.array([[index % 2]], dtype=np.uint8)))
    annotations = np.array([entries], dtype=dtype)
    savemat(str(root / "cars_annos.mat"), {"annotations": annotations})
    return root


def make_sop(root: Path) -> Path:
    rows = {"train": [(1, 11, 1), (2, 11, 1), (3, 12, 1), (4, 12, 1)],
            "test": [(5, 21, 2), (6, 21, 2), (7, 25, 2), (8, 25, 2), (9, 30, 2)]}
    for split, items in rows.items():
        lines = ["image_id class_id super_class_id path"]
        for image_id, class_id, super_id in items:
            relative = f"bicycle_final/{class_id}_{image_id}.JPG"
            save_image(root / relative, class_id)
            lines.append(f"{image_id} {class_id} {super_id} {relative}")
        (root / f"Ebay_{split}.txt").write_text("\n".join(lines) + "\n")
    return root


def red(image: torch.Tensor) -> int:
    return int(round(float(image[0].mean()) * 255))


def test_cub200_zero_shot_split_and_lazy_loading(tmp_path):
    root = make_cub(tmp_path / "CUB_200_2011")
    train = build_dataset("cub200", "train", root=str(root), image_size=SIZE)
    test = build_dataset("cub200", "test", root=str(root), image_size=SIZE)
    assert len(train) == 4 and len(test) == 4
    assert train.labels.tolist() == [0, 0, 1, 1] and test.labels.tolist() == [0, 0, 1, 1]
    assert train.num_classes == 2 and train.image_shape == (3, SIZE, SIZE)
    assert test.original_labels.tolist() == [3, 4]  # classes 3-4 of 4 are the test half
    image, label = test[2]
    assert image.shape == (3, SIZE, SIZE) and image.dtype == torch.float32 and label == 1
    assert 0 <= image.min() and image.max() <= 1
    assert red(image) == 40  # class 4's image


def test_cars196_reads_cars_annos_mat(tmp_path):
    root = make_cars(tmp_path / "cars")
    train = build_dataset("cars196", "train", root=str(root), image_size=SIZE)
    test = build_dataset("cars196", "test", root=str(root), image_size=SIZE)
    assert train.original_labels.tolist() == [1, 2, 3] and test.original_labels.tolist() == [4, 5, 6]
    assert len(train) == len(test) == 6 and test.labels.tolist() == [0, 0, 1, 1, 2, 2]
    assert red(test[5][0]) == 60 and red(train[0][0]) == 10


def test_sop_uses_the_ebay_listings_and_remaps_labels(tmp_path):
    root = make_sop(tmp_path / "Stanford_Online_Products")
    train = build_dataset("sop", "train", root=str(root), image_size=SIZE)
    test = build_dataset("sop", "test", root=str(root), image_size=SIZE)
    assert train.labels.tolist() == [0, 0, 1, 1] and test.labels.tolist() == [0, 0, 1, 1, 2]
    assert test.original_labels.tolist() == [21, 25, 30]
    assert red(test[4][0]) == 50  # class 30
    assert red(train[2][0]) == 120


def test_image_folder_zero_shot_and_explicit_split(tmp_path):
    for name, c in (("ant", 1), ("bee", 2), ("cat", 3), ("dog", 4)):
        save_image(tmp_path / "flat" / name / "a.png", c)
        save_image(tmp_path / "flat" / name / "b.jpg", c)
        save_image(tmp_path / "split" / "train" / name / "a.png", c)
    (tmp_path / "flat" / "ant" / "notes.txt").write_text("not an image")
    save_image(tmp_path / "split" / "test" / "eel" / "a.png", 5)
    train = build_dataset("image-folder", "train", root=str(tmp_path / "flat"), image_size=SIZE)
    test = build_dataset("image-folder", "test", root=str(tmp_path / "flat"), image_size=SIZE)
    assert train.class_names == ["ant", "bee"] and test.class_names == ["cat", "dog"]
    assert len(train) == len(test) == 4
    explicit = build_dataset("image-folder", "test", root=str(tmp_path / "split"), image_size=SIZE, zero_shot=False)
    assert explicit.class_names == ["eel"] and len(explicit) == 1 and red(explicit[0][0]) == 50
    assert len(build_dataset("image-folder", "train", root=str(tmp_path / "split"), zero_shot=False)) == 4


def test_corrupt_and_missing_images_are_named(tmp_path):
    root = make_cub(tmp_path / "cub")
    bad = root / "images" / "004.Bird_4" / "Bird_4_1.jpg"
    bad.write_bytes(bad.read_bytes()[:40])  # truncated JPEG
    test = build_dataset("cub200", "test", root=str(root), image_size=SIZE)
    with pytest.raises(CorruptImageError, match="Bird_4_1.jpg"):
        test[3]
    bad.unlink()
    with pytest.raises(FileNotFoundError, match="Bird_4_1.jpg"):
        test[3]


def test_missing_datasets_say_where_they_looked_and_where_to_get_them(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # without --data-root, ./data/<dataset> is where they are looked for
    for name, needle in (("cub200", "data.caltech.edu"), ("cars196", "jkrause/cars"), ("sop", "lifted_struct")):
        with pytest.raises(DatasetNotFoundError, match=needle):
            build_dataset(name, "train")
        with pytest.raises(DatasetNotFoundError, match="robustdml data"):
            build_dataset(name, "train")
        with pytest.raises(DatasetNotFoundError) as error:
            build_dataset(name, "train", root=str(tmp_path / "nowhere"))
        assert str(tmp_path / "nowhere") in str(error.value) and needle in str(error.value)
    with pytest.raises(DatasetNotFoundError, match="1 class"):
        save_image(tmp_path / "one" / "only" / "a.png", 1)
        build_dataset("image-folder", "train", root=str(tmp_path / "one"))


def test_malformed_annotations_name_file_and_line(tmp_path):
    root = make_cub(tmp_path / "cub")
    (root / "image_class_labels.txt").write_text("1 1\n2\n")
    with pytest.raises(AnnotationError, match=r"image_class_labels.txt, line 2"):
        build_dataset("cub200", "train", root=str(root))
    (tmp_path / "cars" / "car_ims").mkdir(parents=True)
    (tmp_path / "cars" / "cars_annos.mat").write_bytes(b"not a mat file")
    with pytest.raises(AnnotationError, match="cars_annos.mat"):
        build_dataset("cars196", "train", root=str(tmp_path / "cars"))


def test_transforms_keep_pixels_in_unit_range_without_normalisation():
    image = Image.new("RGB", (300, 250), color=(255, 0, 128))
    torch.manual_seed(0)
    train = training_transform(224)(image)
    test = evaluation_transform(224)(image)
    assert train.shape == test.shape == (3, 224, 224)
    assert torch.allclose(test[:, 0, 0], torch.tensor([1.0, 0.0, 128 / 255]), atol=1e-6)  # not normalised
    resize = evaluation_transform(28).transforms[0]
    assert resize.size == int(28 * 256 / 224)
    assert training_transform(224).transforms[0].scale == (0.6, 1.0)
    with pytest.raises(ValueError, match="image_size"):
        evaluation_transform(0)
