"""R@k and mAP@R by their definitions, cross-checked against pytorch-metric-learning; NMI; memory."""

import json
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest
import torch
from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator
from pytorch_metric_learning.utils.inference import FaissKNN

from robustdml.evaluation import evaluate_embeddings, nmi, retrieval_metrics


def _clustered(n=1200, classes=30, spread=0.6, dim=16, seed=0):
    """Noisy class clusters: R@1 and mAP@R strictly between 0 and 1, classes of uneven size."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, n)
    emb = rng.normal(size=(classes, dim))[labels] * spread + rng.normal(size=(n, dim))
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    return emb.astype(np.float32), labels


def _pml(query, query_labels, gallery, gallery_labels, ref_includes_query):
    # Finite k and an explicit knn_func: PML's k=None builds an N x N label matrix (DESIGN.md pitfalls).
    largest_class = int(np.bincount(gallery_labels).max())
    calculator = AccuracyCalculator(include=("precision_at_1", "mean_average_precision_at_r"),
                                    k=largest_class + 1, knn_func=FaissKNN())
    return calculator.get_accuracy(torch.tensor(query), torch.tensor(query_labels), torch.tensor(gallery),
                                   torch.tensor(gallery_labels), ref_includes_query=ref_includes_query)


def test_self_retrieval_matches_pytorch_metric_learning():
    emb, labels = _clustered()
    ours = retrieval_metrics(emb, labels)
    theirs = _pml(emb, labels, emb, labels, ref_includes_query=True)
    assert 0.1 < ours["R@1"] < 0.9 and 0.02 < ours["mAP@R"] < 0.9  # a non-trivial case
    assert ours["R@1"] == pytest.approx(theirs["precision_at_1"], abs=1e-12)
    assert ours["mAP@R"] == pytest.approx(theirs["mean_average_precision_at_r"], abs=1e-6)


def test_separate_query_and_gallery_match_pytorch_metric_learning():
    emb, labels = _clustered(seed=1)
    queries, gallery = slice(0, 300), slice(300, None)
    ours = retrieval_metrics(emb[queries], labels[queries], emb[gallery], labels[gallery], chunk_size=37)
    theirs = _pml(emb[queries], labels[queries], emb[gallery], labels[gallery], ref_includes_query=False)
    assert ours["R@1"] == pytest.approx(theirs["precision_at_1"], abs=1e-12)
    assert ours["mAP@R"] == pytest.approx(theirs["mean_average_precision_at_r"], abs=1e-6)


def test_recall_at_k_and_map_at_r_by_hand():
    # 1-d points. Query 0 (class 0) has R=2 other class-0 items, at ranks 1 and 3. mAP@R only looks at
    # the first R=2 ranks: AP@R = (P(1)*1 + P(2)*0) / 2 = 0.5 (plain AP would give (1 + 2/3) / 2).
    # Query 2 (class 1) has R=1 other class-1 item, at rank 4: R@1=R@2=0, R@4=1, AP@R = 0.
    gallery = np.array([[0.0], [0.1], [0.2], [0.3], [5.0]], dtype=np.float32)
    labels = np.array([0, 0, 1, 0, 1])
    result = retrieval_metrics(gallery[[0, 2]], labels[[0, 2]], gallery, labels, exclude_index=[0, 2],
                               ks=(1, 2, 4), per_query=True)
    np.testing.assert_allclose(result["ap@r"], [0.5, 0.0])
    assert (result["R@1"], result["R@2"], result["R@4"], result["mAP@R"]) == (0.5, 0.5, 1.0, 0.25)
    np.testing.assert_array_equal(result["num_relevant"], [2, 1])


def test_perturbed_queries_against_clean_gallery_exclude_their_own_copy():
    emb, labels = _clustered(n=400, seed=2)
    self_eval = retrieval_metrics(emb, labels)
    copies = retrieval_metrics(emb, labels, emb, labels, exclude_index=np.arange(len(emb)))
    assert copies == self_eval
    # Without the exclusion every query finds itself: the inflated numbers published code reported.
    assert retrieval_metrics(emb, labels, emb, labels)["R@1"] == 1.0
    # Perturbed queries: the clean copy is still the nearest item, so exclusion is what keeps it out.
    noisy = emb + 0.02 * np.random.default_rng(3).normal(size=emb.shape).astype(np.float32)
    perturbed = retrieval_metrics(noisy, labels, emb, labels, exclude_index=np.arange(len(emb)))
    assert perturbed["R@1"] < 0.95 and abs(perturbed["R@1"] - self_eval["R@1"]) < 0.1


def test_per_query_outputs_agree_with_the_summary():
    emb, labels = _clustered(n=500, seed=4)
    result = retrieval_metrics(emb, labels, ks=(2, 4), per_query=True)
    assert "R@1" not in result and result["correct@1"].dtype == bool  # correct@1 always comes per query
    assert result["correct@1"].shape == (500,) and result["ap@r"].shape == (500,)
    assert result["correct@2"].mean() == result["R@2"] and result["correct@4"].mean() == result["R@4"]
    assert np.all(result["correct@1"] <= result["correct@2"]) and np.all(result["correct@2"] <= result["correct@4"])
    assert np.nanmean(result["ap@r"]) == pytest.approx(result["mAP@R"])
    assert set(retrieval_metrics(emb, labels, include_map=False)) == {"R@1", "R@2", "R@4", "R@8"}


def test_results_do_not_depend_on_chunking_or_label_encoding():
    emb, labels = _clustered(n=300, seed=5)
    reference = retrieval_metrics(emb, labels, per_query=True)
    strings = np.array([f"class-{label}" for label in labels])
    for variant in (retrieval_metrics(emb, labels, per_query=True, chunk_size=7),
                    retrieval_metrics(torch.from_numpy(emb), torch.from_numpy(labels * -3 - 100), per_query=True),
                    retrieval_metrics(emb, strings, per_query=True)):
        for key, value in reference.items():
            np.testing.assert_array_equal(variant[key], value)


def test_queries_without_same_class_items_are_misses_and_skipped_by_map():
    gallery = np.eye(4, dtype=np.float32)
    labels = np.array([0, 0, 1, 2])  # class 1 and 2 are singletons
    with pytest.warns(UserWarning, match="2 of 4 queries have no same-class item"):
        result = retrieval_metrics(gallery, labels, ks=(1,), per_query=True)
    assert result["R@1"] == 0.5 and result["mAP@R"] == 1.0
    assert np.isnan(result["ap@r"][2:]).all()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert np.isnan(retrieval_metrics(gallery[2:], labels[2:])["mAP@R"])


def test_large_classes_search_deep_enough_for_map():
    # Two classes of 150: R = 149, deeper than any R@k. Perfect separation => mAP@R = 1 exactly.
    labels = np.repeat([0, 1], 150)
    emb = np.random.default_rng(6).normal(size=(300, 4)).astype(np.float32) * 0.01
    emb[:, 0] += labels * 10
    assert retrieval_metrics(emb, labels, chunk_size=16)["mAP@R"] == 1.0


@pytest.mark.parametrize("kwargs, message", [
    (dict(ks=()), "positive integers"),
    (dict(ks=(0, 1)), "positive integers"),
    (dict(query_labels=np.zeros(3)), "query labels have 3 entries"),
    (dict(gallery_emb=np.zeros((5, 2), np.float32), gallery_labels=np.zeros(4)), "gallery labels have 4"),
    (dict(gallery_labels=np.zeros(10)), "without gallery_emb"),
])
def test_bad_inputs_fail_with_a_clear_message(kwargs, message):
    arguments = dict(query_emb=np.random.default_rng(0).normal(size=(10, 2)).astype(np.float32),
                     query_labels=np.arange(10) % 2)
    arguments.update(kwargs)
    with pytest.raises(ValueError, match=message):
        retrieval_metrics(**arguments)


def test_nmi_is_one_on_perfect_clusters_low_on_noise_and_seeded():
    labels = np.repeat(np.arange(5), 40)
    noise = np.random.default_rng(0).normal(size=(200, 8)).astype(np.float32)
    clustered = np.eye(5, 8, dtype=np.float32)[labels] * 10 + 0.01 * noise
    assert nmi(clustered, labels) == pytest.approx(1.0)
    assert nmi(noise, labels) < 0.3
    assert nmi(noise, labels, seed=3) == nmi(noise, labels, seed=3)
    assert nmi(noise, np.zeros(200)) == 1.0


def test_evaluate_embeddings_returns_one_dict():
    emb, labels = _clustered(n=300, seed=7)
    metrics = evaluate_embeddings(torch.from_numpy(emb), torch.from_numpy(labels))
    assert set(metrics) == {"R@1", "R@2", "R@4", "R@8", "mAP@R", "NMI"}
    assert all(0.0 <= value <= 1.0 for value in metrics.values())
    assert metrics["R@1"] <= metrics["R@2"] <= metrics["R@4"] <= metrics["R@8"]


def test_twenty_thousand_embeddings_never_allocate_n_by_n():
    # Fresh process so peak RSS (which also sees faiss's C++ allocations) belongs to this evaluation only.
    script = textwrap.dedent("""
        import json, resource, numpy as np
        from robustdml.evaluation import retrieval_metrics
        n = 20000
        emb = np.random.default_rng(0).normal(size=(n, 32)).astype(np.float32)
        labels = np.arange(n) // 20
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        metrics = retrieval_metrics(emb, labels)
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(json.dumps({"growth_mb": (after - before) / 1024, "keys": sorted(metrics)}))
    """)
    output = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    result = json.loads(output.stdout.strip().splitlines()[-1])
    assert result["keys"] == ["R@1", "R@2", "R@4", "R@8", "mAP@R"]
    n_by_n_float32_mb = 20000 * 20000 * 4 / 2 ** 20  # 1526 MB
    assert result["growth_mb"] < n_by_n_float32_mb / 10
