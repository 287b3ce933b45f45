"""End-to-end training through the CLI: run directory, evaluation, bad input, crash safety."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from robustdml.cli import main

FMNIST = Path("/usr/share/datasets/fashion-mnist")
SYNTHETIC = ["--dataset", "synthetic-gaussian", "--no-progress", "--device", "cpu"]


def test_train_and_evaluate_synthetic_run(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", *SYNTHETIC, "--epochs", "3", "--output", str(run)]) == 0
    for name in ("config.yaml", "metrics.jsonl", "results.json", "checkpoints/last.pt", "checkpoints/best.pt"):
        assert (run / name).is_file(), name
    assert list((run / "tb").iterdir()), "TensorBoard events missing"
    results = json.loads((run / "results.json").read_text())
    assert results["test/R@1"] > 0.95  # two well separated Gaussians
    epochs = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [record["epoch"] for record in epochs if "epoch" in record and not record.get("final")] == [1, 2, 3]
    capsys.readouterr()
    assert main(["evaluate", str(run)]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics["R@1"] == pytest.approx(results["test/R@1"])
    assert set(metrics) >= {"R@1", "R@2", "R@4", "R@8", "mAP@R", "NMI"}


@pytest.mark.parametrize("arguments,fragment", [
    (["--dataset", "imagenet"], "valid dataset names"),
    (["--loss", "arcface"], "valid loss names"),
    (["--defense", "magic"], "valid defense names"),
    (["--eps", "-1"], "eps"),
    (["--attack-rate", "2"], "attack_rate"),
    (["--batch-size", "100", "--samples-per-class", "16"], "batch_size"),
])
def test_bad_input_is_rejected_before_any_work(arguments, fragment, tmp_path, capsys):
    code = main(["train", *SYNTHETIC, "--output", str(tmp_path / "run"), *arguments])
    assert code == 2
    assert fragment in capsys.readouterr().err
    assert not (tmp_path / "run").exists(), "no run directory may be created for invalid input"


def _train_command(output: Path, *extra: str):
    return [sys.executable, "-m", "robustdml.cli", "train", "--dataset", "fashion-mnist", "--train-per-class", "60",
            "--test-per-class", "30", "--epochs", "3", "--steps-per-epoch", "12", "--batch-size", "64",
            "--checkpoint-every", "4", "--no-progress", "--device", "cpu", "--output", str(output), *extra]


@pytest.mark.slow
@pytest.mark.skipif(not FMNIST.is_dir(), reason="needs Debian's dataset-fashion-mnist")
def test_sigkill_then_resume_matches_an_uninterrupted_run(tmp_path):
    reference = tmp_path / "reference"
    subprocess.run(_train_command(reference), check=True, capture_output=True, timeout=600)

    crashed = tmp_path / "crashed"
    process = subprocess.Popen(_train_command(crashed), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    checkpoint = crashed / "checkpoints" / "last.pt"
    deadline = time.time() + 300
    while not checkpoint.exists() and time.time() < deadline and process.poll() is None:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert checkpoint.exists() and not (crashed / "results.json").exists(), "the kill came too late to test resume"

    subprocess.run(_train_command(crashed)[:4] + ["--resume", str(crashed)], check=True, capture_output=True,
                   timeout=600)
    expected = json.loads((reference / "results.json").read_text())
    resumed = json.loads((crashed / "results.json").read_text())
    for key, value in expected.items():
        if key.startswith("test/"):
            assert resumed[key] == pytest.approx(value, abs=1e-6), key
