"""Exact chunked kNN: agrees with brute force, excludes the query's own copy, deterministic ties."""

import numpy as np
import pytest
import torch

from robustdml.evaluation import ExactKnn, knn


def _points(n, dim=8, seed=0):
    return np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)


def _brute_force(queries, gallery, k, exclude=None):
    distances = ((queries[:, None, :].astype(np.float64) - gallery[None, :, :]) ** 2).sum(-1)
    if exclude is not None:
        rows = np.flatnonzero(exclude >= 0)
        distances[rows, exclude[rows]] = np.inf
    order = np.argsort(distances, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(distances, order, axis=1), order


def test_matches_brute_force_for_any_chunk_size():
    queries, gallery = _points(57, seed=1), _points(200, seed=2)
    expected_d, expected_i = _brute_force(queries, gallery, 10)
    for chunk_size in (None, 1, 8, 1000):
        distances, indices = knn(queries, gallery, 10, chunk_size=chunk_size)
        assert indices.dtype == np.int64 and distances.dtype == np.float32
        np.testing.assert_array_equal(indices, expected_i)
        np.testing.assert_allclose(distances, expected_d, rtol=1e-4, atol=1e-4)


def test_perturbed_queries_never_return_their_clean_copy():
    gallery = _points(300)
    # Perturbed copies: still nearest to their own clean item, which must not be returned.
    queries = gallery[:100] + 0.01 * _points(100, seed=3)
    exclude = np.arange(100)
    _, plain = knn(queries, gallery, 5)
    assert (plain[:, 0] == exclude).all()  # without exclusion the query finds itself first
    _, indices = knn(queries, gallery, 5, exclude_index=exclude, chunk_size=16)
    assert indices.shape == (100, 5)
    assert not (indices == exclude[:, None]).any()
    np.testing.assert_array_equal(indices, _brute_force(queries, gallery, 5, exclude)[1])


def test_excluded_item_far_away_and_minus_one_keep_k_columns():
    gallery = _points(50)
    queries = -gallery[:3] * 10  # their "own copy" is nowhere near the top k
    exclude = np.array([0, -1, 2])
    _, indices = knn(queries, gallery, 4, exclude_index=exclude)
    np.testing.assert_array_equal(indices, _brute_force(queries, gallery, 4, exclude)[1])


def test_ties_are_broken_by_gallery_index_whatever_the_chunking():
    base = _points(5)
    gallery = np.concatenate([base, base, base])  # items i, i+5, i+10 are identical
    queries = base + 0.001
    for chunk_size in (None, 1, 2):
        _, indices = knn(queries, gallery, 3, chunk_size=chunk_size)
        np.testing.assert_array_equal(indices, np.arange(5)[:, None] + np.array([0, 5, 10]))
    _, excluded = knn(queries, gallery, 2, exclude_index=np.arange(5))
    np.testing.assert_array_equal(excluded, np.arange(5)[:, None] + np.array([5, 10]))


def test_torch_and_numpy_inputs_agree_and_k_is_capped_by_the_gallery():
    queries, gallery = _points(10, seed=4), _points(6, seed=5)
    from_numpy = knn(queries, gallery, 3)
    from_torch = knn(torch.from_numpy(queries).double(), torch.from_numpy(gallery), 3)
    np.testing.assert_array_equal(from_numpy[1], from_torch[1])
    assert knn(queries, gallery, 100)[1].shape == (10, 6)
    assert knn(gallery, gallery, 100, exclude_index=np.arange(6))[1].shape == (6, 5)


def test_searcher_reuses_one_index_for_many_query_sets():
    gallery = _points(100)
    searcher = ExactKnn(gallery)
    chunks = list(searcher.search_chunks(_points(30, seed=6), 4, chunk_size=7))
    assert [(start, stop) for start, stop, _, _ in chunks] == [(0, 7), (7, 14), (14, 21), (21, 28), (28, 30)]
    assert all(indices.shape == (stop - start, 4) for start, stop, _, indices in chunks)


@pytest.mark.parametrize("call, message", [
    (lambda g: knn(_points(3, dim=4), g, 2), "dimension 4"),
    (lambda g: knn(np.full((2, 8), np.nan, dtype=np.float32), g, 2), "NaN or inf"),
    (lambda g: knn(g[:3], g, 2, exclude_index=[0, 1]), "one gallery index"),
    (lambda g: knn(g[:2], g, 2, exclude_index=[0, 10]), r"\[-1, 9\]"),
    (lambda g: knn(g, g, 0), "k must be >= 1"),
    (lambda g: knn(g[:1], g[:1], 1, exclude_index=[0]), "no item left"),
    (lambda g: knn(g[0], g, 1), "2-D"),
])
def test_bad_inputs_fail_with_a_clear_message(call, message):
    with pytest.raises(ValueError, match=message):
        call(_points(10))
