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
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from robustdml.evaluation.intervals import mean_t_interval
from robustdml.reporting import plots
from robustdml.reporting.blocks import Block, Bullets, Cell, Column, Figure, Heading, Paragraph, Table
from robustdml.reporting.model import RunSummary


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
        return mean_t_interval(self.values, LEVEL) if self.n > 1 else None

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


def collect(runs: Sequence[RunSummary], keys: Dict[str, GridPosition], metric: Callable[[RunSummary], Optional[float]]
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


def robust_metric(eps: float) -> Callable[[RunSummary], Optional[float]]:
    def metric(run: RunSummary) -> Optional[float]:
        estimate = run.robust_r1(eps)
        return None if estimate is None else estimate.value
    return metric


def _eps_of(runs: Sequence[RunSummary]) -> List[float]:
    return sorted({float(eps) for run in runs for result in run.robustness[:1] for eps in result.worst_case})


@dataclass
class _Numbers:
    """Everything the section shows, computed once from the runs."""

    methods: List[str]
    settings: List[float]
    seeds: List[int]
    eps_list: List[float]
    means: Dict[str, Dict[Tuple[str, float], Spread]]            # metric name -> cell -> spread over seeds
    clean: Dict[Tuple[str, float], Spread]                       # clean R@1 - baseline, paired by seed
    robust: Dict[float, Dict[Tuple[str, float], Spread]]         # eps -> robust R@1 - baseline, paired by seed


def _robust_name(eps: float) -> str:
    return f"robust R@1, eps {eps:g}"


def _numbers(runs: Sequence[RunSummary], keys: Dict[str, GridPosition], baseline: str) -> _Numbers:
    eps_list = _eps_of(runs)
    metrics = {"R@1": lambda run: run.benign("R@1"), "mAP@R": lambda run: run.benign("mAP@R")}
    metrics.update({_robust_name(eps): robust_metric(eps) for eps in eps_list})
    values = {name: collect(runs, keys, metric) for name, metric in metrics.items()}
    return _Numbers(methods=list(dict.fromkeys(key.method for key in keys.values())),
                    settings=sorted({key.setting for key in keys.values()}),
                    seeds=sorted({key.seed for key in keys.values()}), eps_list=eps_list,
                    means={name: spreads(found) for name, found in values.items()},
                    clean=paired_differences(values["R@1"], baseline),
                    robust={eps: paired_differences(values[_robust_name(eps)], baseline) for eps in eps_list})


def _table(numbers: _Numbers, baseline: str, setting_name: str) -> Table:
    columns = [Column(setting_name, left=True), Column("method", left=True)]
    columns += [Column(name, "mean ± std over seeds (%)") for name in numbers.means]
    columns.append(Column(f"R@1 − {baseline}", "paired by seed (points)"))
    rows = []
    for setting in numbers.settings:
        for method in numbers.methods:
            cell = (method, setting)
            if cell not in numbers.means["R@1"]:
                continue
            difference = numbers.clean.get(cell)
            rows.append([f"{setting:g}", method]
                        + [found[cell].text() if cell in found else "-" for found in numbers.means.values()]
                        + [Cell(difference.text(signed=True), note=difference.interval_text()) if difference else "-"])
    return Table(columns, rows, (
        f"Each cell: mean ± std over the training seeds {numbers.seeds}. *R@1 − {baseline}*: mean ± std of the "
        f"per-seed differences to {baseline} at the same {setting_name}, with the 95% t-interval of that mean. "
        "Robust R@1: the suite's attack (per-query worst case) on each run's attacked queries.")
    ).without_empty_columns()


def _verdicts(numbers: _Numbers, baseline: str, setting_name: str, setting_notes: Dict[float, str]) -> List[Block]:
    lines = []
    for setting in numbers.settings:
        cells = [(method, setting) for method in numbers.methods]
        parts = [verdict_phrase(cell[0], numbers.clean[cell]) for cell in cells if cell in numbers.clean]
        if not parts:
            continue
        note = f" ({setting_notes[setting]})" if setting_notes.get(setting) else ""
        line = f"**{setting_name} {setting:g}**{note}: clean R@1 against {baseline}: " + "; ".join(parts)
        for eps, differences in numbers.robust.items():
            robust = [f"{cell[0]} {differences[cell].text(signed=True)} ({differences[cell].verdict()})"
                      for cell in cells if cell in differences]
            if robust:
                line += f". Robust R@1 at eps {eps:g}: " + "; ".join(robust)
        lines.append(line + ".")
    if not lines:
        return []
    judged = len(numbers.clean) + sum(len(found) for found in numbers.robust.values())
    return [Paragraph(f"**Verdict per {setting_name}** (generated from the numbers: *gain* / *loss* when the 95% "
                      f"t-interval of the mean paired difference over {len(numbers.seeds)} seeds lies above / below 0, "
                      "else *within noise*, which does not mean equal; of these "
                      f"{judged} comparisons about {judged * (1 - LEVEL):.1f} would cross 0 by chance alone):"),
            Bullets(lines)]


def _plot(numbers: _Numbers, baseline: str, setting_name: str, figures: Path) -> List[Block]:
    series = {}
    for method in numbers.methods:
        points = [(index, 100 * diff.mean, 100 * (diff.mean - (diff.std or 0)), 100 * (diff.mean + (diff.std or 0)))
                  for index, setting in enumerate(numbers.settings)
                  for diff in [numbers.clean.get((method, setting))] if diff]
        if points:
            series[method] = points
    if not series:
        return []
    path = plots.lines(series, figures / "clean_r1_difference.png", xlabel=f"{setting_name} (evenly spaced)",
                       ylabel=f"clean R@1 − {baseline} (points)",
                       xticks=[(i, f"{s:g}") for i, s in enumerate(numbers.settings)], reference=0.0)
    return [Figure(path, f"Clean R@1 minus {baseline}'s, paired by training seed: mean ± std over the seeds at each "
                         f"{setting_name} (0: no difference).")]


def grid_section(keys: Dict[str, GridPosition], baseline: str, setting_name: str, setting_notes: Dict[float, str],
                 heading: str, claim: str = "") -> Callable[[List[RunSummary], Path], List[Block]]:
    """A ``Suite.sections`` callable for runs on a (method x setting x seed) grid: the table of mean ±
    std over seeds, the verdict per setting and the plot of the paired clean-R@1 differences.

    ``keys``: run name -> its grid position; ``baseline``: the method the others are compared with;
    ``setting_notes``: a few words per setting (e.g. how many training images it means); ``claim``:
    the published claim the section tests, shown above the table."""

    def section(runs: List[RunSummary], figures: Path) -> List[Block]:
        numbers = _numbers(runs, keys, baseline)
        blocks: List[Block] = [Heading(heading, anchor="over-seeds")] + ([Paragraph(claim)] if claim else [])
        return (blocks + [_table(numbers, baseline, setting_name)]
                + _verdicts(numbers, baseline, setting_name, setting_notes)
                + _plot(numbers, baseline, setting_name, figures))

    return section
