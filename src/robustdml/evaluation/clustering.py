"""Clustering quality of embeddings: NMI between class labels and k-means clusters.

k-means uses faiss (on the GPU when faiss-gpu is installed) with k = number of classes and a fixed
seed, so the same embeddings always give the same NMI. All points are used for training (no subsampling): NMI is defined on the whole set.
The cost is O(N * C * d * niter), which for SOP-sized sets (60k items, 11k classes) takes minutes:
skip NMI (``with_nmi=False``) during training-time validation of very large sets.
"""

from __future__ import annotations

import numpy as np
import torch

from robustdml.evaluation.faiss_backend import kmeans
from robustdml.evaluation.knn import as_float32


def nmi(embeddings, labels, seed: int = 0, niter: int = 25) -> float:
    """Normalised mutual information between ``labels`` and k-means clusters (k = number of classes)."""
    from sklearn.metrics import normalized_mutual_info_score

    data = as_float32(embeddings, "embeddings")
    if isinstance(labels, torch.Tensor):
        labels = labels.detach().cpu().numpy()
    labels = np.asarray(labels).reshape(-1)
    if len(labels) != len(data):
        raise ValueError(f"labels have {len(labels)} entries but there are {len(data)} embeddings")
    n_clusters = len(np.unique(labels))
    if n_clusters < 1:
        raise ValueError("NMI needs at least one labelled embedding")
    if n_clusters == 1:
        return 1.0  # one class, one cluster: the partitions agree trivially (sklearn's convention too)
    assignment = kmeans(data, n_clusters, niter=niter, seed=seed)
    return float(normalized_mutual_info_score(labels, assignment))
