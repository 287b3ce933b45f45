"""Retrieval metrics by their definitions: Recall@k and mAP@R over an exact faiss kNN search.

- R@k: fraction of queries with at least one same-class gallery item among their k nearest
  neighbours (a query whose class has no other gallery item counts as a miss).
- mAP@R (Musgrave et al., "A Metric Learning Reality Check", 2020): for a query with R same-class
  gallery items other than itself, AP@R = (1/R) * sum_{i<=R} P(i) * rel(i), where P(i) is the
  precision among the first i neighbours and rel(i) is 1 if neighbour i is same-class. mAP@R is the
  mean over queries with R > 0.

Robust evaluation compares perturbed queries against the clean gallery with each query's own clean
copy excluded (``exclude_index``); pytorch-metric-learning's ``ref_includes_query`` cannot do that
because it assumes the query *is* the gallery item.

Cost: mAP@R needs every query's R nearest neighbours, so the search depth is
k = max(max(ks), largest R). The flat search itself costs O(Q * N * d) whatever k is; k adds
O(Q * k) result memory, which is bounded by processing queries in chunks of ~4M / k. With huge
classes (e.g. one class of 100k items) each chunk holds only a few dozen queries and the heap work
grows as Q * k * log k: pass ``include_map=False`` when only R@k is needed.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Dict, Optional, Sequence, Tuple

import numpy as np
import torch

from robustdml.evaluation.clustering import nmi
from robustdml.evaluation.knn import ExactKnn, as_exclude_index, as_float32


def as_label_array(labels, name: str, expected_length: int) -> np.ndarray:
    """A 1-D numpy copy of ``labels`` (tensor, list or array) with one entry per embedding."""
    if labels is None:
        raise ValueError(f"{name} are missing; pass one label per embedding")
    if isinstance(labels, torch.Tensor):
        labels = labels.detach().cpu().numpy()
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one class label per embedding), got shape {labels.shape}")
    if len(labels) != expected_length:
        raise ValueError(f"{name} have {len(labels)} entries but there are {expected_length} embeddings")
    return labels


def encode_labels(query_labels: np.ndarray, gallery_labels: np.ndarray) -> Tuple[np.ndarray, np.ndarray, int]:
    """Map arbitrary labels (negative, sparse, strings) to dense codes 0..C-1 shared by both sets."""
    _, codes = np.unique(np.concatenate([query_labels, gallery_labels]), return_inverse=True)
    codes = codes.reshape(-1)
    n_classes = int(codes.max()) + 1 if len(codes) else 0
    return codes[: len(query_labels)], codes[len(query_labels):], n_classes


def relevant_counts(query_codes: np.ndarray, gallery_codes: np.ndarray, n_classes: int,
                    exclude: Optional[np.ndarray]) -> np.ndarray:
    """R per query: same-class gallery items, not counting the query's own (excluded) copy."""
    relevant = np.bincount(gallery_codes, minlength=n_classes)[query_codes]
    if exclude is not None:
        own = exclude >= 0
        relevant[own] -= gallery_codes[exclude[own]] == query_codes[own]
    return relevant


def average_precision_at_r(correct: np.ndarray, relevant: np.ndarray) -> np.ndarray:
    """AP@R per row of a [Q, K] same-class matrix (K >= R); NaN where R = 0."""
    ranks = np.arange(1, correct.shape[1] + 1)
    rel = correct & (ranks[None, :] <= relevant[:, None])
    precision = np.cumsum(rel, axis=1) / ranks[None, :]
    summed = (precision * rel).sum(axis=1)
    return np.where(relevant > 0, summed / np.maximum(relevant, 1), np.nan)


def _validate_ks(ks: Sequence[int]) -> Tuple[int, ...]:
    ks = tuple(ks)
    if not ks or any(not isinstance(k, (int, np.integer)) or isinstance(k, bool) or k < 1 for k in ks):
        raise ValueError(f"ks must be a non-empty list of positive integers, got {ks!r}")
    return ks


