"""Reports: every plot type renders from tiny runs, tables trace to run directories, reruns reuse work."""

import json

import pytest

import re

from robustdml.robustness.spec import AttackSpec
from robustdml.cli import main
from robustdml.engine.config import TrainConfig
from robustdml.evaluation.ers import ERS_INPUTS
from robustdml.evaluation.intervals import binomial_interval
from robustdml.reporting import findings
from robustdml.reporting.blocks import Heading, Paragraph, Table, Column, Cell
from robustdml.reporting.model import Estimate, RunSummary
from robustdml.reporting.report import render_report
from robustdml.reporting.suites import CPU_QUERIES
from robustdml.reporting.runner import run_suite
from robustdml.reporting.suites import SUITES, build_suite, select_runs
from robustdml.robustness.spec import AttackProtocol


def _png(path):
    return path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def markdown_tables(markdown):
    """(header, rows) of every table in a Markdown text."""
    tables, lines = [], markdown.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("| ") and i + 1 < len(lines) and lines[i + 1].startswith("| --- |"):
            split = lambda text: [cell.strip() for cell in text.strip().strip("|").split(" | ")]  # noqa: E731
            rows, j = [], i + 2
            while j < len(lines) and lines[j].startswith("| "):
                rows.append(split(lines[j]))
                j += 1
            tables.append((split(line), rows))
    return tables


def check_structure(output):
    """What every report must satisfy: the headline before any table, a viewport for phones, no
    empty or duplicate columns, and every image it references on disk."""
    html = (output / "report.html").read_text()
    assert "<meta name='viewport' content='width=device-width, initial-scale=1'>" in html
    body = html.split("<body>", 1)[1]
    assert body.index("id='key-findings'") < body.index("<table"), "the key findings come first"
    assert "How to read this." in body and "Clopper-Pearson" in body
    assert "<div class='scroll'><table>" in body  # wide tables scroll inside their box, not the page
    images = re.findall(r"<img src='([^']+)'", html)
    assert images and all((output / src).is_file() for src in images), images
    tables = markdown_tables((output / "report.md").read_text())
    assert tables
    for header, rows in tables:
        assert len(set(header)) == len(header), f"duplicate columns: {header}"
        assert all(len(row) == len(header) for row in rows), header
        for index, name in enumerate(header):
            assert any(row[index] not in ("", "-") for row in rows), f"column {name!r} is empty"


def _rate(hits, n):
    return {"R@1": hits / n, "R@1_ci": list(binomial_interval(hits, n)), "queries": n, "mAP@R": hits / n / 2}


def fake_run(tmp_path, label, benign, robust, clean=(250, 300), ers=None, unconverged=(), unbounded=0.0,
             warnings=(), defense="natural", epochs=2, seeds=(0,), ers_interval=None):
    """A RunSummary with made-up numbers: ``robust = {eps: (hits, queries)}`` for every seed;
    ``ers_interval``: ERS's interval (None: a result saved before ERS had one)."""
    reports = []
    for seed in seeds:
        reports.append({
            "clean": _rate(*clean), "rows": [],
            "worst_case": {str(eps): {**_rate(*hits), "passes_per_query": 10.0} for eps, hits in robust.items()},
            "convergence": {str(eps): {"probe": 20, "R@1": 0.5, "stronger_R@1": 0.4 if eps in unconverged else 0.5,
                                       "drop": 0.1 if eps in unconverged else 0.0, "converged": eps not in unconverged,
                                       "newly_broken_by": {}, "stronger": "x", "passes_per_query": 1.0}
                            for eps in robust},
            "ers": None if ers is None else {"ERS": ers, "terms": {k: ers for k in ERS_INPUTS},
                                             "scores": {k: ers for k in ERS_INPUTS}, "spec": {"eps": [0.3]},
                                             "spec_text": "pgd", "published": True, "interval": ers_interval},
            "warnings": list(warnings),
            "settings": {"spec": {}, "seed": seed, "queries": clean[1], "gallery": 1000, "unbounded_R@1": unbounded,
                         "seconds": 5.0, "versions": {"robustdml": "test"}}})
    path = tmp_path / label
    path.mkdir()
    return RunSummary(path=path, label=label, config=TrainConfig(dataset="fashion-mnist", defense=defense),
                      results={"test/R@1": benign, "test/mAP@R": benign / 2, "test/NMI": 0.6, "passes": 10.0,
                               "train_seconds": 3.0},
                      history=[{"epoch": e, "step": 5 * e, "train_loss": 1 / e, "val/R@1": 0.5 + 0.1 * e}
                               for e in range(1, epochs + 1)],
                      robustness=reports, robustness_dirs=[path / "robustness" / f"seed{s}" for s in seeds])


