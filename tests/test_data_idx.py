"""idx parsing, Fashion-MNIST / mnist-idx loading, the download path (never the network) and fetch."""

import gzip
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from robustdml.data import DatasetNotFoundError, IdxFormatError, build_dataset, fetch, read_idx
from robustdml.data import download as download_module
from robustdml.data import mnist, sources
from robustdml.data.download import DownloadError
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
    assert mnist.fashion_mnist_search_path("x") == [Path("x")]
    assert mnist.fashion_mnist_search_path(None) == [Path("data/fashion-mnist"), Path("/usr/share/datasets/fashion-mnist")]


def test_missing_fashion_mnist_lists_every_place_and_every_remedy(tmp_path, monkeypatch):
    monkeypatch.setattr(mnist, "DEBIAN_FASHION_MNIST", tmp_path / "debian")
    monkeypatch.setattr(mnist, "LOCAL_FASHION_MNIST", tmp_path / "local")
    with pytest.raises(DatasetNotFoundError) as error:
        build_dataset("fashion-mnist", "train")
    message = str(error.value)
    assert isinstance(error.value, FileNotFoundError)
    for expected in ("local", "debian", "apt-get install dataset-fashion-mnist", "robustdml data fashion-mnist",
                     "--data-root", FASHION_MNIST_URL):
        assert expected in message


@pytest.mark.parametrize("layout", ["missing", "empty", "train split only"])
def test_data_root_is_the_only_source_and_names_what_is_missing(tmp_path, monkeypatch, layout):
    """What we found: `--data-root` that does not exist, is empty, or lacks the test files silently used the
    system copy instead. Now the given root is the only source, and the error names what is missing."""
    make_idx_folder(tmp_path / "system", gz=True)  # a complete copy elsewhere must not be used
    monkeypatch.setattr(mnist, "DEBIAN_FASHION_MNIST", tmp_path / "system")
    root = tmp_path / "mine"
    if layout != "missing":
        root.mkdir()
    if layout == "train split only":
        make_idx_folder(root, gz=True)
        for stem in FILES["test"]:
            (root / f"{stem}.gz").unlink()
    for split in ("train", "test"):
        with pytest.raises(DatasetNotFoundError) as error:
            build_dataset("fashion-mnist", split, root=str(root))
        message = str(error.value)
        assert str(root) in message and "t10k-images-idx3-ubyte" in message
        assert ("does not exist" in message) == (layout == "missing")
        if layout == "train split only":
            assert "train-images" not in message.split("has no")[1].split(".")[0]


def test_without_a_root_both_splits_come_from_one_complete_folder(tmp_path, monkeypatch):
    """What we found: training could mix the train split of one folder with the test split of another."""
    make_idx_folder(tmp_path / "system", gz=True, n_test=12)
    local = tmp_path / "local"
    make_idx_folder(local, gz=True, n_train=40)
    for stem in FILES["test"]:
        (local / f"{stem}.gz").unlink()
    monkeypatch.setattr(mnist, "DEBIAN_FASHION_MNIST", tmp_path / "system")
    monkeypatch.setattr(mnist, "LOCAL_FASHION_MNIST", local)
    for split in ("train", "test"):
        with pytest.raises(DatasetNotFoundError, match="incomplete.*t10k-images"):
            build_dataset("fashion-mnist", split)
    for stem in FILES["train"]:
        (local / f"{stem}.gz").unlink()  # an empty folder (e.g. left by a failed download) is skipped
    assert len(build_dataset("fashion-mnist", "test")) == 12 and len(build_dataset("fashion-mnist", "train")) == 30


def _serve(folder: Path, written_root: Path) -> dict:
    """Copy the four .gz files of ``written_root`` into the served folder; their content SHA-256s."""
    import hashlib
    import shutil

    digests = {}
    for stems in FILES.values():
        for stem in stems:
            shutil.copy(written_root / f"{stem}.gz", folder / f"{stem}.gz")
            digests[f"{stem}.gz"] = hashlib.sha256(gzip.decompress((folder / f"{stem}.gz").read_bytes())).hexdigest()
    return digests


def test_download_checks_every_file_against_its_checksum_and_keeps_valid_files(tmp_path, file_server):
    folder, url, requested = file_server
    written = make_idx_folder(tmp_path / "fake", gz=True)
    digests = _serve(folder, tmp_path / "fake")
    target = mnist.download_fashion_mnist(tmp_path / "dest", mirrors=[url], checksums=digests, progress=False)
    assert sorted(requested) == sorted(f"/{name}" for name in digests)
    assert sorted(p.name for p in target.iterdir()) == sorted(digests)
    assert np.array_equal(build_dataset("mnist-idx", "train", root=str(target)).labels, written["train"][1])
    requested.clear()  # a second call finds the files with the right content and downloads nothing
    mnist.download_fashion_mnist(tmp_path / "dest", mirrors=[url], checksums=digests, progress=False)
    assert requested == []


