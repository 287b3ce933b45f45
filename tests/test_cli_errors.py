"""One error path: a user mistake exits 2 with one line naming the file/field/value and the fix, before
anything is written; a runtime failure exits 1 saying where the last good checkpoint is; --debug shows the
traceback; Ctrl-C says the truth for each command. Each case is a command of issue #14's "What we found"."""

import errno

import pytest
import torch
from conftest import SYNTHETIC

from robustdml.cli import main
from robustdml.engine.config import TrainConfig


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("error: "), err
    assert "Traceback" not in err
    return err


@pytest.mark.parametrize("flags,fragment", [
    (["--device", "banana"], "device='banana'"),
    (["--embedding-dim", "100000000"], "embedding_dim=100000000: must be at most"),
    (["--loss-option", "margin=abc"], "option margin must be a finite number"),
    (["--defense", "robust-triplet", "--defense-option", "perturb=elbow"], "perturb must be one of"),
    (["--defense", "robust-triplet", "--defense-option", "attack_rte=0.5"], "unknown option(s) attack_rte"),
    (["--defense", "robust-triplet", "--eps", "nan"], "defense_options.eps=nan: must be a finite number"),
    (["--defense-option", "eps"], "--defense-option expects key=value"),
    (["--model", "convnet"], "model 'convnet' takes images"),
    (["--dataset", "fashion-mnist", "--data-root", "NOWHERE"], "does not exist"),
])
def test_user_mistakes_exit_2_in_one_line_before_anything_is_written(flags, fragment, tmp_path, capsys):
    """What we found: `--device banana`, `--embedding-dim 100000000`, `--loss-option margin=abc` (only at the
    first step, after writing the run directory) ended in tracebacks; a bad `--defense-option` or `--eps nan`
    left an empty run directory behind."""
    flags = [str(tmp_path / "nowhere") if flag == "NOWHERE" else flag for flag in flags]
    run = tmp_path / "run"
    assert main(["train", *SYNTHETIC, "--epochs", "1", *flags, "--output", str(run)]) == 2
    assert fragment in _one_error_line(capsys)
    assert not run.exists(), "a rejected command left a run directory behind"


@pytest.mark.parametrize("text,fragment", [
    ("epochs: true\n", "epochs=True: must be a whole number"),
    ('progress: "no"\n', "progress='no': must be true or false (write it without quotes"),
    ('lr: "1e-3"\n', "lr='1e-3': must be a number or null (write it without quotes"),
    ('seed: "abc"\n', "seed='abc': must be a whole number"),
    ("", "is empty"),
    ("# nothing set\n", "is empty"),
    ("epochs: [3\n", "is not valid YAML"),
    ("learning_rate: 0.1\n", "unknown field(s) learning_rate"),
])
def test_yaml_values_are_typed_and_an_empty_file_is_refused(text, fragment, tmp_path, capsys):
    """What we found: YAML `epochs: true` trained 1 epoch, `progress: "no"` showed bars, an empty file started a
    full default run, and `lr: "1e-3"` or `seed: "abc"` ended in tracebacks."""
    config = tmp_path / "config.yaml"
    config.write_text(text)
    run = tmp_path / "run"
    assert main(["train", "--config", str(config), "--output", str(run)]) == 2
    line = _one_error_line(capsys)
    assert str(config) in line and fragment in line
    assert not run.exists()