PROTOCOL = AttackProtocol(spec=AttackSpec(eps=(0.05, 0.1), max_queries=300))


def test_synthetic_suite_report_and_resume(tmp_path):
    suite = build_suite("synthetic")
    suite.protocol = AttackProtocol(spec=AttackSpec(eps=(0.1, 0.2), steps=3, max_queries=100, probe_queries=20))
    output = run_suite(suite, tmp_path / "report", device="cpu", progress=False, overrides={"epochs": 2})
    markdown = (output / "report.md").read_text()
    assert "| natural |" in markdown and "| robust triplet |" in markdown
    assert str(output / "runs" / "natural") in markdown  # every row traces to its run directory
    assert "defense: robust-triplet; defense_options: {eps: 0.15}" in markdown  # differences from the shared config
    assert "Overridden in every run: epochs = 2." in markdown
    figures = output / "figures"
    for name in ("robust_r1_vs_eps.png", "gallery_0_natural.png"):
        assert _png(figures / name), name  # embedding-shift plot for 2-d embeddings
    assert not (figures / "validation_r1.png").exists(), "2 epochs: a table, not a two-point curve"
    assert "<table>" in (output / "report.html").read_text()

    results = output / "runs" / "natural" / "results.json"
    stamp = results.stat().st_mtime_ns
    cache = {path: path.stat().st_mtime_ns for path in (output / "runs" / "natural" / "robustness").glob("*/*.json")}
    assert cache
    run_suite(suite, output, device="cpu", progress=False, overrides={"epochs": 2})
    assert results.stat().st_mtime_ns == stamp, "a finished run was retrained"
    assert all(path.stat().st_mtime_ns == mtime for path, mtime in cache.items()), "robustness was recomputed"


@pytest.fixture(scope="module")
def rendered_report(natural_fmnist_run, tmp_path_factory):
    """``robustdml report`` on the session's small Fashion-MNIST run (cheap attack settings)."""
    output = tmp_path_factory.mktemp("report") / "report"
    code = main(["report", str(natural_fmnist_run[0]), "--output", str(output), "--eps", "0.05,0.1", "--steps", "2",
                 "--max-queries", "50", "--probe-queries", "0", "--device", "cpu"])
    assert code == 0
    return output


def test_report_command_renders_a_retrieval_gallery(rendered_report):
    galleries = list((rendered_report / "figures").glob("gallery_*.png"))
    assert len(galleries) == 1 and _png(galleries[0])
    table = json.loads((rendered_report / "results.json").read_text())
    assert table["rows"][0][0] == "natural" and len(table["rows"][0]) == len(table["header"])
    run = table["runs"][0]
    assert run["defense"] == "natural" and run["queries"] == 50 and run["seeds"] == [0]
    low, high = run["robust"]["0.1"]["R@1_ci"]
    assert low <= run["robust"]["0.1"]["R@1"] <= high


def test_rendered_report_structure(rendered_report):
    check_structure(rendered_report)


