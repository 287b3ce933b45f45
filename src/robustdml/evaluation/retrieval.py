"""Retrieval metrics by their definitions: R@k, mAP@R (R = number of same-class items), NMI.

Robust evaluation compares perturbed queries against the clean gallery with each query's own clean
copy excluded (``exclude_index``), which pytorch-metric-learning's ``ref_includes_query`` cannot do.
"""

from __future__ import annotations

from typing import Dict, Optional, Sequence

import numpy as np
import torch

from robustdml.evaluation.knn import CHUNK_ENTRIES, as_float32, knn


def _labels(array) -> np.ndarray:
    if isinstance(array, torch.Tensor):
        array = array.cpu().numpy()
    return np.asarray(array, dtype=np.int64)


def retrieval_metrics(query_emb, query_labels, gallery_emb=None, gallery_labels=None, exclude_index=None,
                      ks: Sequence[int] = (1, 2, 4, 8), include_map: bool = True,
                      per_query: bool = False) -> Dict[str, object]:
    """R@k and mAP@R as fractions in [0,1]; ``per_query`` adds "correct@1" and "ap@r" arrays.

    Without a gallery the queries are the gallery and each excludes itself. mAP@R searches
    max(R) neighbours per query, processed in chunks: cost grows with the largest class size.
    """
    query_labels = _labels(query_labels)
    if gallery_emb is None:
        gallery_emb, gallery_labels = query_emb, query_labels
        if exclude_index is None:
            exclude_index = np.arange(len(query_labels))
    gallery_labels = _labels(gallery_labels)
    exclude = None if exclude_index is None else np.asarray(exclude_index, dtype=np.int64)

    counts = np.bincount(gallery_labels, minlength=max(query_labels.max(), gallery_labels.max()) + 1)
    relevant = counts[query_labels].copy()
    if exclude is not None:
        own = exclude >= 0
        relevant[own] -= gallery_labels[exclude[own]] == query_labels[own]
    k = max(max(ks), int(relevant.max()) if include_map else 0)
    queries, gallery = as_float32(query_emb), as_float32(gallery_emb)

    results: Dict[str, object] = {}
    hits = {kk: np.zeros(len(queries), dtype=bool) for kk in ks}
    ap = np.full(len(queries), np.nan)
    chunk = max(1, CHUNK_ENTRIES // max(k, 1))
    for start in range(0, len(queries), chunk):
        stop = min(start + chunk, len(queries))
        _, neighbours = knn(queries[start:stop], gallery, k, None if exclude is None else exclude[start:stop])
        correct = gallery_labels[neighbours] == query_labels[start:stop, None]
        for kk in ks:
            hits[kk][start:stop] = correct[:, :kk].any(axis=1)
        if include_map:
            r = relevant[start:stop]
            within_r = np.arange(correct.shape[1])[None, :] < r[:, None]
            rel = correct & within_r
            precision = np.cumsum(rel, axis=1) / np.arange(1, correct.shape[1] + 1)[None, :]
            with np.errstate(invalid="ignore", divide="ignore"):
                ap[start:stop] = np.where(r > 0, (precision * rel).sum(axis=1) / np.maximum(r, 1), np.nan)
    for kk in ks:
        results[f"R@{kk}"] = float(hits[kk].mean())
    if include_map:
        results["mAP@R"] = float(np.nanmean(ap)) if np.isfinite(ap).any() else float("nan")
    if per_query:
        results["correct@1"] = hits[ks[0]] if ks[0] == 1 else None
        results["ap@r"] = ap
    return results


def nmi(embeddings, labels, seed: int = 0) -> float:
    """Normalised mutual information between labels and k-means clusters (k = number of classes)."""
    import faiss
    from sklearn.metrics import normalized_mutual_info_score

    data, labels = as_float32(embeddings), _labels(labels)
    n_clusters = len(np.unique(labels))
    kmeans = faiss.Kmeans(data.shape[1], n_clusters, niter=25, seed=seed, verbose=False,
                          max_points_per_centroid=100000)
    kmeans.train(data)
    _, assignment = kmeans.index.search(data, 1)
    return float(normalized_mutual_info_score(labels, assignment[:, 0]))


def evaluate_embeddings(embeddings, labels, ks: Sequence[int] = (1, 2, 4, 8), with_nmi: bool = True,
                        seed: int = 0) -> Dict[str, float]:
    """All retrieval metrics of a set against itself (each query excluded)."""
    metrics = retrieval_metrics(embeddings, labels, ks=ks)
    if with_nmi:
        metrics["NMI"] = nmi(embeddings, labels, seed=seed)
    return metrics
