"""The read model of a report: one :class:`RunSummary` per run directory, built on the typed
:class:`~robustdml.robustness.result.RobustnessResult` of each attack seed, and :class:`Estimate`, an R@1
over those seeds. Tables, figures, findings and the suites' sections read runs only through these."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from robustdml.engine.config import TrainConfig
from robustdml.engine.run_dir import RunDirectory
from robustdml.reporting.blocks import Cell
from robustdml.robustness.result import Rate, RobustnessResult
from robustdml.robustness.spec import AttackProtocol
from robustdml.robustness.store import RunSource, robustness_for


@dataclass(frozen=True)
class Estimate:
    """An R@1 (fraction) over one or more attack seeds: the mean, the std over seeds (None for one seed) and a
    95% interval: Clopper-Pearson over the attacked queries; with several seeds, the union of the seeds'
    intervals (wider than any of them, so comparisons stay conservative)."""

    value: float
    low: float
    high: float
    std: Optional[float] = None

    @classmethod
    def of(cls, rates: Sequence[Union[Rate, Mapping[str, Any]]]) -> "Estimate":
        rates = [rate if isinstance(rate, Rate) else Rate.from_dict(rate) for rate in rates]
        values = [rate.value for rate in rates]
        return cls(statistics.mean(values), min(r.low for r in rates), max(r.high for r in rates),
                   statistics.stdev(values) if len(values) > 1 else None)

    def overlaps(self, other: "Estimate") -> bool:
        return self.low <= other.high and other.low <= self.high

    @property
    def number(self) -> str:
        spread = f" ± {100 * self.std:.1f}" if self.std is not None else ""
        return f"{100 * self.value:.1f}{spread}"

    @property
    def interval(self) -> str:
        return f"[{100 * self.low:.1f}, {100 * self.high:.1f}]"

    def text(self) -> str:
        return f"{self.number}% {self.interval}"

    def cell(self) -> Cell:
        return Cell(self.number, value=self.value, note=self.interval)


@dataclass
class RunSummary:
    """One run of a report: its directory, configuration, results and robustness (one
    :class:`RobustnessResult` per attack seed; dicts in the robustness.json format are read into one).
    Suites' sections read runs through it."""

    path: Path
    label: str
    config: TrainConfig
    results: Dict
    history: List[Dict]
    robustness: List[RobustnessResult]
    robustness_dirs: List[Path] = field(default_factory=list)

    def __post_init__(self):
        self.robustness = [r if isinstance(r, RobustnessResult) else RobustnessResult.from_dict(r)
                           for r in self.robustness]

    @property
    def steps(self) -> int:
        epochs = [r for r in self.history if "step" in r and not r.get("final")]
        return max((r["step"] for r in epochs), default=0)

    def benign(self, metric: str = "R@1") -> float:
        """A metric of the selected checkpoint on the whole test split (fraction)."""
        return self.results.get(f"test/{metric}", float("nan"))

    @property
    def seeds(self) -> List[int]:
        return [result.settings.seed for result in self.robustness]

    @property
    def queries(self) -> int:
        return self.robustness[0].settings.queries

    @property
    def test_items(self) -> int:
        return self.robustness[0].settings.gallery

    def clean_attacked(self) -> Estimate:
        """R@1 of the attacked queries before the attack (the eps = 0 point of the robust curve)."""
        return Estimate.of([result.clean for result in self.robustness])

    def robust_r1(self, eps: float) -> Optional[Estimate]:
        """The headline robust R@1 at ``eps``: the per-query worst case over every attack run."""
        entries = [result.at(eps) for result in self.robustness]
        return Estimate.of([e.r1 for e in entries]) if entries and all(entries) else None

    def robust_map(self, eps: float) -> Optional[float]:
        entries = [result.at(eps) for result in self.robustness]
        return statistics.mean(e.map_r for e in entries) if entries and all(entries) else None

    def outcomes(self, eps: float, seed_index: int = 0) -> Optional[Tuple[List[int], List[bool]]]:
        """The attacked queries and, per query, whether it survived every attack at ``eps`` (for paired
        comparisons); None for results that do not hold them."""
        result = self.robustness[seed_index]
        entry = result.at(eps)
        if entry is None or entry.correct is None or result.queries is None:
            return None
        return result.queries, entry.correct

    @property
    def ers_results(self):
        return [result.ers for result in self.robustness if result.ers is not None]

    @property
    def ers(self) -> Optional[float]:
        values = [ers.ers for ers in self.ers_results]
        return statistics.mean(values) if values else None

    @property
    def ers_interval(self) -> Optional[Tuple[float, float]]:
        """ERS's 95% interval over the attacked queries; with several seeds, the union of theirs. None
        without ERS or for a result saved before ERS had one."""
        intervals = [ers.interval for ers in self.ers_results]
        if not intervals or not all(intervals):
            return None
        return min(low for low, _ in intervals), max(high for _, high in intervals)

    def ers_text(self) -> str:
        """e.g. ``9.8 [8.9, 10.7]`` (the interval left out where there is none)."""
        cell = self.ers_cell()
        return f"{cell.text} {cell.note}".strip()

    def ers_cell(self) -> Cell:
        """ERS with its interval below it ("-" without ERS)."""
        if self.ers is None:
            return Cell("-")
        interval = self.ers_interval
        note = "" if interval is None else f"[{interval[0]:.1f}, {interval[1]:.1f}]"
        return Cell(f"{self.ers:.1f}", self.ers, note=note)

    def ers_terms(self) -> Dict[str, float]:
        """The ten ERS terms on their 0-100 scale (100: the attack changed nothing), mean over seeds."""
        return _mean_of([ers.terms for ers in self.ers_results])

    def ers_scores(self) -> Dict[str, float]:
        """The ten ERS inputs as the reference prints them (CA/QA rank percentiles, TMA a cosine, ES:D a
        distance, the others R@1 or retain@4 in %), mean over seeds; {} without ERS."""
        return _mean_of([ers.scores for ers in self.ers_results])

    @property
    def warnings(self) -> List[str]:
        prefix = len(self.robustness) > 1
        return [(f"seed {seed}: " if prefix else "") + warning
                for seed, result in zip(self.seeds, self.robustness) for warning in result.warnings]

    def not_converged(self) -> List[float]:
        """The eps at which the convergence check failed for at least one seed."""
        return sorted({eps for result in self.robustness for eps in result.not_converged()})

    @property
    def unbounded_r1(self) -> Optional[float]:
        values = [r.settings.unbounded_r1 for r in self.robustness if r.settings.unbounded_r1 is not None]
        return max(values) if values else None

    @property
    def attack_passes(self) -> float:
        """Forward+backward passes per attacked query, summed over eps (mean over seeds)."""
        return statistics.mean(result.passes_per_query for result in self.robustness)

    @property
    def evaluation_seconds(self) -> float:
        return statistics.mean(r.settings.seconds if r.settings.seconds is not None else float("nan")
                               for r in self.robustness)


