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


def test_the_key_names_the_test_data(natural_fmnist_run, tmp_path):
    """Editing test_per_class (or the files of an image folder) changes the test items: never the same key."""
    import yaml

    run = tmp_path / "run"
    shutil.copytree(natural_fmnist_run[0], run)
    base = AttackProtocol(spec=AttackSpec(max_queries=50))
    key = robustness_key(run, base, seed=0)
    config = yaml.safe_load((run / "config.yaml").read_text())
    config["test_per_class"] = (config.get("test_per_class") or 100) + 1
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    assert robustness_key(run, base, seed=0) != key


def test_an_image_folder_listing_changes_the_data_digest(tmp_path):
    from robustdml.robustness.store import folder_listing_digest

    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "1.png").write_bytes(b"x")
    before = folder_listing_digest(tmp_path)
    assert folder_listing_digest(tmp_path) == before
    (tmp_path / "a" / "2.png").write_bytes(b"y")
    assert folder_listing_digest(tmp_path) != before


def test_a_torn_stored_result_is_computed_again_and_says_so(natural_fmnist_run, tmp_path, capsys):
    from robustdml.robustness.store import RunSource, robustness_for

    run = tmp_path / "run"
    shutil.copytree(natural_fmnist_run[0], run)
    protocol = AttackProtocol(spec=AttackSpec(attacks=("nn",), eps=(0.05,), steps=2, max_queries=20, probe_queries=0,
                                              sanity_checks=False))
    first = robustness_for(run, protocol, 0, device="cpu", progress=False)
    stored = RunSource.open(run).folder(protocol, 0) / "robustness.json"
    text = stored.read_text()
    for torn in ("", text[: len(text) // 2]):
        stored.write_text(torn)
        again = robustness_for(run, protocol, 0, device="cpu", progress=False)
        assert f"the stored result {stored} cannot be read" in capsys.readouterr().err
        assert again.worst_case[0.05].correct == first.worst_case[0.05].correct
        assert stored.read_text() == text or stored.stat().st_size > 0
