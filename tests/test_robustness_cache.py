"""Cached robustness results are keyed by everything that decides them: the whole attack spec, the
checkpoint actually loaded (by the digest of its weights), the batch norm and the attack seed."""

import shutil

import torch

from robustdml.robustness.spec import AttackSpec
from robustdml.robustness.store import robustness_key
from robustdml.robustness.spec import AttackProtocol


def test_every_input_of_a_result_changes_its_key(natural_fmnist_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(natural_fmnist_run[0], run)
    base = AttackProtocol(spec=AttackSpec(max_queries=50))
    key = robustness_key(run, base, seed=0)
    assert key == robustness_key(run, AttackProtocol(spec=AttackSpec(max_queries=50)), seed=0)
    others = {
        robustness_key(run, AttackProtocol(spec=AttackSpec(max_queries=50, eps=(0.02,))), seed=0),
        robustness_key(run, AttackProtocol(spec=AttackSpec(max_queries=50, attacks=("nn",))), seed=0),
        robustness_key(run, base, seed=1),
        robustness_key(run, base, seed=0, bn="stax"),
        robustness_key(run, base, seed=0, checkpoint="last"),
    }
    assert key not in others and len(others) == 5
    state = torch.load(run / "checkpoints" / "best.pt", weights_only=True)
    first = next(iter(state["model"]))
    state["model"][first] = state["model"][first] + 1.0  # "retrained": other weights, same file name
    torch.save(state, run / "checkpoints" / "best.pt")
    assert robustness_key(run, base, seed=0) != key
