"""The dataset contract, subsets, the synthetic set, splits and the registry."""

import numpy as np
import pytest
import torch

from robustdml.data import (DATASETS, TensorRetrievalDataset, build_dataset, dataset_options, limit_per_class,
                            stratified_fraction, subset, validation_split, zero_shot_split)
from robustdml.data.base import movable_to_device
from robustdml.registry import UnknownNameError


def tiny(n_per_class=(10, 6, 4, 1), shape=(1, 4, 4), seed=0) -> TensorRetrievalDataset:
    generator = torch.Generator().manual_seed(seed)
    labels = np.repeat(np.arange(len(n_per_class)), n_per_class)
    images = torch.randint(0, 256, (len(labels), *shape), dtype=torch.uint8, generator=generator)
    return TensorRetrievalDataset(images, labels, name="tiny")


def test_tensor_dataset_follows_the_contract():
    data = tiny()
    assert len(data) == 21 and data.num_classes == 4 and data.image_shape == (1, 4, 4) and data.name == "tiny"
    assert data.labels.dtype == np.int64
    image, label = data[12]
    assert image.dtype == torch.float32 and image.shape == (1, 4, 4) and isinstance(label, int) and label == 1
    assert torch.equal(image, data.images[12].float() / 255)
    for indices in ([12, 0], np.array([12, 0]), torch.tensor([12, 0])):
        images, labels = data.get_batch(indices)
        assert images.shape == (2, 1, 4, 4) and labels.dtype == torch.long and labels.tolist() == [1, 0]
        assert torch.equal(images[0], image)
    with pytest.raises(IndexError, match="out of range for 21"):
        data.get_batch([21])
    with pytest.raises(ValueError, match="3 images but 2 labels"):
        TensorRetrievalDataset(torch.zeros(3, 2, dtype=torch.uint8), [0, 1], name="x")


def test_subset_keeps_the_contract_and_flattens_chains():
    data = tiny()
    part = subset(data, [0, 11, 12, 20])
    assert len(part) == 4 and part.labels.tolist() == [0, 1, 1, 3] and part.num_classes == 3
    assert part.image_shape == data.image_shape and part.name == "tiny"
    images, labels = part.get_batch(torch.tensor([3, 1]))
    assert labels.tolist() == [3, 1] and torch.equal(images[0], data[20][0])
    assert torch.equal(part[1][0], data[11][0])
    inner = subset(part, [1, 3])
    assert inner.parent is data and inner.indices.tolist() == [11, 20]
    assert torch.equal(inner.get_batch([1])[0][0], data[20][0])
    with pytest.raises(IndexError):
        subset(data, [99])


DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", DEVICES)
def test_device_copy_gives_the_same_batches_there_and_leaves_the_original(device):
    data = tiny()
    part = subset(subset(data, [0, 11, 12, 20]), [3, 1, 2])
    assert movable_to_device(part) and part.nbytes == data.images.numel()
    moved = part.on_device(device)
    images, labels = moved.get_batch([0, 2])
    assert images.device.type == labels.device.type == device and moved.parent.images.dtype == torch.uint8
    expected_images, expected_labels = part.get_batch([0, 2])
    assert torch.equal(images.cpu(), expected_images) and torch.equal(labels.cpu(), expected_labels)
    assert part.parent is data and data.images.device.type == "cpu"


def test_subset_of_a_lazy_dataset_has_no_get_batch():
    class Lazy(torch.utils.data.Dataset):
        labels = np.array([0, 1, 1])
        image_shape = (2,)
        name = "lazy"

        def __len__(self):
            return 3

        def __getitem__(self, i):
            return torch.full((2,), float(i)), int(self.labels[i])

    part = subset(Lazy(), [2])
    assert not hasattr(part, "get_batch") and part[0][0].tolist() == [2.0, 2.0]
    assert not movable_to_device(part)