def _mean_of(values: List[Dict[str, float]]) -> Dict[str, float]:
    return {key: statistics.mean(v[key] for v in values) for key in values[0]} if values else {}


def summarise_run(path: Path, protocol: AttackProtocol, label: Optional[str] = None, device: str = "auto",
                  progress: bool = False) -> RunSummary:
    """A finished run's summary; its robustness results are read from the run's store, computed where missing."""
    run = RunDirectory.open(path)
    results_path = run.path / "results.json"
    if not results_path.is_file():
        raise FileNotFoundError(f"{run.path} has no results.json: the run has not finished (resume it with "
                                f"robustdml train --resume {run.path})")
    results = run.read_results()
    source = RunSource.open(run.path)
    robustness = [robustness_for(run.path, protocol, seed, device=device, progress=progress, source=source)
                  for seed in protocol.seeds]
    return RunSummary(path=run.path, label=label or run.path.name, config=TrainConfig.load(run.config_path),
                      results=results, history=run.read_metrics(), robustness=robustness,
                      robustness_dirs=[source.folder(protocol, seed) for seed in protocol.seeds])


def seeds_text(protocol: AttackProtocol) -> str:
    if len(protocol.seeds) == 1:
        return f"one attack seed ({protocol.seeds[0]})"
    return (f"mean ± std over {len(protocol.seeds)} attack seeds {list(protocol.seeds)}, the interval the union of "
            "the seeds' 95% intervals")


def counts_text(runs: List[RunSummary], attribute: str) -> str:
    values = sorted({getattr(run, attribute) for run in runs})
    return f"{values[0]}" if len(values) == 1 else f"{values[0]}-{values[-1]}"
