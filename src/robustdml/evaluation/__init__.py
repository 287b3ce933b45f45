"""Retrieval evaluation: faiss kNN, R@k, mAP@R, NMI, embedding computation, ERS arithmetic."""

from robustdml.evaluation.clustering import nmi
from robustdml.evaluation.embeddings import compute_embeddings
from robustdml.evaluation.knn import ExactKnn, knn
from robustdml.evaluation.retrieval import evaluate_embeddings, retrieval_metrics

__all__ = ["ExactKnn", "compute_embeddings", "evaluate_embeddings", "knn", "nmi", "retrieval_metrics"]
