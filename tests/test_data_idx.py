"""idx parsing, Fashion-MNIST / mnist-idx loading, the download path (never the network) and fetch."""

import gzip
import io
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch

from robustdml.data import DatasetNotFoundError, IdxFormatError, build_dataset, fetch, read_idx
from robustdml.data import mnist
from robustdml.data.idx import FILES
from robustdml.data.sources import FASHION_MNIST_URL


def idx_bytes(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(s).to_bytes(4, "big") for s in array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_idx(path: Path, array: np.ndarray) -> Path:
    data = idx_bytes(array)
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    return path


def make_idx_folder(folder: Path, gz: bool, n_train: int = 30, n_test: int = 20, seed: int = 0) -> dict:
    """A tiny MNIST-format folder; returns the arrays written, per split."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    written = {}
    for split, n in (("train", n_train), ("test", n_test)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = np.arange(n, dtype=np.uint8) % 10
        image_stem, label_stem = FILES[split]
        suffix = ".gz" if gz else ""
        write_idx(folder / f"{image_stem}{suffix}", images)
        write_idx(folder / f"{label_stem}{suffix}", labels)
        written[split] = (images, labels)
    return written


@pytest.mark.parametrize("gz", [True, False])
def test_mnist_idx_loads_gz_and_plain_files_exactly(tmp_path, gz):
    written = make_idx_folder(tmp_path / "kmnist", gz=gz)
    for split in ("train", "test"):
        data = build_dataset("mnist-idx", split, root=str(tmp_path / "kmnist"))
        images, labels = written[split]
        assert len(data) == len(labels) and data.image_shape == (1, 28, 28)
        assert data.labels.dtype == np.int64 and np.array_equal(data.labels, labels)
        batch, batch_labels = data.get_batch(np.array([0, 3]))
        assert batch.dtype == torch.float32 and batch.shape == (2, 1, 28, 28)
        assert torch.allclose(batch[1, 0], torch.from_numpy(images[3]).float() / 255)
        assert batch_labels.tolist() == [int(labels[0]), int(labels[3])]


def test_read_idx_rejects_bad_magic_truncation_and_wrong_dimensions(tmp_path):
    good = idx_bytes(np.zeros((4, 3, 3), dtype=np.uint8))
    (tmp_path / "magic").write_bytes(b"\x01\x02" + good[2:])
    with pytest.raises(IdxFormatError, match="magic") as error:
        read_idx(tmp_path / "magic")
    assert "magic" in str(error.value) and str(tmp_path / "magic") in str(error.value)

    (tmp_path / "short").write_bytes(good[:-5])
    with pytest.raises(IdxFormatError, match="truncated") as error:
        read_idx(tmp_path / "short")
    assert str(tmp_path / "short") in str(error.value)

    (tmp_path / "long").write_bytes(good + b"\0")
    with pytest.raises(IdxFormatError, match="longer"):
        read_idx(tmp_path / "long")

    (tmp_path / "cut.gz").write_bytes(gzip.compress(good)[:-10])
    with pytest.raises(IdxFormatError, match="cut.gz"):
        read_idx(tmp_path / "cut.gz")

    (tmp_path / "good").write_bytes(good)
    assert read_idx(tmp_path / "good").shape == (4, 3, 3)
    with pytest.raises(IdxFormatError, match="expected 1 dimension"):
        read_idx(tmp_path / "good", expected_ndim=1)


def test_mnist_idx_errors_name_the_bad_file_or_missing_folder(tmp_path):
    make_idx_folder(tmp_path, gz=False)
    labels_file = tmp_path / FILES["test"][1]
    labels_file.write_bytes(labels_file.read_bytes()[:-3])
    with pytest.raises(IdxFormatError, match=FILES["test"][1]):
        build_dataset("mnist-idx", "test", root=str(tmp_path))
    write_idx(labels_file, np.zeros(7, dtype=np.uint8))  # 20 images, 7 labels
    with pytest.raises(IdxFormatError, match="20 images.*7 labels"):
        build_dataset("mnist-idx", "test", root=str(tmp_path))
    with pytest.raises(DatasetNotFoundError, match="t10k-images-idx3-ubyte"):
        build_dataset("mnist-idx", "test", root=str(tmp_path / "empty"))
    with pytest.raises(DatasetNotFoundError, match="data-root"):
        build_dataset("mnist-idx", "test")


def test_fashion_mnist_search_order_prefers_the_explicit_root(tmp_path, monkeypatch):
    written = make_idx_folder(tmp_path / "mine", gz=True, n_test=12)
    data = build_dataset("fashion-mnist", "test", root=str(tmp_path / "mine"))
    assert len(data) == 12 and np.array_equal(data.labels, written["test"][1])
    assert mnist.fashion_mnist_search_path("x")[0] == Path("x")
    assert mnist.fashion_mnist_search_path(None) == [Path("data/fashion-mnist"), Path("/usr/share/datasets/fashion-mnist")]


def test_missing_fashion_mnist_lists_every_place_and_every_remedy(tmp_path, monkeypatch):
    monkeypatch.setattr(mnist, "DEBIAN_FASHION_MNIST", tmp_path / "debian")
    monkeypatch.setattr(mnist, "LOCAL_FASHION_MNIST", tmp_path / "local")
    with pytest.raises(DatasetNotFoundError) as error:
        build_dataset("fashion-mnist", "train", root=str(tmp_path / "given"))
    message = str(error.value)
    assert isinstance(error.value, FileNotFoundError)
    for expected in ("given", "local", "debian", "apt-get install dataset-fashion-mnist",
                     "robustdml data fashion-mnist", "--data-root", FASHION_MNIST_URL):
        assert expected in message


def _serve_from(folder: Path, requested: list):
    """A stand-in for urlopen that serves files of ``folder`` by their URL's last path component."""

    class Response(io.BytesIO):
        def __init__(self, data):
            super().__init__(data)
            self.headers = {"Content-Length": str(len(data))}

    def fake_urlopen(url, timeout=None):
        requested.append(url)
        return Response((folder / url.rsplit("/", 1)[1]).read_bytes())

    return fake_urlopen


def test_download_fetches_the_four_official_files_atomically(tmp_path, monkeypatch):
    written = make_idx_folder(tmp_path / "server", gz=True)
    requested = []
    monkeypatch.setattr(urllib.request, "urlopen", _serve_from(tmp_path / "server", requested))
    target = mnist.download_fashion_mnist(tmp_path / "dest")
    assert sorted(requested) == sorted(FASHION_MNIST_URL + f"{stem}.gz" for pair in FILES.values() for stem in pair)
    assert sorted(p.name for p in target.iterdir()) == sorted(f"{s}.gz" for pair in FILES.values() for s in pair)
    assert np.array_equal(build_dataset("mnist-idx", "train", root=str(target)).labels, written["train"][1])
    # A second call finds valid files and downloads nothing.
    requested.clear()
    mnist.download_fashion_mnist(tmp_path / "dest")
    assert requested == []


def test_download_from_a_file_url_and_a_corrupt_download_leaves_nothing_behind(tmp_path):
    make_idx_folder(tmp_path / "server", gz=True)
    mnist.download_fashion_mnist(tmp_path / "ok", base_url=(tmp_path / "server").as_uri())
    assert len(list((tmp_path / "ok").iterdir())) == 4

    broken = tmp_path / "server" / "t10k-labels-idx1-ubyte.gz"
    broken.write_bytes(broken.read_bytes()[:-4])
    with pytest.raises(IdxFormatError, match="t10k-labels-idx1-ubyte"):
        mnist.download_fashion_mnist(tmp_path / "bad", base_url=(tmp_path / "server").as_uri())
    names = [p.name for p in (tmp_path / "bad").iterdir()]
    assert "t10k-labels-idx1-ubyte.gz" not in names and not any(".part" in n for n in names)


def test_fetch_downloads_fashion_mnist_when_nowhere_on_disk(tmp_path, monkeypatch):
    make_idx_folder(tmp_path / "server", gz=True)
    monkeypatch.setattr(urllib.request, "urlopen", _serve_from(tmp_path / "server", []))
    monkeypatch.setattr(mnist, "DEBIAN_FASHION_MNIST", tmp_path / "debian")
    monkeypatch.setattr(mnist, "LOCAL_FASHION_MNIST", tmp_path / "local")
    messages = []
    assert fetch("fashion-mnist", root=str(tmp_path / "new"), report=messages.append)
    assert "downloaded" in messages[-1] and len(list((tmp_path / "new").iterdir())) == 4
    assert fetch("fashion-mnist", root=str(tmp_path / "new"), report=messages.append)
    assert "found" in messages[-1]


def test_fetch_explains_where_to_get_datasets_it_cannot_download(tmp_path):
    messages = []
    assert not fetch("cub200", report=messages.append)
    assert "data.caltech.edu" in messages[-1] and "images.txt" in messages[-1]
    assert not fetch("sop", root=str(tmp_path), report=messages.append)
    assert "Ebay_train.txt" in messages[-1] and "cvgl.stanford.edu" in messages[-1]
    assert not fetch("cars196", report=messages.append)
    assert "cars_annos.mat" in messages[-1]
    assert fetch("synthetic-gaussian", report=messages.append)


@pytest.mark.skipif(not any((p / "train-images-idx3-ubyte.gz").is_file() or (p / "train-images-idx3-ubyte").is_file()
                            for p in mnist.fashion_mnist_search_path(None)), reason="Fashion-MNIST not on disk")
def test_real_fashion_mnist_loads_fast_with_the_expected_shape():
    start = time.perf_counter()
    train = build_dataset("fashion-mnist", "train")
    elapsed = time.perf_counter() - start
    assert len(train) == 60000 and train.image_shape == (1, 28, 28) and train.num_classes == 10
    assert train.images.dtype == torch.uint8
    assert np.bincount(train.labels).tolist() == [6000] * 10
    images, _ = train.get_batch(torch.arange(256))
    assert 0.0 <= images.min() and images.max() <= 1.0 and images.max() > 0.9
    assert elapsed < 5.0, f"loading Fashion-MNIST took {elapsed:.1f}s"