def test_a_failing_mirror_falls_back_to_the_next(tmp_path, file_server, offline_url):
    folder, url, _ = file_server
    make_idx_folder(tmp_path / "fake", gz=True)
    digests = _serve(folder, tmp_path / "fake")
    mnist.download_fashion_mnist(tmp_path / "dest", mirrors=[offline_url, url], checksums=digests, progress=False)
    assert len(list((tmp_path / "dest").iterdir())) == 4


def test_a_download_with_the_wrong_checksum_is_not_kept(tmp_path, file_server):
    """What we found: downloads used plain http with no checksum."""
    folder, url, _ = file_server
    make_idx_folder(tmp_path / "fake", gz=True)
    digests = _serve(folder, tmp_path / "fake")
    write_idx(folder / "t10k-labels-idx1-ubyte.gz", np.arange(20, dtype=np.uint8))  # valid idx, other content
    with pytest.raises(DownloadError, match="t10k-labels-idx1-ubyte.gz.*SHA256.*expected"):
        mnist.download_fashion_mnist(tmp_path / "bad", mirrors=[url], checksums=digests, progress=False)
    names = [p.name for p in (tmp_path / "bad").iterdir()]
    assert "t10k-labels-idx1-ubyte.gz" not in names and not any(".part" in n for n in names)


def test_download_sources_are_https_and_pinned():
    assert all(mirror.startswith("https://") for mirror in sources.FASHION_MNIST_MIRRORS)
    assert sorted(sources.FASHION_MNIST_SHA256) == sorted(f"{s}.gz" for pair in FILES.values() for s in pair)
    from robustdml.data.entries import DATASETS

    for download in (DATASETS.get(name).download for name in DATASETS.names() if DATASETS.get(name).download):
        assert all(url.startswith("https://") for file in download.files for url in file.urls)
    with pytest.raises(ValueError, match="plain http without a checksum"):
        download_module.download(["http://example.org/x.tgz"], Path("x.tgz"))


@pytest.mark.skipif(not (mnist.DEBIAN_FASHION_MNIST / "t10k-labels-idx1-ubyte.gz").is_file(),
                    reason="needs Debian's dataset-fashion-mnist")
def test_the_pinned_checksums_match_the_real_fashion_mnist():
    mnist.verify_fashion_mnist(mnist.DEBIAN_FASHION_MNIST)


def test_fetch_downloads_fashion_mnist_when_nowhere_on_disk(tmp_path, monkeypatch, file_server):
    folder, url, _ = file_server
    make_idx_folder(tmp_path / "fake", gz=True)
    monkeypatch.setattr(mnist, "FASHION_MNIST_SHA256", _serve(folder, tmp_path / "fake"))
    monkeypatch.setattr(mnist, "FASHION_MNIST_MIRRORS", (url,))
    monkeypatch.setattr(mnist, "DEBIAN_FASHION_MNIST", tmp_path / "debian")
    monkeypatch.setattr(mnist, "LOCAL_FASHION_MNIST", tmp_path / "local")
    messages = []
    assert not fetch("fashion-mnist", report=messages.append, allow_download=False)
    assert "not found" in messages[-1]
    assert fetch("fashion-mnist", root=str(tmp_path / "new"), report=messages.append)
    assert "downloaded" in messages[-1] and len(list((tmp_path / "new").iterdir())) == 4
    assert fetch("fashion-mnist", root=str(tmp_path / "new"), report=messages.append)
    assert "found" in messages[-1] and "checksums verified" in messages[-1]


def test_offline_data_command_fails_with_one_line_saying_where_to_put_the_files(tmp_path, monkeypatch, capsys,
                                                                                offline_url):
    """What we found: offline `robustdml data fashion-mnist` ended in an OSError traceback."""
    from robustdml.cli import main

    monkeypatch.setattr(mnist, "FASHION_MNIST_MIRRORS", (offline_url,))
    monkeypatch.setattr(mnist, "DEBIAN_FASHION_MNIST", tmp_path / "debian")
    monkeypatch.setattr(mnist, "LOCAL_FASHION_MNIST", tmp_path / "local")
    assert main(["data", "fashion-mnist"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: could not download")
    assert "Offline? Put train-images-idx3-ubyte.gz into" in err and str(tmp_path / "local") in err


def test_fetch_explains_where_to_get_datasets_without_downloading(tmp_path):
    messages = []
    assert not fetch("cub200", root=str(tmp_path / "cub"), report=messages.append, allow_download=False)
    assert "data.caltech.edu" in messages[-1] and "images.txt" in messages[-1]
    assert not fetch("sop", root=str(tmp_path), report=messages.append, allow_download=False)
    assert "Ebay_train.txt" in messages[-1] and "cvgl.stanford.edu" in messages[-1]
    assert not fetch("cars196", root=str(tmp_path / "cars"), report=messages.append, allow_download=False)
    assert "cars_annos.mat" in messages[-1]
    assert not fetch("image-folder", report=messages.append)
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
