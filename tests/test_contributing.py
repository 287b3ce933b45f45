"""The worked examples of CONTRIBUTING.md (examples/contributing.py) work as it says: each is one class plus
one registry line, and the library picks it up from there (flags, config checks, cache keys, suites)."""

import argparse
import contextlib

import numpy as np
import pytest
import torch

from robustdml.attacks.retrieval import RETRIEVAL_ATTACKS
from robustdml.robustness.spec import AttackSpec
from test_attack_spec import contributing_examples

EXAMPLES = contributing_examples()


@contextlib.contextmanager
def registered(registry, name, entry):
    registry.add(name, entry)
    try:
        yield
    finally:
        registry.remove(name)


def test_an_attack_with_one_option_gets_its_flag_its_key_and_really_attacks(natural_fmnist):
    from robustdml.robustness.evaluate import evaluate_robustness
    from robustdml.robustness.flags import add_spec_flags, spec_from_args

    attack = EXAMPLES.PullTowardsRandom
    with registered(RETRIEVAL_ATTACKS, attack.name, attack):
        parser = argparse.ArgumentParser()
        add_spec_flags(parser, max_queries=40)
        assert "--pull-others" in parser.format_help()
        args = parser.parse_args(["--attacks", "pull-random", "--pull-others", "3"])
        spec = spec_from_args(args, 28, 40)
        assert spec.option_values() == {"pull-random": {"others": 3}}
        assert spec.key() != spec_from_args(parser.parse_args(["--attacks", "pull-random"]), 28, 40).key()
        model, test = natural_fmnist
        quick = AttackSpec(attacks=("pull-random",), eps=(0.1,), steps=5, max_queries=40, probe_queries=0,
                           sanity_checks=False)
        result = evaluate_robustness(model, test, quick, progress=False)
        assert result.rows[0].r1.value < result.clean.value - 0.1
        assert "PULL" in result.rows[0].scores


def test_a_member_runs_in_the_ensemble_and_breaks_queries(natural_fmnist):
    from robustdml.attacks.members import MEMBERS
    from robustdml.robustness.evaluate import evaluate_robustness

    member = EXAMPLES.PushFromSecondNearest
    with registered(MEMBERS, member.name, member):
        model, test = natural_fmnist
        spec = AttackSpec(attacks=("second",), eps=(0.1,), steps=5, max_queries=40, probe_queries=0,
                          sanity_checks=False)
        result = evaluate_robustness(model, test, spec, progress=False)
        assert result.rows[0].broken_by and result.worst_case[0.1].r1.value < result.clean.value - 0.2


def test_a_defense_checks_its_option_through_the_config_and_trains():
    from robustdml.defenses import DEFENSES, build_defense
    from robustdml.engine.config import ConfigError, TrainConfig

    defense = EXAMPLES.UniformNoiseTraining
    with registered(DEFENSES, defense.name, defense):
        with pytest.raises(ConfigError, match="defense_options.width=-1: must be >= 0"):
            TrainConfig(defense="uniform-noise", defense_options={"width": -1}).resolved()
        built = build_defense("uniform-noise", width="8/255", loss="contrastive", miner="all")
        model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 4))
        images, labels = torch.rand(8, 1, 4, 4), torch.arange(4).repeat(2)
        output = built.step(model, images, labels, torch.Generator().manual_seed(0))
        assert built.width == pytest.approx(8 / 255) and output.loss.requires_grad


def test_a_dataset_is_one_builder_and_its_registry_line():
    from robustdml.data import DATASETS, build_dataset, dataset_spec
    from robustdml.data.catalog import _dataset

    try:
        _dataset("three-blobs", {"model": "mlp", "epochs": 1}, "three-blobs is generated on the fly.")(
            EXAMPLES.three_blobs)
        train = build_dataset("three-blobs", "train", per_class=10)
        assert len(train) == 30 and sorted(set(np.asarray(train.labels).tolist())) == [0, 1, 2]
        assert dataset_spec("three-blobs").input_size is None and dataset_spec("three-blobs").defaults["model"] == "mlp"
    finally:
        DATASETS.remove("three-blobs")


def test_a_suite_is_one_function_and_its_registry_line():
    from robustdml.reporting.suites import SUITES, build_suite

    with registered(SUITES, "toy-noise", EXAMPLES.blobs_suite):
        suite = build_suite("toy-noise")
        assert [run.name for run in suite.runs] == ["natural", "noise"] and suite.protocol.spec.max_queries == 50
