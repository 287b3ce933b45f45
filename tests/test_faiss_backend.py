"""faiss placement: GPU when faiss-gpu sees a device (routing checked here with a stand-in), CPU otherwise."""

import numpy as np
import pytest

from robustdml.evaluation import faiss_backend, knn, nmi
from robustdml.cli import main
from robustdml.evaluation.faiss_backend import GPU_MAX_K, FlatL2Index, faiss_gpu_count, set_placement, use_faiss_gpu


class RecordingIndex:
    """Stands in for a GPU mirror of a CPU index: same answers, but counts the searches it serves."""

    def __init__(self, cpu_index):
        self.cpu_index, self.searched_k = cpu_index, []

    def search(self, queries, k):
        self.searched_k.append(k)
        return self.cpu_index.search(queries, k)


@pytest.fixture(autouse=True)
def default_placement():
    yield
    set_placement("auto")


@pytest.fixture
def fake_gpu(monkeypatch):
    """Pretend faiss can use a GPU; every mirrored index is a RecordingIndex."""
    mirrors = []

    def to_gpu(index):
        mirrors.append(RecordingIndex(index))
        return mirrors[-1]

    monkeypatch.setattr(faiss_backend, "use_faiss_gpu", lambda: True)
    monkeypatch.setattr(faiss_backend, "_to_gpu", to_gpu)
    return mirrors


def test_cpu_faiss_stays_on_cpu():
    if faiss_gpu_count():
        pytest.skip("this machine's faiss can use a GPU")
    assert use_faiss_gpu() is False
    assert FlatL2Index(np.eye(3, dtype=np.float32)).on_gpu is False


def test_gpu_index_serves_searches_up_to_its_k_limit_and_cpu_beyond(fake_gpu):
    rng = np.random.default_rng(0)
    gallery = rng.normal(size=(GPU_MAX_K + 50, 4)).astype(np.float32)
    queries = rng.normal(size=(5, 4)).astype(np.float32)
    index = FlatL2Index(gallery)
    assert index.on_gpu and len(fake_gpu) == 1

    shallow = index.search(queries, 10)
    deep = index.search(queries, GPU_MAX_K + 1)
    assert fake_gpu[0].searched_k == [10]  # the deep search went to the CPU index
    np.testing.assert_array_equal(shallow[1], deep[1][:, :10])


def test_knn_results_do_not_depend_on_placement(fake_gpu, monkeypatch):
    rng = np.random.default_rng(1)
    gallery = rng.normal(size=(200, 8)).astype(np.float32)
    _, on_gpu = knn(gallery[:20], gallery, 5, exclude_index=np.arange(20))
    assert fake_gpu and fake_gpu[0].searched_k
    monkeypatch.setattr(faiss_backend, "use_faiss_gpu", lambda: False)
    _, on_cpu = knn(gallery[:20], gallery, 5, exclude_index=np.arange(20))
    np.testing.assert_array_equal(on_gpu, on_cpu)


def test_cpu_placement_wins_over_a_visible_gpu(monkeypatch):
    monkeypatch.setattr(faiss_backend, "faiss_gpu_count", lambda: 1)
    assert use_faiss_gpu() is True
    set_placement("cpu")
    assert use_faiss_gpu() is False


def test_requiring_the_gpu_fails_clearly_before_any_work(tmp_path, capsys):
    if faiss_gpu_count():
        pytest.skip("this machine's faiss can use a GPU")
    with pytest.raises(ValueError, match="faiss-gpu-cu12"):
        set_placement("gpu")
    assert main(["evaluate", str(tmp_path / "missing-run"), "--faiss", "gpu"]) == 2
    assert "--faiss gpu asks for faiss on a GPU" in capsys.readouterr().err


def test_unknown_placement_is_named():
    with pytest.raises(ValueError, match="'tpu' is not one of auto, gpu, cpu"):
        set_placement("tpu")


@pytest.mark.skipif(not faiss_gpu_count(), reason="needs faiss-gpu and a GPU")
def test_real_gpu_search_and_kmeans_match_cpu():
    rng = np.random.default_rng(2)
    centres = rng.normal(size=(4, 16)) * 5
    labels = np.repeat(np.arange(4), 100)
    points = (centres[labels] + rng.normal(size=(400, 16))).astype(np.float32)
    set_placement("gpu")
    assert FlatL2Index(points).on_gpu
    gpu_d, gpu_i = knn(points, points, 10, exclude_index=np.arange(400))
    gpu_nmi = nmi(points, labels)
    set_placement("cpu")
    cpu_d, cpu_i = knn(points, points, 10, exclude_index=np.arange(400))
    np.testing.assert_allclose(gpu_d, cpu_d, rtol=1e-4, atol=1e-4)
    assert (gpu_i == cpu_i).mean() > 0.99  # near-ties may swap
    assert gpu_nmi == pytest.approx(nmi(points, labels), abs=0.02) and gpu_nmi > 0.9
