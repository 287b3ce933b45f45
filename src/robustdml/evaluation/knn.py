"""Exact k-nearest-neighbour search with faiss, in query chunks: memory O(chunk * k + N * d), never N x N."""

from __future__ import annotations

from typing import Optional, Tuple

import faiss
import numpy as np
import torch

# Entries (queries x neighbours) one chunk may hold: bounds memory whatever k is.
CHUNK_ENTRIES = 1 << 22


def as_float32(array) -> np.ndarray:
    if isinstance(array, torch.Tensor):
        array = array.detach().float().cpu().numpy()
    return np.ascontiguousarray(array, dtype=np.float32)


def knn(queries, gallery, k: int, exclude_index=None, chunk_size: Optional[int] = None) -> Tuple[np.ndarray, np.ndarray]:
    """Squared-L2 distances and gallery indices of each query's ``k`` nearest gallery items.

    ``exclude_index[i]`` is the gallery index of query ``i``'s own clean copy (or -1): it is never
    returned, so a query is never its own neighbour, also when the query is a perturbed copy.
    """
    queries, gallery = as_float32(queries), as_float32(gallery)
    exclude = None if exclude_index is None else np.asarray(exclude_index, dtype=np.int64)
    k = min(k, len(gallery) - (0 if exclude is None else 1))
    if k < 1:
        raise ValueError("the gallery is too small for a nearest-neighbour search")
    search_k = k + (0 if exclude is None else 1)
    index = faiss.IndexFlatL2(gallery.shape[1])
    index.add(gallery)
    chunk = chunk_size or max(1, CHUNK_ENTRIES // search_k)
    distances = np.empty((len(queries), k), dtype=np.float32)
    indices = np.empty((len(queries), k), dtype=np.int64)
    for start in range(0, len(queries), chunk):
        stop = min(start + chunk, len(queries))
        found_d, found_i = index.search(queries[start:stop], search_k)
        if exclude is not None:
            keep = found_i != exclude[start:stop, None]
            # Drop the excluded item if found, otherwise the last (k+1-th) neighbour.
            keep[keep.all(axis=1), -1] = False
            found_d = found_d[keep].reshape(stop - start, k)
            found_i = found_i[keep].reshape(stop - start, k)
        distances[start:stop], indices[start:stop] = found_d, found_i
    return distances, indices