def test_report_layout_in_a_real_browser(rendered_report, tmp_path):
    """Headless Chromium at 1400 and 420 px: no sideways scrolling, the headline in the first screen."""
    from robustdml.reporting import browser

    if not browser.find_browser():
        pytest.skip(f"chromium not installed: no {' / '.join(browser.BROWSERS)} on PATH, so the report's layout "
                    "was not checked in a browser (apt-get install chromium; .ci/run installs it when it can)")
    for width in (1400, 420):
        try:
            layout = browser.measure(rendered_report / "report.html", width)
        except browser.BrowserUnavailable as error:
            pytest.skip(f"chromium is installed but does not start here: {error}")
        assert layout["width"] == width
        assert layout["scrollWidth"] <= width, f"the page scrolls sideways at {width} px: {layout}"
        assert layout["headline_bottom"] is not None and layout["headline_bottom"] <= 800, layout
        assert layout["images"] >= 2 and layout["broken_images"] == 0, layout
        shot = browser.screenshot(rendered_report / "report.html", width, tmp_path / f"report-{width}.png")
        assert _png(shot)


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
    # the report says it holds part of the suite, naming what it left out
    assert "2 of the suite's 7 runs" in chosen.description and "robust triplet (Panum)" in chosen.description
    assert select_runs(suite, [spec.name for spec in suite.runs]).description == suite.description
    with pytest.raises(ValueError, match="unknown run name.*mdprp.*valid: natural"):
        select_runs(suite, ["mdprp"])


def test_unfinished_run_is_reported_clearly(tmp_path, capsys):
    (tmp_path / "run" / "checkpoints").mkdir(parents=True)  # what a run killed before its first checkpoint holds
    (tmp_path / "run" / "config.yaml").write_text("dataset: synthetic-gaussian\n")
    assert main(["report", str(tmp_path / "run"), "--output", str(tmp_path / "out")]) == 2
    assert "has not finished" in capsys.readouterr().err


def _findings(runs):
    box = findings.key_findings(runs, PROTOCOL)
    return box, " ".join(item for block in box.blocks if hasattr(block, "items") for item in block.items)


def test_headline_names_a_clear_leader_with_its_benign_cost(tmp_path):
    natural = fake_run(tmp_path, "natural", 0.80, {0.05: (120, 300), 0.1: (30, 300)})
    est = fake_run(tmp_path, "EST", 0.70, {0.05: (125, 300), 0.1: (150, 300)}, defense="est")
    _, text = _findings([natural, est])
    assert "eps 0.1: **EST** is the most robust, 50.0% [" in text
    assert "gives up 10.0 points of benign R@1 (70.0 against 80.0 for natural)" in text
    assert "eps 0.05: **no clear leader**: all 2 runs are statistically tied" in text  # 41.7 vs 40.0 on 300 queries


def test_overlapping_intervals_name_the_tied_runs(tmp_path):
    runs = [fake_run(tmp_path, name, 0.8, {0.05: hits, 0.1: hits}) for name, hits in
            (("a", (150, 300)), ("b", (140, 300)), ("c", (30, 300)))]
    _, text = _findings(runs)
    assert "the highest, a 50.0% [" in text and "is statistically tied with b 46.7" in text
    assert "most robust" not in text and "c 10.0" not in text


def test_failed_checks_lead_the_headline(tmp_path):
    fine = fake_run(tmp_path, "fine", 0.8, {0.05: (100, 300), 0.1: (50, 300)})
    shaky = fake_run(tmp_path, "shaky", 0.8, {0.05: (100, 300), 0.1: (50, 300)}, unconverged=(0.1,), unbounded=0.4,
                     warnings=["eps 0.1: not converged", "unbounded: masked", "robust R@1 rises with eps"])
    box, _ = _findings([fine, shaky])
    assert isinstance(box.blocks[0], Heading) and isinstance(box.blocks[1], Paragraph)
    warning = box.blocks[1]
    assert warning.style == "warning" and "Checks failed for 1 of 2 run(s)" in warning.text
    assert "shaky: attack not converged at eps 0.1, masked gradients suspected (an unbounded attack leaves R@1 " \
           "at 40.0%), 1 other failed check(s)" in warning.text
    assert findings.warning_box([fine]) is None


def test_several_seeds_give_mean_std_and_the_union_of_intervals():
    one, two = _rate(100, 300), _rate(130, 300)
    estimate = Estimate.of([one, two])
    assert estimate.value == pytest.approx(115 / 300) and estimate.std is not None
    assert (estimate.low, estimate.high) == (one["R@1_ci"][0], two["R@1_ci"][1])
    assert estimate.text().startswith("38.3 ± 7.1% [")


