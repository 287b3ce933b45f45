"""The `mdprop` suite (issue #13): its 48 runs in both scales, and its section over training seeds
(mean ± std, differences to natural paired by seed, a verdict per fraction, the plot)."""

import pytest
from scipy.stats import t as student_t

from conftest import needs_fashion_mnist
from robustdml.robustness.spec import AttackSpec
from robustdml.defenses import build_defense
from robustdml.engine.config import TrainConfig
from robustdml.engine.setup import build_splits
from robustdml.reporting.blocks import Bullets, Figure, Table
from robustdml.reporting.report import render_report
from robustdml.reporting.seed_grid import GridPosition, Spread, grid_section, paired_differences
from robustdml.reporting.suites import MDPROP_OURS, build_suite
from robustdml.robustness.spec import AttackProtocol
from test_reporting import _png, check_structure, fake_run, markdown_tables

METHODS = ("natural", "mdprop", "mdprop-ours", "advprop-d")


@pytest.mark.parametrize("full", [False, True])
def test_suite_has_every_method_fraction_and_seed(full):
    suite = build_suite("mdprop", full=full)
    names = [spec.name for spec in suite.runs]
    expected = {f"{m}-f{f}-s{s}" for m in METHODS for f in ("0.1", "0.25", "0.5", "1") for s in (0, 1, 2)}
    assert len(names) == 48 and set(names) == expected
    pool = 1.0 if full else 0.05
    steps = set()
    for spec in suite.runs:
        method, fraction, seed = spec.name.rsplit("-", 2)
        config = TrainConfig.from_dict(spec.config).resolved()  # every run is a valid training config
        assert config.seed == int(seed[1:])
        assert config.train_fraction == pytest.approx(pool * float(fraction[1:]))
        assert config.defense == {"mdprop-ours": "mdprop"}.get(method, method)
        assert config.defense_options == (MDPROP_OURS if method == "mdprop-ours" else {})
        assert (config.test_per_class is None) == full
        steps.add(config.epochs * config.steps_per_epoch)
    assert len(steps) == 1, "every fraction trains the same number of steps"
    spec = suite.protocol.spec
    assert (spec.steps, spec.restarts, spec.attacks) == (AttackSpec().steps, AttackSpec().restarts, AttackSpec().attacks)
    if full:
        assert spec == AttackSpec() and suite.scale == "full"
    else:
        assert spec.eps == (0.01,) and spec.max_queries == 50 and spec.probe_queries == 0
    assert suite.sections is not None and suite.sections_first
    assert suite.featured == tuple(f"{m}-f0.1-s0" for m in METHODS)
    build_defense("mdprop", **MDPROP_OURS)  # our options are valid options of the defense


def test_eta_is_refused_by_the_mdprop_suite():
    with pytest.raises(ValueError, match="--eta does not apply to the mdprop suite"):
        build_suite("mdprop", eta=3)


@needs_fashion_mnist
def test_cpu_fraction_keeps_the_stated_training_images():
    suite = build_suite("mdprop")
    config = TrainConfig.from_dict(next(s for s in suite.runs if s.name == "natural-f0.1-s1").config).resolved()
    splits = build_splits(config)
    assert len(splits.train) == 10 * 27 and len(splits.val) == 10 * 3 and len(splits.test) == 1000
    assert "0.1: 27, 0.25: 67, 0.5: 135, 1: 270" in suite.notes[1]


def test_spread_mean_std_and_t_interval():
    spread = Spread((0.01, 0.02, 0.0))
    assert spread.mean == pytest.approx(0.01) and spread.std == pytest.approx(0.01)
    half = student_t.ppf(0.975, 2) * 0.01 / 3 ** 0.5
    assert spread.interval() == pytest.approx((0.01 - half, 0.01 + half))
    assert spread.text(signed=True) == "+1.0 ± 1.0" and spread.verdict() == "within noise"
    assert Spread((0.03, 0.031, 0.029)).verdict() == "gain"
    assert Spread((-0.03, -0.031, -0.029)).verdict() == "loss"
    assert Spread((0.05,)).verdict() == "one seed: not judged" and Spread((0.05,)).text() == "5.0"


