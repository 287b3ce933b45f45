"""Issue #23, run directories: recognised by robustdml's marker, overwritten only in robustdml's own entries,
never written through a symlink, cleaned of a killed writer's temporaries.

Each test reproduces a finding of the issue's "What we measured" (it fails on 8aa16af)."""

import json

import pytest
from conftest import SYNTHETIC

from robustdml.cli import main
from robustdml.engine.run_dir import RunDirectory, RunLock

MARKER = ".robustdml-run"


def _files(folder):
    return {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*") if p.is_file() and not p.is_symlink()}


def _error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and len(err.splitlines()) == 1 and "internal error" not in err, err
    return err


# ------------------------------------------------------------------------------------------- the marker
def test_overwrite_spares_a_project_folder_that_holds_its_own_config_yaml(tmp_path, capsys):
    """Found: `train --output DIR --overwrite` wiped a project folder (.git/, src/, a docker-compose style
    config.yaml), exit 0: run_dir.py only checked that config.yaml exists."""
    project = tmp_path / "project"
    (project / ".git").mkdir(parents=True)
    (project / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (project / "src").mkdir()
    (project / "src" / "app.py").write_text("print('hello')\n")
    (project / "config.yaml").write_text("version: '3'\nservices:\n  web:\n    image: nginx\n")
    before = _files(project)
    assert main(["train", *SYNTHETIC, "--epochs", "1", "--output", str(project), "--overwrite"]) == 2
    err = _error(capsys)
    assert "not a run directory" in err and MARKER in err and str(project) in err
    assert _files(project) == before


def test_an_unmarked_folder_is_overwritten_only_when_it_is_a_run_of_an_earlier_release(tmp_path, capsys):
    """The legacy rule: no marker, then config.yaml must read as a TrainConfig AND checkpoints/ must exist."""
    folder = tmp_path / "almost"
    folder.mkdir()
    (folder / "config.yaml").write_text("dataset: synthetic-gaussian\nepochs: 1\n")  # a TrainConfig, no checkpoints/
    assert main(["train", *SYNTHETIC, "--epochs", "1", "--output", str(folder), "--overwrite"]) == 2
    assert "not a run directory" in _error(capsys)
    assert (folder / "config.yaml").read_text() == "dataset: synthetic-gaussian\nepochs: 1\n"
    (folder / "checkpoints").mkdir()  # now it is what the previous release wrote
    assert main(["train", *SYNTHETIC, "--epochs", "1", "--output", str(folder), "--overwrite"]) == 0
    assert json.loads((folder / MARKER).read_text()) == {"format": "robustdml-run", "version": 1}


def test_overwrite_deletes_only_the_entries_robustdml_writes(run_copy, capsys):
    (run_copy / "notes.txt").write_text("my notes on this run")
    (run_copy / "robustness").mkdir()
    (run_copy / "evaluation-last.json").write_text("{}")
    assert main(["train", *SYNTHETIC, "--epochs", "1", "--output", str(run_copy), "--overwrite"]) == 0
    assert (run_copy / "notes.txt").read_text() == "my notes on this run"
    assert not (run_copy / "robustness").exists() and not (run_copy / "evaluation-last.json").exists()
    assert json.loads((run_copy / "results.json").read_text())["epochs"] == 1


def test_a_run_of_the_previous_release_opens_and_gets_its_marker_when_locked_for_writing(run_copy, capsys):
    """Runs written before the marker (config.yaml + checkpoints/) still evaluate; the marker comes with the lock."""
    (run_copy / MARKER).unlink()
    assert main(["evaluate", str(run_copy), "--device", "cpu"]) == 0
    assert json.loads((run_copy / MARKER).read_text()) == {"format": "robustdml-run", "version": 1}


# ------------------------------------------------------------------------------------------- symlinks
def test_a_symlinked_lock_is_refused_and_what_it_points_to_is_untouched(run_copy, tmp_path, capsys):
    """Found: the lock was opened without refusing symlinks (a symlinked .lock truncated its target)."""
    precious = tmp_path / "precious.txt"
    precious.write_text("precious")
    (run_copy / RunLock.FILE).unlink()
    (run_copy / RunLock.FILE).symlink_to(precious)
    assert main(["evaluate", str(run_copy), "--device", "cpu"]) == 2
    err = _error(capsys)
    assert str(run_copy / RunLock.FILE) in err and "symbolic link" in err
    assert precious.read_text() == "precious"
    assert not (run_copy / "evaluation.json").exists()


def test_a_dangling_symlinked_lock_creates_no_file_outside_the_run(run_copy, tmp_path, capsys):
    outside = tmp_path / "outside" / "created-by-robustdml"
    outside.parent.mkdir()
    (run_copy / RunLock.FILE).unlink()
    (run_copy / RunLock.FILE).symlink_to(outside)
    assert main(["train", "--resume", str(run_copy), "--epochs", "3"]) == 2
    assert str(run_copy / RunLock.FILE) in _error(capsys)
    assert not outside.exists()


@pytest.mark.parametrize("planted", [".evaluation.json.tmp", ".config.yaml.tmp", ".results.json.tmp"])
def test_no_write_goes_through_a_symlink_planted_at_a_temporary_name(run_copy, tmp_path, capsys, planted):
    """Found: the fixed temporary names (.evaluation.json.tmp, .config.yaml.tmp, results.json's) were written
    through symlinks."""
    outside = tmp_path / "outside.txt"
    outside.write_text("not robustdml's")
    (run_copy / planted).symlink_to(outside)
    assert main(["evaluate", str(run_copy), "--device", "cpu"]) == 0
    assert main(["train", "--resume", str(run_copy), "--epochs", "3"]) == 0  # writes config.yaml and results.json
    assert outside.read_text() == "not robustdml's"
    assert json.loads((run_copy / "results.json").read_text())["epochs"] == 3


def test_appends_to_a_symlinked_metrics_file_are_refused_naming_it(run_copy, tmp_path):
    from robustdml.files import UnsafePathError

    outside = tmp_path / "outside.jsonl"
    outside.write_text("")
    (run_copy / "metrics.jsonl").unlink()
    (run_copy / "metrics.jsonl").symlink_to(outside)
    with pytest.raises(UnsafePathError, match="metrics.jsonl is a symbolic link"):
        RunDirectory(run_copy).log_metrics({"epoch": 9})
    assert outside.read_text() == ""


@pytest.mark.parametrize("folder", ["checkpoints", "tb"])
def test_a_symlinked_checkpoints_or_tb_folder_is_refused_naming_it(run_copy, tmp_path, capsys, folder):
    """Found: symlinked checkpoints/ and tb/ received checkpoints and events outside the run."""
    elsewhere = tmp_path / f"elsewhere-{folder}"
    (run_copy / folder).rename(elsewhere)
    (run_copy / folder).symlink_to(elsewhere)
    before = _files(elsewhere)
    assert main(["train", "--resume", str(run_copy), "--epochs", "3"]) == 2
    err = _error(capsys)
    assert f"{run_copy / folder} is a symbolic link" in err
    assert _files(elsewhere) == before
    assert (run_copy / "results.json").is_file(), "the refused resume retired the run's reports"


def test_the_file_helpers_replace_a_symlink_never_write_through_it(tmp_path):
    from robustdml.files import UnsafePathError, atomic_write_json, atomic_write_text, real_subfolder

    outside = tmp_path / "outside.txt"
    outside.write_text("outside")
    run = tmp_path / "run"
    run.mkdir()
    (run / "results.json").symlink_to(outside)
    atomic_write_json(run / "results.json", {"R@1": float("nan"), "ok": [1.0, float("inf")]})
    assert outside.read_text() == "outside" and not (run / "results.json").is_symlink()
    assert json.loads((run / "results.json").read_text()) == {"R@1": None, "ok": [1.0, None]}
    with pytest.raises(ZeroDivisionError):
        atomic_write_text(run / "config.yaml", str(1 / 0))
    assert sorted(p.name for p in run.iterdir()) == ["results.json"], "a failed write left its temporary behind"
    (run / "tb").symlink_to(tmp_path)
    with pytest.raises(UnsafePathError, match="tb is a symbolic link"):
        real_subfolder(run, "tb")
    assert real_subfolder(run, "checkpoints").is_dir()


# ------------------------------------------------------------------------------------------- misreported
def test_an_output_that_is_a_file_is_a_user_error(tmp_path, capsys):
    """Found: `--output` that is a file exited 1, not 2."""
    target = tmp_path / "a-file"
    target.write_text("mine")
    assert main(["train", *SYNTHETIC, "--epochs", "1", "--output", str(target)]) == 2
    assert "is a file" in _error(capsys)
    assert main(["train", *SYNTHETIC, "--epochs", "1", "--output", str(target / "run")]) == 2
    assert target.read_text() == "mine"


def test_orphaned_temporaries_are_removed_when_the_run_is_next_locked_for_writing(run_copy):
    """Found: orphaned `.last.pt.*.tmp` files (a writer killed mid-write) were never cleaned."""
    orphans = [run_copy / "checkpoints" / ".last.pt.k3j2h1.tmp", run_copy / "checkpoints" / ".best.pt.x9y8.tmp",
               run_copy / ".config.yaml.abcd.tmp", run_copy / ".evaluation-last.json.q1w2.tmp"]
    for orphan in orphans:
        orphan.write_bytes(b"half a file")
    kept = run_copy / ".my-editor-swap.tmp"
    kept.write_text("not robustdml's")
    assert main(["evaluate", str(run_copy), "--device", "cpu"]) == 0
    assert not any(orphan.exists() for orphan in orphans)
    assert kept.read_text() == "not robustdml's"
