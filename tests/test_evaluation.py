import numpy as np
import pytest
import torch
from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator
from pytorch_metric_learning.utils.inference import FaissKNN

from robustdml.evaluation import compute_embeddings, evaluate_embeddings, knn, nmi, retrieval_metrics


def _clustered(n=1500, classes=15, spread=0.08, dim=16, seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n)
    centres = rng.normal(size=(classes, dim))
    emb = centres[labels] * spread + rng.normal(size=(n, dim))
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    return emb.astype(np.float32), labels


def test_matches_pytorch_metric_learning_accuracy_calculator():
    emb, labels = _clustered()
    ours = retrieval_metrics(emb, labels)
    calculator = AccuracyCalculator(include=("precision_at_1", "mean_average_precision_at_r"), k=500,
                                    knn_func=FaissKNN())
    theirs = calculator.get_accuracy(torch.tensor(emb), torch.tensor(labels), ref_includes_query=True)
    assert 0.05 < ours["R@1"] < 0.95  # a non-trivial case
    assert ours["R@1"] == pytest.approx(theirs["precision_at_1"], abs=1e-9)
    assert ours["mAP@R"] == pytest.approx(theirs["mean_average_precision_at_r"], abs=1e-6)


def test_map_at_r_by_hand():
    # 1-d points; query 0 (class 0) has R=2 other class-0 items, at ranks 1 and 3. mAP@R only looks at
    # the top R=2 ranks: AP = (P(1)*1 + P(2)*0) / 2 = 0.5 (plain AP would give (1 + 2/3) / 2).
    emb = np.array([[0.0], [0.1], [0.2], [0.3], [5.0]], dtype=np.float32)
    labels = np.array([0, 0, 1, 0, 1])
    result = retrieval_metrics(emb[:1], labels[:1], emb, labels, exclude_index=[0], ks=(1,), per_query=True)
    assert result["ap@r"][0] == pytest.approx(0.5)
    assert result["R@1"] == 1.0 and bool(result["correct@1"][0])


def test_perturbed_query_excludes_its_own_clean_copy():
    emb, labels = _clustered(n=300)
    # Queries identical to their gallery copy: without exclusion R@1 would trivially be 1.
    excluded = retrieval_metrics(emb, labels, emb, labels, exclude_index=np.arange(len(emb)))
    assert excluded["R@1"] == pytest.approx(retrieval_metrics(emb, labels)["R@1"])
    assert retrieval_metrics(emb, labels, emb, labels)["R@1"] == 1.0
    _, neighbours = knn(emb, emb, 5, exclude_index=np.arange(len(emb)))
    assert not (neighbours == np.arange(len(emb))[:, None]).any()


def test_nmi_of_perfect_clusters_is_one_and_random_is_low():
    labels = np.repeat(np.arange(5), 40)
    centres = np.eye(5, 8, dtype=np.float32)
    assert nmi(centres[labels] + 0.01 * np.random.default_rng(0).normal(size=(200, 8)), labels) == pytest.approx(1.0)
    assert nmi(np.random.default_rng(0).normal(size=(200, 8)), labels) < 0.3


def test_bounded_memory_no_n_by_n(monkeypatch):
    import tracemalloc

    rng = np.random.default_rng(0)
    emb = rng.normal(size=(20000, 32)).astype(np.float32)
    labels = np.arange(20000) // 10
    tracemalloc.start()
    metrics = retrieval_metrics(emb, labels)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert set(metrics) == {"R@1", "R@2", "R@4", "R@8", "mAP@R"}
    assert peak < 20000 * 20000 * 4 / 10  # an N x N float matrix would be 1.6 GB


def test_compute_embeddings_restores_mode_and_matches_model():
    from robustdml.data import TensorRetrievalDataset
    from robustdml.models import build_model

    model = build_model("convnet", (1, 28, 28), embedding_dim=8)
    data = TensorRetrievalDataset(torch.randint(0, 256, (50, 1, 28, 28), dtype=torch.uint8), np.arange(50) % 5, "t")
    model.train()
    embeddings, labels = compute_embeddings(model, data, batch_size=16, progress=False)
    assert model.training and embeddings.shape == (50, 8) and labels.tolist() == (np.arange(50) % 5).tolist()
    model.eval()
    assert torch.allclose(embeddings[:16], model(data.get_batch(np.arange(16))[0]), atol=1e-5)
    assert set(evaluate_embeddings(embeddings, labels)) == {"R@1", "R@2", "R@4", "R@8", "mAP@R", "NMI"}
