"""Issue #23, training and resuming: nothing is deleted before the step that replaces it has succeeded, a
resumed run computes what it started computing, checkpoints are refused when damaged, and user and disk
errors are classified as such.

Each test reproduces a finding of the issue's "What we measured" (it fails on 8aa16af)."""

import json
import math
import zipfile

import pytest
import torch
import yaml
from conftest import SYNTHETIC

from robustdml.cli import main
from robustdml.engine.checkpoint import CheckpointError, load_checkpoint
from robustdml.engine.run_dir import RunDirectory


def _error(capsys) -> str:
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("error: ") and "internal error" not in last, last
    return last


def _add_reports(run):
    (run / "evaluation.json").write_text('{"R@1": 0.5}\n')
    (run / "robustness" / "key").mkdir(parents=True)
    (run / "robustness" / "key" / "robustness.json").write_text("{}")


# ------------------------------------------------------------------------------------------- nothing lost
def test_a_failed_resume_of_a_finished_run_deletes_nothing(run_copy, capsys):
    """Found: `train --resume RUN --epochs N` with an unreadable last.pt (exit 2, "nothing written") had already
    deleted results.json, evaluation.json and the whole robustness/ cache."""
    _add_reports(run_copy)
    (run_copy / "checkpoints" / "last.pt").write_bytes(b"not a checkpoint")
    results = (run_copy / "results.json").read_bytes()
    assert main(["train", "--resume", str(run_copy), "--epochs", "3"]) == 2
    assert "last.pt" in _error(capsys)
    assert (run_copy / "evaluation.json").is_file()
    assert (run_copy / "robustness" / "key" / "robustness.json").is_file()
    assert (run_copy / "results.json").read_bytes() == results


def test_resume_refuses_a_hand_edited_config_naming_the_changed_fields(run_copy, capsys):
    """Found: `--resume` accepted a hand-edited config.yaml (other lr and seed), trained on and overwrote the
    checkpoint's stored config."""
    config = run_copy / "config.yaml"
    values = yaml.safe_load(config.read_text())
    assert values["seed"] == 0 and values["lr"] != 0.5
    config.write_text(yaml.safe_dump({**values, "lr": 0.5, "seed": 7}, sort_keys=False))
    last = (run_copy / "checkpoints" / "last.pt").read_bytes()
    assert main(["train", "--resume", str(run_copy), "--epochs", "3"]) == 2
    err = _error(capsys)
    assert "config.yaml" in err and "last.pt" in err and "seed (0 -> 7)" in err and "lr (" in err, err
    assert (run_copy / "checkpoints" / "last.pt").read_bytes() == last
    assert (run_copy / "results.json").is_file()


def test_a_sampler_error_leaves_no_half_made_run_directory(tmp_path, capsys):
    """Found: a user error found after the run directory was created (the sampler needs more classes than the
    data has) left .lock and an empty checkpoints/, and then the fixed command, --overwrite and --resume all
    refused."""
    run = tmp_path / "new" / "run"
    assert main(["train", *SYNTHETIC, "--epochs", "1", "--samples-per-class", "4", "--output", str(run)]) == 2
    assert "samples_per_class" in _error(capsys)
    assert not (tmp_path / "new").exists()
    assert main(["train", *SYNTHETIC, "--epochs", "1", "--output", str(run)]) == 0


# ------------------------------------------------------------------------------------------- checkpoints
def _largest_member_offset(path):
    with zipfile.ZipFile(path) as archive:
        info = max(archive.infolist(), key=lambda item: item.file_size)
    with open(path, "rb") as handle:
        handle.seek(info.header_offset + 26)
        name_length, extra_length = (int.from_bytes(handle.read(2), "little") for _ in range(2))
    return info.header_offset + 30 + name_length + extra_length + info.file_size // 2


def test_a_bit_flipped_checkpoint_is_refused_naming_the_file(run_copy, capsys):
    """Found: a bit-flipped checkpoint (bad zip CRC) loaded silently: torch's reader does not check CRCs."""
    best = run_copy / "checkpoints" / "best.pt"
    data = bytearray(best.read_bytes())
    data[_largest_member_offset(best)] ^= 0x10
    best.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="best.pt is damaged"):
        load_checkpoint(best)
    assert main(["evaluate", str(run_copy), "--device", "cpu"]) == 2
    assert "best.pt is damaged" in _error(capsys)


def test_a_config_that_does_not_fit_the_checkpoint_is_a_user_error_naming_the_field(run_copy, capsys):
    """Found: a config/checkpoint embedding_dim mismatch was an "internal error"."""
    config = run_copy / "config.yaml"
    config.write_text(config.read_text().replace("\nembedding_dim: 2\n", "\nembedding_dim: 3\n"))
    assert main(["evaluate", str(run_copy), "--device", "cpu"]) == 2
    err = _error(capsys)
    assert "embedding_dim is 2 in the checkpoint but 3 in config.yaml" in err and "best.pt" in err


