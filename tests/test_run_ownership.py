"""A run directory is never lost: one owner at a time, no silent overwrite, honest resume and evaluation.

Each test reproduces a command of issue #14's "What we found" and asserts the new behaviour.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import SYNTHETIC

from robustdml.cli import main
from robustdml.engine.run_dir import RunDirectory, RunDirectoryError, RunLock


def _rows(run: Path):
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def _epochs(run: Path):
    return [row["epoch"] for row in _rows(run) if "epoch" in row and not row.get("final")]


def _train_process(output: Path, *extra: str, epochs: str = "2"):
    return [sys.executable, "-m", "robustdml.cli", "train", *SYNTHETIC, "--epochs", epochs, "--output", str(output),
            *extra]


def test_two_trainings_into_one_directory_the_second_fails_at_once_naming_the_first(tmp_path):
    """What we found: two `robustdml train ... --output D` at once both exit 0, their files interleaved."""
    run = tmp_path / "run"
    first = subprocess.Popen(_train_process(run, epochs="3"), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    lock = run / RunLock.FILE
    deadline = time.time() + 120
    while time.time() < deadline and first.poll() is None and not (lock.is_file() and lock.read_text().strip()):
        time.sleep(0.05)
    assert first.poll() is None, "the first training ended before it could be caught holding the lock"
    first.send_signal(signal.SIGSTOP)  # hold it mid-run, lock taken, while the second one tries
    try:
        second = subprocess.run(_train_process(run), capture_output=True, text=True, timeout=300)
    finally:
        first.send_signal(signal.SIGCONT)
    assert second.returncode == 2
    err = second.stderr.strip()
    assert len(err.splitlines()) == 1 and err.startswith(f"error: {run} is in use by process {first.pid}")
    assert "robustdml train" in err
    assert first.wait(timeout=300) == 0, first.stderr.read()
    assert _epochs(run) == [1, 2, 3], "the first run's files were touched by the second"
    assert not lock.read_text(), "the holder's details are cleared on release"


def test_evaluate_and_attack_fail_at_once_while_another_process_holds_the_run(run_copy, capsys):
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys; from robustdml.engine.run_dir import RunLock\n"
         "RunLock(sys.argv[1], command='robustdml train (test)').acquire(); print('held', flush=True)\n"
         "sys.stdin.read()", str(run_copy)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert main(["evaluate", str(run_copy), "--device", "cpu"]) == 2
        assert f"{run_copy} is in use by process {holder.pid}" in capsys.readouterr().err
        assert main(["attack", str(run_copy), "--device", "cpu", "--max-queries", "10", "--steps", "1"]) == 2
        assert "robustdml train (test)" in capsys.readouterr().err
    finally:
        holder.communicate("", timeout=60)  # closing its stdin ends it
    assert not (run_copy / "robustness").exists() and not (run_copy / "evaluation.json").exists()
    assert main(["evaluate", str(run_copy), "--device", "cpu"]) == 0  # free once the holder is gone


def test_training_into_a_finished_run_is_refused_and_overwrite_replaces_it_with_its_reports(run_copy, capsys):
    """What we found: training into a finished run overwrote its checkpoints and config, appended to its
    metrics and left its old evaluation and robustness reports in place."""
    assert main(["evaluate", str(run_copy), "--device", "cpu"]) == 0
    (run_copy / "robustness").mkdir()
    (run_copy / "robustness" / "report.md").write_text("old report")
    before = {p: p.read_bytes() for p in run_copy.rglob("*") if p.is_file() and p.name != RunLock.FILE}
    capsys.readouterr()
    assert main(["train", *SYNTHETIC, "--epochs", "1", "--lr", "0.01", "--output", str(run_copy)]) == 2
    err = capsys.readouterr().err
    assert "already holds a run" in err and "--resume" in err and "--overwrite" in err
    assert before == {p: p.read_bytes() for p in before}, "a refused command changed the run"

    assert main(["train", *SYNTHETIC, "--epochs", "1", "--lr", "0.01", "--output", str(run_copy), "--overwrite"]) == 0
    assert not (run_copy / "robustness").exists() and not (run_copy / "evaluation.json").exists()
    assert _epochs(run_copy) == [1] and sum(1 for row in _rows(run_copy) if row.get("final")) == 1
    assert "lr: 0.01" in (run_copy / "config.yaml").read_text()


def test_overwrite_never_deletes_a_folder_that_is_not_a_run(tmp_path, capsys):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "thesis.tex").write_text("precious")
    assert main(["train", *SYNTHETIC, "--epochs", "1", "--output", str(folder), "--overwrite"]) == 2
    assert "not a run directory" in capsys.readouterr().err
    assert (folder / "thesis.tex").read_text() == "precious"


@pytest.mark.parametrize("flags,field", [
    (["--lr", "0.5", "--epochs", "5"], "lr (0.001 -> 0.5)"),
    (["--dataset", "fashion-mnist"], "dataset ('synthetic-gaussian' -> 'fashion-mnist')"),
    (["--loss-option", "margin=0.5"], "loss_options.margin ('unset' -> 0.5)"),
    (["--config", "CONFIG"], "seed (0 -> 3)"),
])
def test_resume_refuses_changed_flags_naming_them(run_copy, tmp_path, capsys, flags, field):
    """What we found: `train --resume D --lr 0.5 --epochs 5` (or --dataset, --config) ignored the changes."""
    if "CONFIG" in flags:
        (tmp_path / "c.yaml").write_text("seed: 3\nepochs: 2\n")
        flags = ["--config", str(tmp_path / "c.yaml")]
    before = (run_copy / "metrics.jsonl").read_text()
    assert main(["train", "--resume", str(run_copy), *flags]) == 2
    err = capsys.readouterr().err
    assert f"cannot change {field}" in err and "another --output" in err
    assert (run_copy / "metrics.jsonl").read_text() == before


def test_resume_applies_and_records_resume_safe_changes(run_copy, capsys):
    assert main(["train", "--resume", str(run_copy), "--epochs", "3", "--device", "cpu", "--num-workers", "0"]) == 0
    assert "epochs: 3" in (run_copy / "config.yaml").read_text()
    assert _epochs(run_copy) == [1, 2, 3]
    events = [row for row in _rows(run_copy) if row.get("event") == "resume"]
    assert events == [{"event": "resume", "resumed_at_step": 12, "changed": {"epochs": [2, 3]},
                       "removed": ["results.json"]}]
    assert [row["epochs"] for row in _rows(run_copy) if row.get("final")] == [3]
    assert json.loads((run_copy / "results.json").read_text())["epochs"] == 3
    assert main(["train", "--resume", str(run_copy), "--epochs", "2"]) == 2
    assert "finished after 3 epochs" in capsys.readouterr().err


def test_resuming_a_finished_run_does_not_finish_it_again(run_copy, capsys):
    """What we found: resuming a finished run appended another final row each time."""
    before = {p: p.read_bytes() for p in run_copy.rglob("*") if p.is_file() and p.name != RunLock.FILE}
    for _ in range(2):
        assert main(["train", "--resume", str(run_copy)]) == 0
        assert "nothing to do" in capsys.readouterr().err
    assert before == {p: p.read_bytes() for p in before}


class _Killed(BaseException):
    """Stands for SIGKILL: nothing after it runs (the lock goes, as the kernel drops a dead process's flock)."""


def test_a_kill_right_after_an_epochs_metrics_row_does_not_log_that_epoch_twice(tmp_path, monkeypatch):
    """What we found: a kill -9 right after an epoch's metrics line, then resume: two rows for that epoch."""
    run = tmp_path / "run"
    original = RunDirectory.log_metrics

    def log_then_die(self, record):
        original(self, record)
        if record.get("epoch") == 2:  # epoch 2's row is on disk, its end-of-epoch checkpoint is not
            raise _Killed()

    monkeypatch.setattr(RunDirectory, "log_metrics", log_then_die)
    with pytest.raises(_Killed):
        main(["train", *SYNTHETIC, "--epochs", "3", "--output", str(run)])
    monkeypatch.setattr(RunDirectory, "log_metrics", original)
    assert _epochs(run) == [1, 2]
    assert torch.load(run / "checkpoints" / "last.pt", weights_only=True)["global_step"] == 8  # mid-epoch 2
    assert main(["train", "--resume", str(run)]) == 0
    assert _epochs(run) == [1, 2, 3]
    assert [row["step"] for row in _rows(run) if "epoch" in row and not row.get("final")] == [6, 12, 18]
    assert sum(1 for row in _rows(run) if row.get("final")) == 1


def test_a_missing_best_checkpoint_is_refused_not_replaced_by_last(run_copy, capsys):
    """What we found: with best.pt missing, `evaluate` silently used last.pt and recorded "checkpoint": "best"."""
    (run_copy / "checkpoints" / "best.pt").unlink()
    assert main(["evaluate", str(run_copy), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert "best.pt does not exist" in err and "--checkpoint last" in err
    assert main(["evaluate", str(run_copy), "--device", "cpu", "--checkpoint", "last"]) == 0
    record = json.loads((run_copy / "evaluation-last.json").read_text())
    assert record["checkpoint"] == "last" and record["bn"] == "clean" and record["step"] == 12
    assert not (run_copy / "evaluation.json").exists()


def test_a_run_without_validation_records_that_its_last_checkpoint_was_used(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", *SYNTHETIC, "--epochs", "1", "--val-fraction", "0", "--output", str(run)]) == 0
    assert main(["evaluate", str(run), "--device", "cpu"]) == 0
    record = json.loads((run / "evaluation.json").read_text())
    assert record["checkpoint"] == "last" and record["checkpoint_file"].endswith("last.pt")


def test_another_batch_norm_gets_its_own_report_folder(tmp_path, capsys):
    """What we found: `attack D --bn uax` overwrote the clean-BN report and recorded no BN."""
    run = tmp_path / "mdprop"
    assert main(["train", *SYNTHETIC, "--epochs", "1", "--steps-per-epoch", "2", "--defense", "mdprop",
                 "--attack-steps", "1", "--output", str(run)]) == 0
    attack = ["attack", str(run), "--device", "cpu", "--attacks", "nn", "--eps", "0.1", "--steps", "1",
              "--max-queries", "20", "--no-sanity-checks", "--no-progress"]
    assert main([*attack, "--bn", "uax"]) == 0
    assert (run / "robustness-bn-uax").is_dir() and not (run / "robustness").exists()
    assert main(attack) == 0
    assert (run / "robustness").is_dir()
    assert main(["evaluate", str(run), "--device", "cpu", "--bn", "uax"]) == 0
    assert json.loads((run / "evaluation-bn-uax.json").read_text())["bn"] == "uax"


def test_lock_is_reentrant_in_one_process(tmp_path):
    with RunLock(tmp_path / "run", create=True):
        with RunLock(tmp_path / "run"):  # e.g. a command that trains and then evaluates
            pass
        assert (tmp_path / "run" / RunLock.FILE).read_text(), "the inner release kept the outer lock"
    assert not (tmp_path / "run" / RunLock.FILE).read_text()
    with pytest.raises(RunDirectoryError, match="not a run directory"):
        RunDirectory.open(tmp_path / "run")
    with pytest.raises(RunDirectoryError, match="does not exist"):
        RunLock(tmp_path / "typo").acquire()
    assert not (tmp_path / "typo").exists(), "locking a run that is not there must not create it"
