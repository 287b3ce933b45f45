"""MPerClassBatchSampler: class structure, determinism, rank slices that add up to the global batch."""

import numpy as np
import pytest

from robustdml.data import MPerClassBatchSampler

LABELS = np.repeat(np.arange(12), 10)
np.random.default_rng(0).shuffle(LABELS)


def class_counts(batch, labels=LABELS):
    values, counts = np.unique(labels[batch], return_counts=True)
    return dict(zip(values.tolist(), counts.tolist()))


def test_every_batch_has_batch_size_over_m_classes_with_m_distinct_items():
    sampler = MPerClassBatchSampler(LABELS, m=4, batch_size=16, num_batches=25, seed=1)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 25
    for batch in batches:
        assert len(batch) == 16 and len(set(batch)) == 16  # 10 items per class >= m: no repeats
        assert sorted(class_counts(batch).values()) == [4, 4, 4, 4]
        labels = LABELS[batch]
        assert all(len(set(labels[i:i + 4])) == 1 for i in range(0, 16, 4))  # laid out class by class


def test_small_classes_are_sampled_with_replacement_only_then():
    labels = np.array([0, 0, 1, 1, 1, 1, 2, 2, 2, 2])
    saw_small_class = False
    for batch in MPerClassBatchSampler(labels, m=4, batch_size=8, num_batches=20, seed=0):
        assert sorted(class_counts(batch, labels).values()) == [4, 4]
        for c in (1, 2):  # 4 items each: drawn without replacement
            members = [i for i in batch if labels[i] == c]
            assert len(set(members)) == len(members)
        small = [i for i in batch if labels[i] == 0]
        saw_small_class |= bool(small)
        assert set(small) <= {0, 1}
    assert saw_small_class


def test_default_length_and_epochs_are_deterministic():
    sampler = MPerClassBatchSampler(LABELS, m=2, batch_size=8, seed=7)
    assert len(sampler) == len(LABELS) // 8
    first = list(sampler)
    assert first == list(MPerClassBatchSampler(LABELS, m=2, batch_size=8, seed=7))
    sampler.set_epoch(1)
    second = list(sampler)
    assert second != first
    assert second == list(MPerClassBatchSampler(LABELS, m=2, batch_size=8, seed=8))  # seed + epoch
    sampler.set_epoch(1)
    assert list(sampler) == second
    assert first != list(MPerClassBatchSampler(LABELS, m=2, batch_size=8, seed=8))