def test_a_full_disk_while_torch_writes_a_checkpoint_is_a_runtime_failure(tmp_path, capsys, monkeypatch):
    """Found: disk full while writing a checkpoint was "internal error (a bug in robustdml)": torch raises a
    RuntimeError, not an OSError."""
    def failing_save(obj, handle, *args, **kwargs):
        raise RuntimeError("[enforce fail at inline_container.cc:603] . unexpected pos 64 vs 0")

    monkeypatch.setattr(torch, "save", failing_save)
    monkeypatch.setattr("os.statvfs", lambda path: type("V", (), {"f_bavail": 0, "f_frsize": 4096})())
    run = tmp_path / "run"
    assert main(["train", *SYNTHETIC, "--epochs", "1", "--output", str(run)]) == 1
    err = capsys.readouterr().err.strip()
    assert "internal error" not in err and "the disk is full" in err and "last.pt" in err, err
    assert not [p for p in (run / "checkpoints").iterdir()], "the failed write left its temporary behind"


def test_an_epochs_loss_after_a_mid_epoch_kill_and_resume_averages_the_whole_epoch(tmp_path, monkeypatch):
    """Found: after a mid-epoch kill and resume, that epoch's train_loss averaged only the resumed steps."""
    from robustdml.engine.trainer import Trainer

    whole = tmp_path / "whole"
    assert main(["train", *SYNTHETIC, "--epochs", "1", "--output", str(whole)]) == 0
    step = Trainer.train_step
    calls = []

    def killed_after_five(self, images, labels):
        calls.append(1)
        if len(calls) == 6:  # the checkpoint of step 4 is on disk; step 5 ran and is lost
            raise KeyboardInterrupt
        return step(self, images, labels)

    monkeypatch.setattr(Trainer, "train_step", killed_after_five)
    resumed = tmp_path / "resumed"
    assert main(["train", *SYNTHETIC, "--epochs", "1", "--output", str(resumed)]) == 130
    monkeypatch.setattr(Trainer, "train_step", step)
    assert main(["train", "--resume", str(resumed)]) == 0

    def epoch_loss(run):
        return [row["train_loss"] for row in RunDirectory(run).read_metrics() if row.get("epoch") == 1]

    assert epoch_loss(resumed) == pytest.approx(epoch_loss(whole), rel=1e-6)


# ------------------------------------------------------------------------------------------- files read
def test_duplicate_yaml_keys_are_refused_naming_the_key_and_lines(tmp_path, capsys):
    """Found: duplicate YAML keys were accepted (the last one won silently)."""
    config = tmp_path / "train.yaml"
    config.write_text("dataset: synthetic-gaussian\nlr: 0.001\nepochs: 1\nlr: 0.1\n")
    assert main(["train", "--config", str(config), "--device", "cpu", "--output", str(tmp_path / "run")]) == 2
    err = _error(capsys)
    assert str(config) in err and "'lr' is set twice (lines 2 and 4)" in err
    assert not (tmp_path / "run").exists()


def test_results_json_is_strict_json_and_its_nulls_read_back_as_not_measured(tmp_path):
    """Found: a bare NaN in results.json (invalid JSON for any strict reader)."""
    run = RunDirectory(tmp_path)
    run.write_json("results.json", {"R@1": 0.5, "NMI": math.nan})

    def refuse(constant):
        raise ValueError(f"not JSON: {constant}")

    assert json.loads(run.results_path.read_text(), parse_constant=refuse) == {"R@1": 0.5, "NMI": None}
    results = run.read_results()
    assert results["R@1"] == 0.5 and math.isnan(results["NMI"])


def test_a_torn_results_json_is_an_error_naming_the_file(run_copy, capsys):
    """Found: a torn JSON file failed with "Expecting value: line 1 column 1", naming no file."""
    (run_copy / "results.json").write_text('{"R@1": 0.')
    assert main(["train", "--resume", str(run_copy), "--epochs", "2"]) == 2
    assert str(run_copy / "results.json") in _error(capsys)


def test_a_torn_last_line_of_metrics_jsonl_is_skipped_with_a_warning_naming_the_file(run_copy, capsys):
    """Found: a torn last line of metrics.jsonl blocked `report` (a JSON error naming no file)."""
    metrics = run_copy / "metrics.jsonl"
    rows = len(metrics.read_text().splitlines())
    with open(metrics, "a") as handle:
        handle.write('{"epoch": 3, "train_lo')
    assert len(RunDirectory(run_copy).read_metrics()) == rows
    err = capsys.readouterr().err
    assert f"warning: {metrics}: line {rows + 1}" in err