@dataclass(frozen=True)
class MetricOptions:
    """What :func:`retrieval_metrics` computes: R@k for ``ks``, mAP@R (``include_map``), per-query arrays
    (``per_query``), in query chunks of ``chunk_size`` (None: chosen from the sizes)."""

    ks: Sequence[int] = (1, 2, 4, 8)
    include_map: bool = True
    per_query: bool = False
    chunk_size: Optional[int] = None


def retrieval_metrics(query_emb, query_labels, gallery_emb=None, gallery_labels=None, exclude_index=None,
                      **options) -> Dict[str, object]:
    """R@k (keys "R@1", ...) and "mAP@R" as fractions in [0, 1]; ``options``: the fields of :class:`MetricOptions`.

    Without a gallery the queries are the gallery and each query excludes itself. With a gallery,
    ``exclude_index[i]`` names query ``i``'s own clean copy in the gallery (or -1).
    ``per_query=True`` adds numpy arrays: "correct@k" (bool, for every k in ``ks`` and always k=1),
    "ap@r" (float, NaN where R = 0) and "num_relevant" (R per query).
    """
    options = MetricOptions(**options)
    ks, include_map, per_query, chunk_size = options.ks, options.include_map, options.per_query, options.chunk_size
    ks = _validate_ks(ks)
    queries = as_float32(query_emb, "query embeddings")
    query_labels = as_label_array(query_labels, "query labels", len(queries))
    if len(queries) == 0:
        raise ValueError("there are no queries to evaluate")
    if gallery_emb is None:
        if gallery_labels is not None:
            raise ValueError("gallery_labels were given without gallery_emb; pass both or neither")
        searcher, gallery_labels = ExactKnn(queries), query_labels
        if exclude_index is None:
            exclude_index = np.arange(len(queries))
    else:
        searcher = ExactKnn(gallery_emb)
        gallery_labels = as_label_array(gallery_labels, "gallery labels", len(searcher))
    exclude = as_exclude_index(exclude_index, len(queries), len(searcher))

    query_codes, gallery_codes, n_classes = encode_labels(query_labels, gallery_labels)
    relevant = relevant_counts(query_codes, gallery_codes, n_classes, exclude)
    lonely = int((relevant == 0).sum())
    if lonely:
        warnings.warn(f"{lonely} of {len(queries)} queries have no same-class item in the gallery: they count as "
                      "misses for R@k and are skipped by mAP@R", stacklevel=2)

    hit_ks = sorted(set(ks) | ({1} if per_query else set()))
    depth = max(max(hit_ks), int(relevant.max()) if include_map else 0)
    hits = {k: np.zeros(len(queries), dtype=bool) for k in hit_ks}
    ap = np.full(len(queries), np.nan)
    for start, stop, _, neighbours in searcher.search_chunks(queries, depth, exclude, chunk_size):
        correct = gallery_codes[neighbours] == query_codes[start:stop, None]
        hit_rank = np.where(correct.any(axis=1), correct.argmax(axis=1) + 1, np.iinfo(np.int64).max)
        for k in hit_ks:
            hits[k][start:stop] = hit_rank <= k
        if include_map:
            ap[start:stop] = average_precision_at_r(correct, relevant[start:stop])

    results: Dict[str, object] = {f"R@{k}": float(hits[k].mean()) for k in ks}
    if include_map:
        results["mAP@R"] = float(np.nanmean(ap)) if lonely < len(queries) else float("nan")
    if per_query:
        results.update({f"correct@{k}": hits[k] for k in hit_ks})
        if include_map:
            results["ap@r"] = ap
        results["num_relevant"] = relevant
    return results


def evaluate_embeddings(embeddings, labels, ks: Sequence[int] = (1, 2, 4, 8), with_nmi: bool = True,
                        seed: int = 0) -> Dict[str, float]:
    """R@k, mAP@R (each item a query against all others) and, optionally, NMI, in one dict."""
    metrics = retrieval_metrics(embeddings, labels, ks=ks)
    if with_nmi:
        metrics["NMI"] = nmi(embeddings, labels, seed=seed)
    return metrics