@pytest.mark.parametrize("m,batch_size,world_size", [(4, 16, 2), (4, 16, 4), (2, 12, 3), (4, 8, 4)])
def test_rank_slices_are_disjoint_and_union_to_the_global_batch(m, batch_size, world_size):
    single = list(MPerClassBatchSampler(LABELS, m=m, batch_size=batch_size, num_batches=6, seed=3))
    ranks = [list(MPerClassBatchSampler(LABELS, m=m, batch_size=batch_size, num_batches=6, seed=3, rank=r,
                                        world_size=world_size)) for r in range(world_size)]
    for step, global_batch in enumerate(single):
        parts = [ranks[r][step] for r in range(world_size)]
        assert all(len(p) == batch_size // world_size for p in parts)
        assert sum(parts, []) == global_batch
        if (batch_size // world_size) % m == 0:  # slices hold whole classes
            assert all(set(class_counts(p).values()) == {m} for p in parts)


@pytest.mark.parametrize("kwargs,field", [
    (dict(m=3, batch_size=16), "divisible by samples_per_class"),
    (dict(m=4, batch_size=16, world_size=3), "divisible by world_size"),
    (dict(m=1, batch_size=13), "needs 13 classes"),
    (dict(m=0, batch_size=16), "samples_per_class"),
    (dict(m=4, batch_size=16, num_batches=0), "num_batches"),
    (dict(m=4, batch_size=16, rank=2, world_size=2), "rank=2"),
])
def test_invalid_settings_name_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        MPerClassBatchSampler(LABELS, **kwargs)


# ----------------------------------------------------------------------------- SPC-2 pairs (sampler: pairs)
from robustdml.data import PairBatchSampler  # noqa: E402


def test_pair_batches_are_anchor_then_a_positive_of_its_class():
    sampler = PairBatchSampler(LABELS, batch_size=16, seed=2)
    assert len(sampler) == 120 // 8
    for batch in sampler:
        assert len(batch) == 16
        anchors, positives = batch[0::2], batch[1::2]
        assert (LABELS[anchors] == LABELS[positives]).all()
        assert len(set(LABELS[batch].tolist())) > 1  # classes of a batch vary (and may repeat across pairs)


def test_every_item_is_an_anchor_once_per_epoch():
    sampler = PairBatchSampler(LABELS, batch_size=16, seed=2)
    for epoch in (0, 1):
        sampler.set_epoch(epoch)
        anchors = [i for batch in sampler for i in batch[0::2]]
        assert sorted(anchors) == list(range(len(LABELS)))
    # 120 items in chunks of 7 anchors: 18 batches, all full; the last one completed by the next permutation
    uneven = PairBatchSampler(LABELS, batch_size=14, seed=2)
    batches = list(uneven)
    assert len(batches) == 18 and all(len(batch) == 14 for batch in batches)
    anchors = [i for batch in batches for i in batch[0::2]]
    assert set(anchors) == set(range(len(LABELS))) and len(anchors) - len(set(anchors)) == 18 * 7 - 120


def test_positives_are_random_members_of_the_class():
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 1, 2])
    seen = {}
    for epoch in range(30):
        sampler = PairBatchSampler(labels, batch_size=6, seed=0)
        sampler.set_epoch(epoch)
        for batch in sampler:
            for a, p in zip(batch[0::2], batch[1::2]):
                assert labels[a] == labels[p]
                seen.setdefault(a, set()).add(p)
    assert seen[8] == {8}  # a class of one: the anchor is its own positive (as in the reference)
    assert all(seen[a] == set(np.flatnonzero(labels == labels[a])) for a in range(8))  # the anchor included


def test_pair_batches_are_deterministic_per_seed_and_epoch():
    first = list(PairBatchSampler(LABELS, batch_size=16, seed=5))
    assert first == list(PairBatchSampler(LABELS, batch_size=16, seed=5))
    assert first != list(PairBatchSampler(LABELS, batch_size=16, seed=6))
    sampler = PairBatchSampler(LABELS, batch_size=16, seed=5)
    sampler.set_epoch(1)
    assert list(sampler) == list(PairBatchSampler(LABELS, batch_size=16, seed=6)) != first


@pytest.mark.parametrize("batch_size,world_size", [(16, 2), (16, 4), (12, 3), (16, 8)])
def test_pair_rank_slices_keep_pairs_and_union_to_the_global_batch(batch_size, world_size):
    single = list(PairBatchSampler(LABELS, batch_size=batch_size, num_batches=5, seed=3))
    ranks = [list(PairBatchSampler(LABELS, batch_size=batch_size, num_batches=5, seed=3, rank=r,
                                   world_size=world_size)) for r in range(world_size)]
    for step, global_batch in enumerate(single):
        parts = [ranks[r][step] for r in range(world_size)]
        assert sum(parts, []) == global_batch
        for part in parts:  # every slice holds whole (anchor, positive) pairs
            assert len(part) % 2 == 0 and (LABELS[part[0::2]] == LABELS[part[1::2]]).all()


@pytest.mark.parametrize("kwargs,field", [
    (dict(batch_size=15), "must be even"),
    (dict(batch_size=12, world_size=4), "odd share"),
    (dict(batch_size=16, world_size=3), "divisible by world_size"),
    (dict(batch_size=16, num_batches=0), "num_batches"),
])
def test_invalid_pair_settings_name_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        PairBatchSampler(LABELS, **kwargs)
