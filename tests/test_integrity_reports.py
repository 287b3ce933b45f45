"""Issue #23, reports and benchmarks: a report never replaces a run's own files, a run label is text (never a
link the label's author chose), and a benchmark never reuses a run trained with other settings.

Each test reproduces a finding of the issue's "What we measured" (it fails on 8aa16af)."""

from pathlib import Path

import pytest

from robustdml.cli import main
from robustdml.engine.config import ConfigError, TrainConfig
from robustdml.reporting.blocks import Column, Paragraph, Table, link, to_html, to_markdown

INJECTED = "[click me](javascript:alert(document.cookie))"


def _error(capsys) -> str:
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("error: ") and "internal error" not in last, last
    return last


def _must_not_run(name):
    def refuse(*args, **kwargs):
        raise AssertionError(f"{name} ran")

    return refuse


# ------------------------------------------------------------------------------------------- report --output
@pytest.mark.parametrize("inside", ["", "report"])
def test_report_refuses_an_output_in_a_run_directory(run_copy, capsys, monkeypatch, inside):
    """Found: `report RUN --output RUN` replaced the run's own results.json; later reports showed R@1 "nan"."""
    monkeypatch.setattr("robustdml.reporting.report.build_report", _must_not_run("build_report"))
    results = (run_copy / "results.json").read_bytes()
    output = run_copy / inside if inside else run_copy
    assert main(["report", str(run_copy), "--output", str(output), "--device", "cpu"]) == 2
    err = _error(capsys)
    assert f"--output {output}" in err and "run directory" in err
    assert (run_copy / "results.json").read_bytes() == results
    assert not (run_copy / "report").exists()


# ------------------------------------------------------------------------------------------- labels
def test_a_run_label_with_link_syntax_is_text_in_report_html_and_md(tmp_path):
    """Found: a run label with markdown link syntax became a `javascript:` link in report.html."""
    table = Table([Column("run", left=True), Column("directory", left=True)],
                  [[INJECTED, link("run dir", tmp_path / "runs" / "a b", tmp_path)]], caption=f"label {INJECTED}")
    blocks = [Paragraph(f"Runs: {INJECTED}; see [Checks](#checks)."), table]
    page = to_html(blocks, tmp_path, "report")
    assert "javascript" in page and "href='javascript" not in page and 'href="javascript' not in page
    assert "<a href='runs/a%20b'>run dir</a>" in page and "<a href='#checks'>Checks</a>" in page
    markdown = to_markdown(blocks, tmp_path)
    assert "](javascript:" not in markdown.replace("\\](javascript:", "")
    assert "[run dir](runs/a%20b)" in markdown and "[Checks](#checks)" in markdown


# ------------------------------------------------------------------------------------------- benchmark
@pytest.mark.parametrize("epochs", ["0", "-1"])
def test_benchmark_refuses_epochs_below_one_before_writing_anything(tmp_path, capsys, monkeypatch, epochs):
    """Found: `benchmark --epochs 0` was ignored silently and `--epochs -1` wrote files before refusing."""
    monkeypatch.setattr("robustdml.reporting.runner.run_suite", _must_not_run("run_suite"))
    output = tmp_path / "bench"
    assert main(["benchmark", "synthetic", "--epochs", epochs, "--output", str(output), "--device", "cpu"]) == 2
    assert f"--epochs must be >= 1, got {epochs}" in _error(capsys)
    assert not output.exists()


def _config_of(run: Path, **changes) -> TrainConfig:
    values = {**TrainConfig.load(run / "config.yaml", run_directory=True).to_dict(), **changes}
    return TrainConfig.from_dict(values).resolved()


def test_benchmark_refuses_a_finished_run_trained_with_other_settings(run_copy, monkeypatch):
    """Found: `benchmark` reused a finished run trained with other settings (a 3-epoch run reused under
    --epochs 1; the report then claimed "epochs = 1")."""
    from robustdml.reporting.runner import train_or_resume

    monkeypatch.setattr("robustdml.reporting.runner.train", _must_not_run("train"))
    with pytest.raises(ConfigError, match=r"epochs \(2 -> 1\)"):
        train_or_resume(_config_of(run_copy, epochs=1), run_copy)
    # how a run is executed may differ: the same settings on another device are the same run
    assert train_or_resume(_config_of(run_copy, device="auto", progress=True), run_copy)["epochs"] == 2


def test_benchmark_checks_every_run_it_would_reuse_before_writing_anything(finished_run, tmp_path, monkeypatch):
    import shutil

    from robustdml.reporting.runner import run_suite
    from robustdml.reporting.suites import build_suite

    for name in ("train", "robustness_for", "build_report"):
        monkeypatch.setattr(f"robustdml.reporting.runner.{name}", _must_not_run(name))
    output = tmp_path / "bench"
    shutil.copytree(finished_run, output / "runs" / "natural")  # trained with other settings than the suite's
    with pytest.raises(ConfigError, match=r"runs/natural holds a run trained with other settings.*epochs \(2 -> 10\)"):
        run_suite(build_suite("synthetic"), output, device="cpu", progress=False)
    assert sorted(p.name for p in output.iterdir()) == ["runs"] and not (output / "suite.yaml").exists()


def test_benchmark_refuses_an_output_that_is_a_run_directory(run_copy, monkeypatch):
    from robustdml.engine.run_dir import RunDirectoryError
    from robustdml.reporting.runner import run_suite
    from robustdml.reporting.suites import build_suite

    for name in ("train", "robustness_for", "build_report"):
        monkeypatch.setattr(f"robustdml.reporting.runner.{name}", _must_not_run(name))
    before = sorted(p.name for p in run_copy.iterdir())
    with pytest.raises(RunDirectoryError, match="is a run directory"):
        run_suite(build_suite("synthetic"), run_copy, device="cpu", progress=False)
    assert sorted(p.name for p in run_copy.iterdir()) == before
