"""Runs repeated over training seeds on a grid (method x setting, e.g. x training fraction): a report
section with each cell's mean ± std over the seeds, the difference to a baseline method paired by
seed, a verdict per setting generated from those differences, and a plot of them.

Pairing: run ``(method, setting, seed)`` is compared with ``(baseline, setting, seed)``, which saw
the same training subset, initial weights and test items; the spread is the std of the per-seed
differences. Verdict on a difference: **gain** when its 95% t-interval over the seeds lies above 0,
**loss** when it lies below 0, **within noise** otherwise (with one seed: not judged). With 3 seeds
the t-quantile is 4.30, so only a difference large against its spread counts; "within noise" does
not mean "equal".
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Dict, List, Optional, Sequence, Tuple

from scipy.stats import t as student_t

from robustdml.reporting import plots
from robustdml.reporting.blocks import Block, Bullets, Cell, Column, Figure, Heading, Paragraph, Table

if TYPE_CHECKING:
    from robustdml.reporting.report import RunSummary

LEVEL = 0.95


@dataclass(frozen=True)
class GridPosition:
    """Where a run sits on the grid."""

    method: str      # the method's label
    setting: float   # e.g. the training fraction
    seed: int        # the training seed


@dataclass(frozen=True)
class Spread:
    """Values over seeds (fractions): mean, std (None for one value) and the 95% t-interval of the mean."""

    values: Tuple[float, ...]

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return statistics.mean(self.values)

    @property
    def std(self) -> Optional[float]:
        return statistics.stdev(self.values) if self.n > 1 else None

    def interval(self) -> Optional[Tuple[float, float]]:
        if self.n < 2:
            return None
        half = student_t.ppf(0.5 + LEVEL / 2, self.n - 1) * self.std / math.sqrt(self.n)
        return self.mean - half, self.mean + half

    def text(self, signed: bool = False) -> str:
        """In points, e.g. ``81.4 ± 1.2`` or (``signed``) ``+0.3 ± 1.1``."""
        number = f"{100 * self.mean:+.1f}" if signed else f"{100 * self.mean:.1f}"
        return number + ("" if self.std is None else f" ± {100 * self.std:.1f}")

    def interval_text(self) -> str:
        interval = self.interval()
        return "" if interval is None else f"[{100 * interval[0]:+.1f}, {100 * interval[1]:+.1f}]"

    def verdict(self) -> str:
        """``gain`` / ``loss`` / ``within noise`` for a difference (``one seed`` when there is no spread)."""
        interval = self.interval()
        if interval is None:
            return "one seed: not judged"
        if interval[0] > 0:
            return "gain"
        if interval[1] < 0:
            return "loss"
        return "within noise"


Values = Dict[Tuple[str, float], Dict[int, float]]


def collect(runs: Sequence["RunSummary"], keys: Dict[str, GridPosition], metric: Callable[["RunSummary"], Optional[float]]
            ) -> Values:
    """``{(method, setting): {seed: value}}`` for the runs named in ``keys`` (by run directory name)."""
    values: Values = {}
    for run in runs:
        key = keys.get(run.path.name)
        value = metric(run) if key else None
        if value is not None and not math.isnan(value):
            values.setdefault((key.method, key.setting), {})[key.seed] = value
    return values


def spreads(values: Values) -> Dict[Tuple[str, float], Spread]:
    return {cell: Spread(tuple(by_seed[s] for s in sorted(by_seed))) for cell, by_seed in values.items()}


def paired_differences(values: Values, baseline: str) -> Dict[Tuple[str, float], Spread]:
    """Per (method, setting) other than the baseline: the per-seed differences to the baseline at the
    same setting, over the seeds both have."""
    differences = {}
    for (method, setting), by_seed in values.items():
        reference = values.get((baseline, setting), {})
        seeds = sorted(set(by_seed) & set(reference))
        if method != baseline and seeds:
            differences[(method, setting)] = Spread(tuple(by_seed[s] - reference[s] for s in seeds))
    return differences


def verdict_phrase(method: str, difference: Spread) -> str:
    """``MDProp +1.2 ± 0.4 points, gain (95% interval [+0.2, +2.2])``."""
    interval = difference.interval_text()
    return (f"{method} {difference.text(signed=True)}, {difference.verdict()}"
            + (f" (95% interval {interval})" if interval else ""))


def robust_metric(eps: float) -> Callable[["RunSummary"], Optional[float]]:
    def metric(run: "RunSummary") -> Optional[float]:
        estimate = run.robust_r1(eps)
        return None if estimate is None else estimate.value
    return metric


def _eps_of(runs: Sequence["RunSummary"]) -> List[float]:
    return sorted({float(eps) for run in runs for report in run.robustness[:1] for eps in report["worst_case"]})


def grid_section(keys: Dict[str, GridPosition], baseline: str, setting_name: str, setting_notes: Dict[float, str],
                 heading: str, claim: str = "") -> Callable[[List["RunSummary"], Path], List[Block]]:
    """A ``Suite.sections`` callable for runs on a (method x setting x seed) grid.

    ``keys``: run name -> its grid position; ``baseline``: the method the others are compared with;
    ``setting_notes``: a few words per setting (e.g. how many training images it means); ``claim``:
    the published claim the section tests, shown above the table."""

    def section(runs: List["RunSummary"], figures: Path) -> List[Block]:
        methods = list(dict.fromkeys(key.method for key in keys.values()))
        settings = sorted({key.setting for key in keys.values()})
        eps_list = _eps_of(runs)
        metrics = {"R@1": lambda run: run.benign("R@1"), "mAP@R": lambda run: run.benign("mAP@R")}
        metrics.update({f"robust R@1, eps {eps:g}": robust_metric(eps) for eps in eps_list})
        values = {name: collect(runs, keys, metric) for name, metric in metrics.items()}
        means = {name: spreads(found) for name, found in values.items()}
        clean_diff = paired_differences(values["R@1"], baseline)
        robust_diff = {eps: paired_differences(values[f"robust R@1, eps {eps:g}"], baseline) for eps in eps_list}
        seeds = sorted({key.seed for key in keys.values()})

        columns = [Column(setting_name, left=True), Column("method", left=True)]
        columns += [Column(name, "mean ± std over seeds (%)") for name in metrics]
        columns.append(Column(f"R@1 − {baseline}", "paired by seed (points)"))
        rows = []
        for setting in settings:
            for method in methods:
                cell = (method, setting)
                if cell not in means["R@1"]:
                    continue
                row = [f"{setting:g}", method]
                row += [means[name][cell].text() if cell in means[name] else "-" for name in metrics]
                difference = clean_diff.get(cell)
                row.append(Cell(difference.text(signed=True), note=difference.interval_text()) if difference else "-")
                rows.append(row)
        table = Table(columns, rows, (
            f"Each cell: mean ± std over the training seeds {seeds} (a seed fixes the training subset, the initial "
            f"weights and the test items). *R@1 − {baseline}*: mean ± std of the per-seed differences to {baseline} at "
            "the same " + setting_name + ", with the 95% t-interval of that mean. Robust R@1: the suite's "
            "attack (per-query worst case) on each run's attacked queries.")).without_empty_columns()

        lines = []
        for setting in settings:
            parts = [verdict_phrase(method, clean_diff[(method, setting)]) for method in methods
                     if (method, setting) in clean_diff]
            if not parts:
                continue
            note = f" ({setting_notes[setting]})" if setting_notes.get(setting) else ""
            line = f"**{setting_name} {setting:g}**{note}: clean R@1 against {baseline}: " + "; ".join(parts)
            for eps in eps_list:
                robust = [f"{method} {robust_diff[eps][(method, setting)].text(signed=True)} "
                          f"({robust_diff[eps][(method, setting)].verdict()})" for method in methods
                          if (method, setting) in robust_diff[eps]]
                if robust:
                    line += f". Robust R@1 at eps {eps:g}: " + "; ".join(robust)
            lines.append(line + ".")

        series = {method: [(index, 100 * diff.mean, 100 * (diff.mean - (diff.std or 0)),
                            100 * (diff.mean + (diff.std or 0)))
                           for index, setting in enumerate(settings)
                           for diff in [clean_diff.get((method, setting))] if diff]
                  for method in methods if method != baseline}
        series = {method: points for method, points in series.items() if points}
        blocks: List[Block] = [Heading(heading, anchor="over-seeds")]
        if claim:
            blocks.append(Paragraph(claim))
        blocks.append(table)
        if lines:
            blocks += [Paragraph(f"**Verdict per {setting_name}** (generated from the numbers: *gain* / *loss* when "
                                 f"the 95% t-interval of the mean paired difference over {len(seeds)} seeds lies "
                                 "above / below 0, else *within noise*, which does not mean equal):"), Bullets(lines)]
        if series:
            path = plots.lines(series, figures / "clean_r1_difference.png", xlabel=f"{setting_name} (evenly spaced)",
                               ylabel=f"clean R@1 − {baseline} (points)",
                               xticks=[(i, f"{s:g}") for i, s in enumerate(settings)], reference=0.0)
            blocks.append(Figure(path, f"Clean R@1 minus {baseline}'s, paired by training seed: mean ± std over the "
                                       f"seeds at each {setting_name} (0: no difference)."))
        return blocks

    return section
