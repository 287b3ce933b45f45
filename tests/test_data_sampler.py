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