def test_report_from_numbers_explains_itself_and_bolds_the_best(tmp_path):
    runs = [fake_run(tmp_path, "natural", 0.80, {0.05: (120, 300), 0.1: (30, 300)}, ers=40.0, ers_interval=[35, 45]),
            fake_run(tmp_path, "EST", 0.70, {0.05: (125, 300), 0.1: (150, 300)}, ers=70.0, defense="est", epochs=3,
                     ers_interval=[60, 80])]
    seen = {}

    def ours_vs_published(summaries, figures):
        seen["runs"], seen["figures"] = [run.label for run in summaries], figures
        return [Heading("Ours vs published"), Table([Column("run", left=True), Column("R@1", best="max")],
                                                    [[run.label, Cell(f"{run.benign():.2f}", run.benign())]
                                                     for run in summaries])]

    output = render_report(runs, tmp_path / "report", PROTOCOL, sections=ours_vs_published, galleries=False)
    check_structure(output)
    assert seen == {"runs": ["natural", "EST"], "figures": output / "figures"}
    html = (output / "report.html").read_text()
    assert "<h2>Ours vs published</h2>" in html
    assert tuple(findings.ERS_TERMS) == ERS_INPUTS
    assert "higher = more robust" in html and all(term in html for term in ERS_INPUTS)  # ERS explained
    assert "<td><b>50.0</b><span class='ci'>" in html  # EST's robust R@1 at eps 0.1, the best of its column
    assert "Highest ERS: <b>EST 70.0 [60.0, 80.0]</b> of 100 (next: natural 40.0 [35.0, 45.0]); its 95% interval" in html
    assert "lies above the runner-up" in html
    assert "<td><b>70.0</b><span class='ci'>[60.0, 80.0]</span>" in html  # ERS with its interval below it
    assert "1000 test items" in html and "300 attacked queries" in html  # why benign and clean differ
    assert "defense: est" in html and "(none)" not in html  # the shared config once, each run's differences
    for name in ("robust_r1_vs_eps.png", "validation_r1.png", "training_loss.png"):
        assert _png(output / "figures" / name), name  # 3 epochs: curves


# ----------------------------------------------------------------------------- robrank-fashion
def test_robrank_fashion_builds_the_published_and_equal_cost_runs_with_the_reference_recipe():
    from robustdml.robustness.spec import ers_spec

    cpu, full = build_suite("robrank-fashion"), build_suite("robrank-fashion", full=True)
    names = ["natural", "est", "act", "est-eta8", "act-eta8", "hm-eta8", "hm-lga-ics-eta8"]
    assert [spec.name for spec in full.runs] == names
    assert [spec.name for spec in cpu.runs] == names[:1] + ["natural-reference"] + names[1:]
    for suite in (cpu, full):
        configs = {spec.name: TrainConfig.from_dict(spec.config).resolved() for spec in suite.runs}
        for config in configs.values():
            assert (config.model, config.loss, config.miner, config.sampler) == ("rc2f2", "triplet", "spc2-random",
                                                                                "pairs")
            assert (config.batch_size, config.lr, config.weight_decay, config.embedding_dim) == (256, 1e-3, 1e-7, 512)
            assert config.loss_options == {"reduction": "mean"}
            assert config.val_fraction == 0.0  # the reference trains on every image and keeps the last checkpoint
        assert [(c.defense, c.defense_options) for name, c in configs.items() if name != "natural-reference"] == [
            ("natural", {}), ("est", {"steps": 32}), ("act", {"steps": 32}), ("est", {"steps": 8}),
            ("act", {"steps": 8}), ("hm", {"steps": 8}), ("hm", {"steps": 8, "lga": True, "ics": True})]
        assert suite.protocol.spec.ers == ers_spec(28) and suite.protocol.spec.attacks == ("auto",)
        assert suite.sections is not None
    full_config = TrainConfig.from_dict(full.runs[0].config).resolved()
    assert full_config.epochs == 8 and full_config.train_per_class is None and full.protocol.spec.max_queries is None
    cpu_config = TrainConfig.from_dict(cpu.runs[0].config).resolved()
    assert cpu_config.epochs < 8 and cpu_config.train_per_class and cpu_config.test_per_class is None
    reference = TrainConfig.from_dict(cpu.runs[1].config).resolved()  # the published natural row, not cut
    assert (reference.defense, reference.epochs, reference.train_per_class) == ("natural", 8, None)
    assert cpu.runs[1].config == full.runs[0].config  # exactly the --full natural run
    assert cpu.protocol.spec.max_queries == CPU_QUERIES and cpu.protocol.spec.steps == full.protocol.spec.steps
    notes = " ".join(cpu.notes)
    assert f"{cpu_config.train_per_class} training images per class" in notes and f"{CPU_QUERIES} random test queries" in notes
    assert "Attack steps, eta and the ERS profile are the reference's" in notes
    cheaper = build_suite("robrank-fashion", eta=4)  # --eta sets the equal-cost runs only
    assert [spec.name for spec in cheaper.runs][-4:] == ["est-eta4", "act-eta4", "hm-eta4", "hm-lga-ics-eta4"]
    assert next(spec for spec in cheaper.runs if spec.name == "est").config["defense_options"] == {"steps": 32}
    assert [spec.name for spec in select_runs(cpu, ["hm-eta8", "natural"]).runs] == ["natural", "hm-eta8"]