def test_yaml_scientific_notation_is_a_number(tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text("lr: 1e-3\nweight_decay: 5E-4\nprogress: false\n")
    loaded = TrainConfig.load(config)
    assert loaded.lr == 0.001 and loaded.weight_decay == 0.0005 and loaded.progress is False


@pytest.mark.parametrize("damage", ["truncated", "zero bytes"])
def test_damaged_checkpoints_exit_2_in_one_line_naming_the_file(run_copy, capsys, damage):
    """What we found: a truncated checkpoint (CheckpointError uncaught) and a zero-byte one (IndexError in the
    error message code) ended in tracebacks."""
    best = run_copy / "checkpoints" / "best.pt"
    best.write_bytes(best.read_bytes()[:300] if damage == "truncated" else b"")
    assert main(["evaluate", str(run_copy), "--device", "cpu"]) == 2
    line = _one_error_line(capsys)
    assert str(best) in line and ("empty (0 bytes)" in line if damage == "zero bytes" else "corrupt or truncated" in line)


def test_disk_full_exits_1_naming_the_last_good_checkpoint(tmp_path, capsys, monkeypatch):
    """What we found: a full disk ended in a traceback."""
    from robustdml.engine import trainer

    saves = []
    original = trainer.save_checkpoint

    def save_until_full(state, path):
        saves.append(path)
        if len(saves) > 1:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        original(state, path)

    monkeypatch.setattr(trainer, "save_checkpoint", save_until_full)
    run = tmp_path / "run"
    assert main(["train", *SYNTHETIC, "--epochs", "2", "--output", str(run)]) == 1
    line = _one_error_line(capsys)
    assert "the disk is full" in line and "No space left on device" in line
    assert f"the last good checkpoint is {run / 'checkpoints' / 'last.pt'}" in line
    assert f"robustdml train --resume {run}" in line
    assert torch.load(run / "checkpoints" / "last.pt", weights_only=True)["global_step"] == 4


def test_out_of_memory_is_a_runtime_failure(tmp_path, capsys, monkeypatch):
    from robustdml.engine.trainer import Trainer

    def out_of_memory(self, images, labels):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    monkeypatch.setattr(Trainer, "train_step", out_of_memory)
    assert main(["train", *SYNTHETIC, "--epochs", "1", "--output", str(tmp_path / "run")]) == 1
    line = _one_error_line(capsys)
    assert "out of memory" in line and "no checkpoint was written yet" in line


def test_debug_shows_the_traceback_and_unexpected_errors_say_internal_error(tmp_path, capsys, monkeypatch):
    assert main(["train", *SYNTHETIC, "--device", "banana", "--debug", "--output", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and err.strip().splitlines()[-1].startswith("error: invalid device")
    from robustdml.engine.trainer import Trainer

    def bug(self):
        raise KeyError("oops")

    monkeypatch.setattr(Trainer, "fit", bug)
    assert main(["train", *SYNTHETIC, "--output", str(tmp_path / "b")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("internal error: KeyError") and "--debug" in err and len(err.splitlines()) == 1


def test_ctrl_c_in_train_names_the_real_run_directory(tmp_path, capsys, monkeypatch):
    """What we found: Ctrl-C printed the literal text `RUN_DIR`."""
    from robustdml.engine.trainer import Trainer

    original = Trainer.train_step
    calls = []

    def interrupted_step(self, images, labels):
        calls.append(1)
        if len(calls) == 6:
            raise KeyboardInterrupt
        return original(self, images, labels)

    monkeypatch.setattr(Trainer, "train_step", interrupted_step)
    run = tmp_path / "run"
    assert main(["train", *SYNTHETIC, "--epochs", "2", "--output", str(run)]) == 130
    err = capsys.readouterr().err.strip()
    assert "RUN_DIR" not in err
    assert err == (f"interrupted; the last good checkpoint is {run / 'checkpoints' / 'last.pt'}; continue with "
                   f"`robustdml train --resume {run}`")
    monkeypatch.setattr(Trainer, "train_step", original)
    assert main(["train", "--resume", str(run)]) == 0


def test_ctrl_c_in_attack_does_not_suggest_a_resume_it_lacks(run_copy, capsys, monkeypatch):
    """What we found: Ctrl-C in `attack` suggested a `--resume` that `attack` lacks."""
    from robustdml.robustness import evaluate as suite

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(suite, "evaluate_robustness", interrupted)
    assert main(["attack", str(run_copy), "--device", "cpu"]) == 130
    err = capsys.readouterr().err.strip()
    assert "--resume" not in err and "RUN_DIR" not in err and "no report was written" in err
