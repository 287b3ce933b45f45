"""Exact k-nearest-neighbour search with faiss, in query chunks.

Why chunks: a flat faiss search over all queries at once returns ``n_queries x k`` results, and
retrieval metrics need ``k`` up to the largest class size (mAP@R), so for SOP-sized sets the result
arrays alone could reach gigabytes. Searching ``chunk`` queries at a time keeps memory at
O(chunk * k + N * d) and never materialises an N x N matrix (faiss itself computes distances in
fixed-size blocks).

Ranking is by squared L2 distance (``IndexFlatL2``), which on L2-normalised embeddings is the same
ranking as cosine / inner product. Ties are broken by gallery index (faiss's result heap compares
(distance, id) pairs), so duplicated gallery items come back in index order; a regression test
guards this. Note faiss computes distances directly for chunks of < 20 queries and with BLAS
otherwise, so near-ties (not exact ties) may differ in the last bit between chunk sizes.
"""

from __future__ import annotations

from typing import Iterator, Optional, Tuple

import numpy as np
import torch

from robustdml.evaluation.faiss_backend import FlatL2Index

# Result entries (queries x neighbours) one chunk may hold: ~48 MB of distances + indices.
CHUNK_ENTRIES = 1 << 22


def as_float32(array, name: str = "embeddings") -> np.ndarray:
    """A C-contiguous float32 [N, D] numpy copy/view of a tensor or array, validated for faiss."""
    if isinstance(array, torch.Tensor):
        array = array.detach().float().cpu().numpy()
    array = np.ascontiguousarray(array, dtype=np.float32)
    if array.ndim != 2:
        raise ValueError(f"{name} must be a 2-D [N, D] array, got shape {tuple(array.shape)}")
    if array.shape[1] == 0:
        raise ValueError(f"{name} have dimension 0; embeddings need at least one feature")
    if not np.isfinite(array).all():
        bad = int((~np.isfinite(array).all(axis=1)).sum())
        raise ValueError(f"{name} contain NaN or inf in {bad} rows; check the model output (diverged training?)")
    return array


def as_exclude_index(exclude_index, n_queries: int, n_gallery: int) -> Optional[np.ndarray]:
    """Validate ``exclude_index``: one gallery index (or -1 for none) per query."""
    if exclude_index is None:
        return None
    if isinstance(exclude_index, torch.Tensor):
        exclude_index = exclude_index.cpu().numpy()
    exclude = np.asarray(exclude_index, dtype=np.int64).reshape(-1)
    if len(exclude) != n_queries:
        raise ValueError(f"exclude_index has {len(exclude)} entries but there are {n_queries} queries; "
                         "give one gallery index (or -1) per query")
    if len(exclude) and (exclude.min() < -1 or exclude.max() >= n_gallery):
        raise ValueError(f"exclude_index values must be in [-1, {n_gallery - 1}] (gallery indices or -1), "
                         f"got range [{exclude.min()}, {exclude.max()}]")
    return exclude


class ExactKnn:
    """A faiss exact (flat, squared-L2) index over a gallery, built once and searched in chunks.

    The index lives on the GPU when faiss-gpu is installed and sees one (see :mod:`faiss_backend`).
    """

    def __init__(self, gallery):
        self.gallery = as_float32(gallery, "gallery embeddings")
        if len(self.gallery) == 0:
            raise ValueError("the gallery is empty; nearest-neighbour search needs at least one item")
        self.index = FlatL2Index(self.gallery)

    def __len__(self) -> int:
        return len(self.gallery)

    def output_k(self, k: int, excluding: bool) -> int:
        """Columns actually returned: ``k`` capped by the gallery size (minus the excluded item)."""
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        available = len(self) - (1 if excluding else 0)
        if available < 1:
            raise ValueError("the gallery has no item left once each query's own copy is excluded")
        return min(int(k), available)

    def search_chunks(self, queries, k: int, exclude_index=None,
                      chunk_size: Optional[int] = None) -> Iterator[Tuple[int, int, np.ndarray, np.ndarray]]:
        """Yield ``(start, stop, distances, indices)`` for consecutive query chunks (see :func:`knn`)."""
        queries = as_float32(queries, "query embeddings")
        if queries.shape[1] != self.gallery.shape[1]:
            raise ValueError(f"query embeddings have dimension {queries.shape[1]} but the gallery has "
                             f"{self.gallery.shape[1]}; embed both with the same model")
        exclude = as_exclude_index(exclude_index, len(queries), len(self))
        out_k = self.output_k(k, exclude is not None)
        search_k = min(out_k + (0 if exclude is None else 1), len(self))
        if chunk_size is None:
            chunk_size = max(1, CHUNK_ENTRIES // search_k)
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        for start in range(0, len(queries), chunk_size):
            stop = min(start + chunk_size, len(queries))
            distances, indices = self.index.search(queries[start:stop], search_k)
            if exclude is not None:
                distances, indices = _drop_excluded(distances, indices, exclude[start:stop], out_k)
            yield start, stop, distances, indices


def _drop_excluded(distances: np.ndarray, indices: np.ndarray, exclude: np.ndarray,
                   out_k: int) -> Tuple[np.ndarray, np.ndarray]:
    """Remove each row's excluded gallery item; rows that did not contain it lose their last column."""
    keep = indices != exclude[:, None]
    if keep.shape[1] > out_k:
        keep[keep.all(axis=1), -1] = False
    rows = len(indices)
    return distances[keep].reshape(rows, out_k), indices[keep].reshape(rows, out_k)


def knn(queries, gallery, k: int, exclude_index=None, chunk_size: Optional[int] = None) -> Tuple[np.ndarray, np.ndarray]:
    """Squared-L2 distances and gallery indices of each query's nearest gallery items.

    Returns numpy ``(distances float32 [Q, k'], indices int64 [Q, k'])`` sorted nearest first,
    with ``k' = min(k, gallery size, minus one when excluding)``. ``exclude_index[i]`` is the gallery
    index of query ``i``'s own clean copy (or -1 for none): it is never returned, also when the query
    is a perturbed copy that is no longer its own nearest neighbour. Memory is
    O(chunk_size * k + N * d); ``chunk_size`` defaults to ~4M result entries per chunk.
    """
    searcher = ExactKnn(gallery)
    queries = as_float32(queries, "query embeddings")
    n_queries = len(queries)
    out_k = searcher.output_k(k, exclude_index is not None)
    distances = np.empty((n_queries, out_k), dtype=np.float32)
    indices = np.empty((n_queries, out_k), dtype=np.int64)
    for start, stop, chunk_d, chunk_i in searcher.search_chunks(queries, k, exclude_index, chunk_size):
        distances[start:stop], indices[start:stop] = chunk_d, chunk_i
    return distances, indices
