"""Retrieval evaluation: faiss kNN, R@k, mAP@R, NMI, embedding computation, ERS arithmetic."""

from robustdml.evaluation.embeddings import compute_embeddings
from robustdml.evaluation.knn import knn
from robustdml.evaluation.retrieval import evaluate_embeddings, nmi, retrieval_metrics

__all__ = ["compute_embeddings", "evaluate_embeddings", "knn", "nmi", "retrieval_metrics"]
