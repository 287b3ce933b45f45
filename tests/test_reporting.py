"""Reports: every plot type renders from tiny runs, tables trace to run directories, reruns reuse work."""

import json

import pytest

from robustdml.cli import main
from robustdml.reporting.report import build_report
from robustdml.reporting.runner import run_suite
from robustdml.attacks.spec import AttackSpec
from robustdml.reporting.suites import SUITES, AttackProtocol, build_suite, select_runs


def _png(path):
    return path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_synthetic_suite_report_and_resume(tmp_path):
    suite = build_suite("synthetic")
    suite.protocol = AttackProtocol(spec=AttackSpec(eps=(0.1, 0.2), steps=3, max_queries=100, probe_queries=20))
    output = run_suite(suite, tmp_path / "report", device="cpu", progress=False, overrides={"epochs": 2})
    markdown = (output / "report.md").read_text()
    assert "| natural | natural |" in markdown and "| robust triplet | robust-triplet |" in markdown
    assert str(output / "runs" / "natural") in markdown  # every row traces to its run directory
    assert "Overridden in every run: epochs = 2." in markdown
    figures = output / "figures"
    for name in ("robust_r1_vs_eps.png", "training_curves.png", "gallery_0_natural.png"):
        assert _png(figures / name), name  # embedding-shift plot for 2-d embeddings
    assert "<table>" in (output / "report.html").read_text()

    results = output / "runs" / "natural" / "results.json"
    stamp = results.stat().st_mtime_ns
    cache = {path: path.stat().st_mtime_ns for path in (output / "runs" / "natural" / "robustness").glob("*/*.json")}
    assert cache
    run_suite(suite, output, device="cpu", progress=False, overrides={"epochs": 2})
    assert results.stat().st_mtime_ns == stamp, "a finished run was retrained"
    assert all(path.stat().st_mtime_ns == mtime for path, mtime in cache.items()), "robustness was recomputed"


def test_report_command_renders_a_retrieval_gallery(natural_fmnist_run, tmp_path):
    output = tmp_path / "report"
    code = main(["report", str(natural_fmnist_run[0]), "--output", str(output), "--eps", "0.05,0.1", "--steps", "2",
                 "--max-queries", "50", "--probe-queries", "0", "--device", "cpu"])
    assert code == 0
    galleries = list((output / "figures").glob("gallery_*.png"))
    assert len(galleries) == 1 and _png(galleries[0])
    table = json.loads((output / "results.json").read_text())
    assert table["rows"][0][1] == "natural" and len(table["rows"][0]) == len(table["header"])


def test_every_suite_builds_in_both_scales():
    for name in SUITES.names():
        for full in (False, True):
            suite = build_suite(name, full=full)
            assert suite.runs and suite.protocol.eps_list
            names = [spec.name for spec in suite.runs]
            assert len(set(names)) == len(names)


def test_selecting_runs_keeps_suite_order_and_names_bad_ones():
    suite = build_suite("defenses")
    chosen = select_runs(suite, ["mdprop", "natural"])
    assert [spec.name for spec in chosen.runs] == ["natural", "mdprop"]
    assert chosen.protocol == suite.protocol
    with pytest.raises(ValueError, match="unknown run name.*mdprp.*valid: natural"):
        select_runs(suite, ["mdprp"])


def test_unfinished_run_is_reported_clearly(tmp_path, capsys):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.yaml").write_text("dataset: synthetic-gaussian\n")
    assert main(["report", str(tmp_path / "run"), "--output", str(tmp_path / "out")]) == 2
    assert "has not finished" in capsys.readouterr().err