def test_differences_are_paired_by_seed_over_the_seeds_both_have():
    values = {("natural", 0.1): {0: 0.80, 1: 0.70, 2: 0.90}, ("mdprop", 0.1): {0: 0.81, 1: 0.72},
              ("mdprop", 0.5): {0: 0.9}}
    differences = paired_differences(values, "natural")
    assert set(differences) == {("mdprop", 0.1)}  # no natural run at 0.5: nothing to pair with
    assert differences[("mdprop", 0.1)].values == pytest.approx((0.01, 0.02))


# clean R@1 per (method, fraction), one value per seed; mdprop: no gain at 0.1, a clear gain at 0.5
GRID = {("natural", 0.1): (0.80, 0.70, 0.76), ("MDProp", 0.1): (0.81, 0.72, 0.75),
        ("natural", 0.5): (0.85, 0.80, 0.83), ("MDProp", 0.5): (0.88, 0.83, 0.86)}


@pytest.fixture
def grid_runs(tmp_path):
    runs, positions = [], {}
    for (method, fraction), values in GRID.items():
        for seed, value in enumerate(values):
            name = f"{method.lower()}-f{fraction:g}-s{seed}"
            hits = 40 - seed if method == "natural" else 45 - seed
            runs.append(fake_run(tmp_path, name, value, {0.01: (hits, 50)}, clean=(45, 50)))
            positions[name] = GridPosition(method, fraction, seed)
    return runs, positions


def test_section_gives_mean_std_paired_differences_and_a_verdict_per_fraction(grid_runs, tmp_path):
    runs, positions = grid_runs
    figures = tmp_path / "figures"
    figures.mkdir()
    section = grid_section(positions, "natural", "fraction", {0.1: "27 images", 0.5: "135 images"}, "Over seeds")
    blocks = section(runs, figures)
    table = next(block for block in blocks if isinstance(block, Table))
    rows = {(row[0], row[1]): row for row in table.text_rows()}
    assert table.header_names() == ["fraction", "method", "mean ± std over seeds (%): R@1",
                                    "mean ± std over seeds (%): mAP@R",
                                    "mean ± std over seeds (%): robust R@1, eps 0.01",
                                    "paired by seed (points): R@1 − natural"]
    assert rows[("0.1", "natural")][2:5] == ["75.3 ± 5.0", "37.7 ± 2.5", "78.0 ± 2.0"]
    assert rows[("0.1", "natural")][5] == "-"
    assert rows[("0.1", "MDProp")][5].startswith("+0.7 ± 1.5 [")  # per-seed differences +1, +2, -1
    assert rows[("0.5", "MDProp")][5].startswith("+3.0 ± 0.0 [")
    assert any("of these 4 comparisons about 0.2 would cross 0 by chance" in getattr(block, "text", "")
               for block in blocks)  # 2 fractions x (clean, robust)
    verdicts = next(block for block in blocks if isinstance(block, Bullets)).items
    assert len(verdicts) == 2
    assert verdicts[0].startswith("**fraction 0.1** (27 images): clean R@1 against natural: MDProp +0.7 ± 1.5, within "
                                  "noise (95% interval [")
    assert "**fraction 0.5** (135 images): clean R@1 against natural: MDProp +3.0 ± 0.0, gain" in verdicts[1]
    assert "Robust R@1 at eps 0.01: MDProp +10.0 ± 0.0 (gain)" in verdicts[1]
    figure = next(block for block in blocks if isinstance(block, Figure))
    assert _png(figure.path)


def test_suite_report_puts_the_section_first_and_features_a_few_runs(grid_runs, tmp_path):
    runs, positions = grid_runs
    section = grid_section(positions, "natural", "fraction", {}, "Over seeds")
    featured = ("natural-f0.1-s0", "mdprop-f0.1-s0")
    output = render_report(runs, tmp_path / "report", AttackProtocol(spec=AttackSpec(eps=(0.01,), max_queries=50)),
                           sections=section, sections_first=True, featured=featured, galleries=False)
    check_structure(output)
    markdown = (output / "report.md").read_text()
    assert markdown.index("## Over seeds") < markdown.index("## Results per run")
    assert "Plotted: 2 of the 12 runs (natural-f0.1-s0; mdprop-f0.1-s0)." in markdown
    assert any(header[:2] == ["fraction", "method"] for header, _ in markdown_tables(markdown))
    assert _png(output / "figures" / "clean_r1_difference.png")
