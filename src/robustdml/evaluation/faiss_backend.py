"""Where faiss runs: on a GPU when a GPU build of faiss is installed and sees a device, else on the CPU.

Why a module of its own: kNN search (R@k, mAP@R, attack neighbour lookups) and k-means (NMI) are the
evaluation hot spots, and on a GPU machine copying embeddings back to a CPU faiss index wastes the
device. With ``faiss-gpu`` installed (e.g. ``pip install faiss-gpu-cu12``, which needs CUDA 12's cuBLAS)
and a visible GPU, the flat index is mirrored onto GPU 0 and k-means trains there. Nothing changes for
a CPU-only faiss build: the CPU index is used exactly as before.

The placement is a process-wide setting (``set_placement``; the CLI's ``--faiss`` flag): ``auto``
(default), ``gpu`` (require the GPU, fail before any work if faiss cannot use one) or ``cpu`` (e.g. to
leave GPU memory to training).

faiss's GPU k-selection handles at most ``GPU_MAX_K`` neighbours per query; deeper searches (mAP@R on
classes with more than 2048 items, such as whole Fashion-MNIST classes) run on the CPU index, so the
result never depends on that limit. On the GPU, exact distance ties may come back in a different order
than on the CPU (the CPU index breaks ties by gallery index).

faiss is an optional dependency (``pip install 'robustdml[faiss]'`` or ``'robustdml[gpu]'``): its CPU
and GPU wheels install the same ``faiss`` module, so the package cannot require one without fighting
the other. Without faiss, the same exact search runs in numpy (:class:`NumpyFlatL2`, ties broken by
gallery index like faiss's CPU index) and k-means in scikit-learn: same definitions, slower.
"""

from __future__ import annotations

import functools
import logging
from typing import Tuple

import numpy as np

try:
    import faiss
except ImportError:  # optional: see the module docstring
    faiss = None

log = logging.getLogger(__name__)

PLACEMENTS = ("auto", "gpu", "cpu")
GPU_MAX_K = 2048
_placement = "auto"


def faiss_gpu_count() -> int:
    """GPUs this faiss build can use: 0 for a CPU-only build or a machine without a GPU."""
    if faiss is None or not hasattr(faiss, "StandardGpuResources"):
        return 0
    try:
        return int(faiss.get_num_gpus())
    except RuntimeError:  # a GPU build on a machine whose driver cannot be initialised
        return 0


def set_placement(placement: str) -> None:
    """Where faiss runs from now on in this process: ``auto``, ``gpu`` or ``cpu`` (see module docstring)."""
    global _placement
    if placement not in PLACEMENTS:
        raise ValueError(f"faiss placement {placement!r} is not one of {', '.join(PLACEMENTS)}")
    if placement == "gpu" and faiss_gpu_count() == 0:
        build = ("faiss is not installed" if faiss is None
                 else "this faiss build has no GPU support" if not hasattr(faiss, "StandardGpuResources")
                 else "faiss sees no GPU")
        raise ValueError(f"--faiss gpu asks for faiss on a GPU, but {build}; install a GPU build "
                         "(pip install faiss-gpu-cu12) on a machine with CUDA 12, or use --faiss auto")
    _placement = placement


def use_faiss_gpu() -> bool:
    """Whether faiss runs on GPU 0: the placement setting and what faiss can see."""
    return _placement != "cpu" and faiss_gpu_count() > 0


@functools.lru_cache(maxsize=1)
def _gpu_resources():
    """One set of faiss GPU resources (streams, scratch memory) shared by every index in the process."""
    return faiss.StandardGpuResources()


def _to_gpu(index):
    """Mirror a CPU index onto GPU 0 (a hook tests replace to exercise the routing without a GPU)."""
    return faiss.index_cpu_to_gpu(_gpu_resources(), 0, index)


@functools.lru_cache(maxsize=1)
def _say_faiss_is_missing() -> None:
    log.info("faiss is not installed: exact kNN runs in numpy and k-means in scikit-learn (slower); "
             "pip install 'robustdml[faiss]' (or 'robustdml[gpu]') for faiss")


class NumpyFlatL2:
    """Exact squared-L2 search in numpy, the stand-in for ``faiss.IndexFlatL2`` when faiss is missing.

    Queries are processed in blocks so that one block's distance matrix stays near ``BLOCK_ENTRIES``
    floats whatever the gallery size; ties are broken by gallery index (a stable sort), as faiss's CPU
    index does.
    """

    BLOCK_ENTRIES = 1 << 22

    def __init__(self, data: np.ndarray):
        self.data = np.ascontiguousarray(data, dtype=np.float32)
        self.norms = (self.data.astype(np.float64) ** 2).sum(axis=1)

    def search(self, queries: np.ndarray, k: int) -> Tuple[np.ndarray, np.ndarray]:
        rows = max(1, self.BLOCK_ENTRIES // max(1, len(self.data)))
        distances, indices = [], []
        for start in range(0, len(queries), rows):
            block = queries[start:start + rows].astype(np.float64)
            squared = (block ** 2).sum(axis=1)[:, None] - 2.0 * block @ self.data.T.astype(np.float64) + self.norms
            order = np.argsort(squared, axis=1, kind="stable")[:, :k]
            distances.append(np.maximum(np.take_along_axis(squared, order, axis=1), 0.0).astype(np.float32))
            indices.append(order.astype(np.int64))
        if not distances:
            return np.zeros((0, k), np.float32), np.zeros((0, k), np.int64)
        return np.concatenate(distances), np.concatenate(indices)


class FlatL2Index:
    """Exact squared-L2 search over ``data``: on the GPU when available and ``k`` allows, else on the CPU."""

    def __init__(self, data: np.ndarray):
        if faiss is None:
            _say_faiss_is_missing()
            self.cpu, self.gpu = NumpyFlatL2(data), None
            return
        self.cpu = faiss.IndexFlatL2(data.shape[1])
        self.cpu.add(data)
        self.gpu = _to_gpu(self.cpu) if use_faiss_gpu() else None

    @property
    def on_gpu(self) -> bool:
        return self.gpu is not None

    def search(self, queries: np.ndarray, k: int) -> Tuple[np.ndarray, np.ndarray]:
        index = self.gpu if self.gpu is not None and k <= GPU_MAX_K else self.cpu
        return index.search(queries, k)


def kmeans(data: np.ndarray, n_clusters: int, niter: int, seed: int) -> np.ndarray:
    """Cluster id of every row of ``data`` after faiss k-means (on the GPU when available)."""
    if faiss is None:
        from sklearn.cluster import KMeans

        _say_faiss_is_missing()
        return KMeans(n_clusters, n_init=1, max_iter=niter, random_state=seed).fit_predict(data).astype(np.int64)
    model = faiss.Kmeans(data.shape[1], n_clusters, niter=niter, seed=seed, verbose=False,
                         min_points_per_centroid=1, max_points_per_centroid=max(1, len(data)),
                         gpu=use_faiss_gpu())
    model.train(data)
    _, assignment = model.index.search(data, 1)
    return assignment[:, 0]