def test_synthetic_gaussian_matches_appendix_e_and_is_seeded():
    train = build_dataset("synthetic-gaussian", "train", dim=3, samples_per_class=400, seed=5)
    assert len(train) == 800 and train.image_shape == (3,) and train.num_classes == 2
    points = train.get_batch(np.arange(800))[0]
    assert 0 <= points.min() and points.max() <= 1
    for label, mean in ((0, 0.25), (1, 0.75)):
        cls = points[torch.from_numpy(train.labels == label)]
        assert torch.allclose(cls.mean(0), torch.full((3,), mean), atol=0.01)
        assert torch.allclose(cls.std(0), torch.full((3,), 0.025), atol=0.005)
    again = build_dataset("synthetic-gaussian", "train", dim=3, samples_per_class=400, seed=5)
    assert torch.equal(train.images, again.images)
    test = build_dataset("synthetic-gaussian", "test", dim=3, samples_per_class=400, seed=5)
    other_seed = build_dataset("synthetic-gaussian", "train", dim=3, samples_per_class=400, seed=6)
    assert not torch.equal(train.images, test.images) and not torch.equal(train.images, other_seed.images)
    default = build_dataset("synthetic-gaussian", "test")
    assert len(default) == 1000 and default.image_shape == (2,)


def test_registry_and_build_dataset_reject_bad_input():
    assert {"fashion-mnist", "mnist-idx", "synthetic-gaussian", "cub200", "cars196", "sop",
            "image-folder"} <= set(DATASETS.names())
    with pytest.raises(UnknownNameError, match="valid dataset names"):
        build_dataset("imagenet", "train")
    with pytest.raises(ValueError, match="split must be one of"):
        build_dataset("synthetic-gaussian", "val")
    with pytest.raises(ValueError, match="no option.*image_size; its options: dim"):
        build_dataset("synthetic-gaussian", "train", image_size=64)
    assert dataset_options("cub200") == {"image_size": 224}
    assert dataset_options("fashion-mnist") == {}


def test_zero_shot_split_gives_first_half_of_classes_to_train():
    labels = np.array([5, 1, 2, 4, 3, 6, 1, 6])
    train, test = zero_shot_split(labels)
    assert set(labels[train]) == {1, 2, 3} and set(labels[test]) == {4, 5, 6}
    assert sorted(np.concatenate([train, test]).tolist()) == list(range(8))
    with pytest.raises(ValueError, match="at least 2 classes"):
        zero_shot_split([1, 1])


def test_validation_split_by_samples_is_stratified_disjoint_and_seeded():
    data = tiny((20, 10, 10, 1))
    train, val = validation_split(data, 0.2, seed=3)
    assert not set(train.indices) & set(val.indices)
    assert len(train) + len(val) == len(data)
    assert np.bincount(val.labels, minlength=4).tolist() == [4, 2, 2, 0]  # the 1-item class stays in train
    again_train, again_val = validation_split(data, 0.2, seed=3)
    assert np.array_equal(val.indices, again_val.indices)
    assert not np.array_equal(val.indices, validation_split(data, 0.2, seed=4)[1].indices)
    with pytest.raises(ValueError, match=r"\(0, 1\)"):
        validation_split(data, 1.0)
    with pytest.raises(ValueError, match="by must be"):
        validation_split(data, 0.2, by="rows")


def test_validation_split_by_classes_holds_out_whole_classes():
    data = tiny((3,) * 10)
    train, val = validation_split(data, 0.3, seed=0, by="classes")
    assert val.num_classes == 3 and train.num_classes == 7
    assert not set(train.labels) & set(val.labels)
    assert len(train) + len(val) == 30


def test_stratified_fraction_and_limit_per_class():
    data = tiny((20, 10, 4, 1))
    part = stratified_fraction(data, 0.5, seed=1)
    assert np.bincount(part.labels).tolist() == [10, 5, 2, 1]
    assert np.array_equal(part.indices, stratified_fraction(data, 0.5, seed=1).indices)
    assert len(stratified_fraction(data, 1.0)) == len(data)
    limited = limit_per_class(data, 3, seed=1)
    assert np.bincount(limited.labels).tolist() == [3, 3, 3, 1]
    assert set(limited.indices) <= set(range(len(data)))
    with pytest.raises(ValueError, match="train fraction"):
        stratified_fraction(data, 0)
    with pytest.raises(ValueError, match="per-class limit"):
        limit_per_class(data, 0)