def _robrank_run(tmp_path, name, label, scores, benign, ers_interval=None):
    from robustdml.evaluation.ers import empirical_robustness_score, ers_terms

    run = fake_run(tmp_path, name, benign, {0.1: (100, 300)}, ers=0.0, ers_interval=ers_interval)
    run.label = label
    ers = run.robustness[0].ers
    ers.scores, ers.terms, ers.ers = scores, ers_terms(scores), empirical_robustness_score(scores)
    return run


def test_robrank_fashion_section_puts_ours_beside_the_published_values(tmp_path):
    from robustdml.reporting.suites.robrank_fashion import PUBLISHED, published_ers

    natural = {key: value for key, value in PUBLISHED["natural"].items() if key in ERS_INPUTS}
    est = {key: value for key, value in PUBLISHED["est"].items() if key in ERS_INPUTS}
    act = {**{key: value for key, value in PUBLISHED["act"].items() if key in ERS_INPUTS}, "CA+": 13.6, "TMA": 0.559}
    runs = [_robrank_run(tmp_path, "natural", "natural", natural, 0.85, [3.0, 5.0]),
            _robrank_run(tmp_path, "est", "EST (eta 32)", {**est, "GTM": 90.8}, 0.80, [44.0, 47.0]),
            _robrank_run(tmp_path, "act", "ACT (eta 32)", act, 0.70, [46.5, 60.0]),
            _robrank_run(tmp_path, "hm-eta8", "HM (eta 8)", natural, 0.75),
            _robrank_run(tmp_path, "natural-reference", "natural (reference protocol)", {**natural, "GTM": 80.0},
                         0.87, [9.5, 12.0])]
    suite = build_suite("robrank-fashion")
    output = render_report(runs, tmp_path / "report", suite.protocol, sections=suite.sections, galleries=False)
    check_structure(output)
    markdown = (output / "report.md").read_text()
    header, rows = next(table for table in markdown_tables(markdown) if table[0][:3] == ["run", "", "R@1"])
    assert header[2:] == ["R@1", *ERS_INPUTS, "ERS"]
    row, run = {}, None
    for cells in rows:  # (run, ours | published | difference) -> the values
        run = cells[0] or run
        row[(run, cells[1])] = cells[2:]
    assert row[("natural", "ours")][0] == "85.0" and row[("natural", "published")][0] == "87.6"
    assert row[("natural", "difference")][0] == "-2.6"
    assert row[("ACT (eta 32)", "difference")][1] == "-20.0"  # CA+ 13.6 against 33.6
    assert row[("ACT (eta 32)", "difference")][5] == "+0.300"  # TMA, three decimals
    assert row[("natural", "published")][-1] == f"{published_ers('natural'):.1f}" == "4.2"
    assert row[("HM (eta 8)", "published")] == ["-"] * 12 and ("HM (eta 8)", "difference") not in row
    assert "no equal-cost (eta = 8) rows" in markdown
    # ERS points: CA+ counts twice (2 CA+), TMA 100 (1 - TMA); GTM as it is
    assert "ACT (eta 32): CA+ -40.0, TMA -30.0" in markdown and "EST (eta 32): GTM +70.0" in markdown
    assert "Natural training's ERS is at most 10, natural: holds (4.2 [3.0, 5.0]; published 4.2)." in markdown
    assert row[("natural", "ours")][-1] == "4.2 [3.0, 5.0]"  # our ERS with its interval; none for the published
    # the natural row on the reference protocol is compared with the published natural row and checked on its own
    assert row[("natural (reference protocol)", "published")][0] == "87.6"
    assert row[("natural (reference protocol)", "difference")][-3] == "+67.4"  # GTM 80.0 against 12.6
    assert ("Natural training's ERS is at most 10, natural (reference protocol): **does not hold** (10.9 [9.5, "
            "12.0]; published 4.2); its 95% interval over the queries contains 10, so the verdict is within the "
            "query sampling") in markdown
    assert ("natural < EST < ACT in ERS: holds (ours: natural 4.2 [3.0, 5.0], EST (eta 32) 45.7 [44.0, 47.0], "
            "ACT (eta 32) 56.3 [46.5, 60.0]; published: 4.2, 38.7, 63.3); 95% intervals overlap for EST (eta 32) / "
            "ACT (eta 32) (that step is within the query sampling)") in markdown
    ordering = next(table for table in markdown_tables(markdown) if table[0][0] == "term (0-100)")
    assert [r[0] for r in ordering[1]] == [*ERS_INPUTS, "ERS"]
    assert ordering[1][ERS_INPUTS.index("TMA")][-2:] == ["yes", "yes"]  # published: 1.0 < 3.4 < 74.1
    assert ordering[1][ERS_INPUTS.index("GTM")][1:4] == ["12.6", "90.8", "60.2"]
    assert ordering[1][ERS_INPUTS.index("GTM")][-2:] == ["**no**", "yes"]  # the term that breaks our ordering


