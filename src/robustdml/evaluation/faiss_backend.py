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
"""

from __future__ import annotations

import functools
from typing import Tuple

import faiss
import numpy as np

PLACEMENTS = ("auto", "gpu", "cpu")
GPU_MAX_K = 2048
_placement = "auto"


def faiss_gpu_count() -> int:
    """GPUs this faiss build can use: 0 for a CPU-only build or a machine without a GPU."""
    if not hasattr(faiss, "StandardGpuResources"):
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
        build = "this faiss build has no GPU support" if not hasattr(faiss, "StandardGpuResources") \
            else "faiss sees no GPU"
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


class FlatL2Index:
    """Exact squared-L2 search over ``data``: on the GPU when available and ``k`` allows, else on the CPU."""

    def __init__(self, data: np.ndarray):
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
    model = faiss.Kmeans(data.shape[1], n_clusters, niter=niter, seed=seed, verbose=False,
                         min_points_per_centroid=1, max_points_per_centroid=max(1, len(data)),
                         gpu=use_faiss_gpu())
    model.train(data)
    _, assignment = model.index.search(data, 1)
    return assignment[:, 0]