def test_an_ers_leader_is_named_only_when_its_interval_clears_the_runner_up(tmp_path):
    def runs(second_interval):
        return [fake_run(tmp_path / f"{second_interval}", "EST", 0.7, {0.1: (1, 3)}, ers=30.0, ers_interval=[25, 35]),
                fake_run(tmp_path / f"{second_interval}", "ACT", 0.7, {0.1: (1, 3)}, ers=28.0,
                         ers_interval=second_interval)]

    for folder in ("[23, 33]", "None"):
        (tmp_path / folder).mkdir()
    assert "overlaps the runner-up's: **no clear ERS leader**" in findings.ers_finding(runs([23, 33]))
    # a result saved before ERS had an interval: no leader is judged, and no interval is made up
    old = findings.ers_finding(runs(None))
    assert "no leader is judged" in old and "ACT 28.0;" not in old and "ACT 28.0" in old


def test_report_of_runs_without_a_validation_split_has_no_validation_figure(tmp_path):
    """RobRank's recipe trains with val_fraction 0: the report keeps the loss curves and says which runs
    have no validation curve, instead of failing on an empty plot."""
    with_split = fake_run(tmp_path, "with split", 0.8, {0.05: (100, 300), 0.1: (50, 300)}, epochs=3)
    without = fake_run(tmp_path, "without split", 0.8, {0.05: (100, 300), 0.1: (50, 300)}, epochs=3)
    without.history = [{k: v for k, v in record.items() if k != "val/R@1"} for record in without.history]
    output = render_report([with_split, without], tmp_path / "mixed", PROTOCOL, galleries=False)
    markdown = (output / "report.md").read_text()
    assert "No validation split (last checkpoint kept): without split." in markdown
    assert _png(output / "figures" / "validation_r1.png") and _png(output / "figures" / "training_loss.png")
    output = render_report([without], tmp_path / "none", PROTOCOL, galleries=False)
    assert not (output / "figures" / "validation_r1.png").exists()
    assert _png(output / "figures" / "training_loss.png")
