"""Build a report (Markdown + one responsive HTML page + PNG figures) from run directories, without retraining.

The page answers the reader's question first: the key findings (generated from the numbers, see
:mod:`robustdml.reporting.findings`), then one results table (benign R@1, robust R@1 per eps with
its 95% interval, ERS), the robust-R@1 plot, the checks, galleries and, at the end, the shared
configuration once with each run's differences. Robustness results are read from each run's cache
(``robustness/<key>/``) and computed only when missing; every row links to its run directory.

Suites add their own sections with ``sections(runs, figures) -> List[Block]`` (see
``Suite.sections`` and :mod:`robustdml.reporting.blocks`).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import yaml

from robustdml.attacks.suite import escalations_text
from robustdml.engine.config import TrainConfig
from robustdml.engine.run_dir import RunDirectory
from robustdml.files import atomic_write_json, atomic_write_text
from robustdml.reporting import plots
from robustdml.reporting.blocks import (Block, Bullets, Cell, Code, Column, Details, Figure, Grid, Heading, Legend,
                                        Paragraph, Table, link, to_html, to_markdown)
from robustdml.reporting.robustness_cache import robustness_folder, robustness_for
from robustdml.reporting.suites import AttackProtocol

Sections = Callable[[List["RunSummary"], Path], List[Block]]
# Fewer epochs than this: the per-epoch validation R@1 goes into a table instead of a plot.
MIN_EPOCHS_TO_PLOT = 3


@dataclass(frozen=True)
class Estimate:
    """An R@1 (fraction) over one or more attack seeds: the mean, the std over seeds (None for one
    seed) and a 95% interval: Clopper-Pearson over the attacked queries; with several seeds, the
    union of the seeds' intervals (wider than any of them, so comparisons stay conservative)."""

    value: float
    low: float
    high: float
    std: Optional[float] = None

    @classmethod
    def of(cls, entries: Sequence[Dict]) -> "Estimate":
        values = [entry["R@1"] for entry in entries]
        return cls(statistics.mean(values), min(e["R@1_ci"][0] for e in entries),
                   max(e["R@1_ci"][1] for e in entries), statistics.stdev(values) if len(values) > 1 else None)

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


def _at(mapping: Dict, eps: float) -> Optional[Dict]:
    """The entry of a ``{eps: ...}`` mapping of robustness.json (keys are strings there)."""
    for key, entry in mapping.items():
        if abs(float(key) - eps) < 1e-9:
            return entry
    return None


@dataclass
class RunSummary:
    """One run of a report: its directory, configuration, results and robustness (one dict per
    attack seed, the ``RobustnessReport.to_dict`` format). Suites' sections read runs through it."""

    path: Path
    label: str
    config: TrainConfig
    results: Dict
    history: List[Dict]
    robustness: List[Dict]
    robustness_dirs: List[Path] = field(default_factory=list)

    @property
    def steps(self) -> int:
        epochs = [r for r in self.history if "step" in r and not r.get("final")]
        return max((r["step"] for r in epochs), default=0)

    def benign(self, metric: str = "R@1") -> float:
        """A metric of the selected checkpoint on the whole test split (fraction)."""
        return self.results.get(f"test/{metric}", float("nan"))

    @property
    def seeds(self) -> List[int]:
        return [report["settings"].get("seed", 0) for report in self.robustness]

    @property
    def queries(self) -> int:
        return self.robustness[0]["settings"]["queries"]

    @property
    def test_items(self) -> int:
        return self.robustness[0]["settings"]["gallery"]

    def clean_attacked(self) -> Estimate:
        """R@1 of the attacked queries before the attack (the eps = 0 point of the robust curve)."""
        return Estimate.of([report["clean"] for report in self.robustness])

    def robust_r1(self, eps: float) -> Optional[Estimate]:
        """The headline robust R@1 at ``eps``: the per-query worst case over every attack run."""
        entries = [_at(report["worst_case"], eps) for report in self.robustness]
        return Estimate.of(entries) if entries and all(entries) else None

    def robust_map(self, eps: float) -> Optional[float]:
        entries = [_at(report["worst_case"], eps) for report in self.robustness]
        return statistics.mean(e["mAP@R"] for e in entries) if entries and all(entries) else None

    @property
    def ers(self) -> Optional[float]:
        values = [report["ers"]["ERS"] for report in self.robustness if report.get("ers")]
        return statistics.mean(values) if values else None

    @property
    def ers_interval(self) -> Optional[Tuple[float, float]]:
        """ERS's 95% interval over the attacked queries; with several seeds, the union of theirs.
        None without ERS or for a result saved before ERS had one."""
        intervals = [report["ers"].get("interval") for report in self.robustness if report.get("ers")]
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
        return self._ers_mean("terms")

    def ers_scores(self) -> Dict[str, float]:
        """The ten ERS inputs as the reference prints them (CA/QA rank percentiles, TMA a cosine, ES:D a
        distance, the others R@1 or retain@4 in %), mean over seeds; {} without ERS."""
        return self._ers_mean("scores")

    def _ers_mean(self, part: str) -> Dict[str, float]:
        values = [report["ers"][part] for report in self.robustness if report.get("ers")]
        return {key: statistics.mean(v[key] for v in values) for key in values[0]} if values else {}

    @property
    def warnings(self) -> List[str]:
        prefix = len(self.robustness) > 1
        return [(f"seed {seed}: " if prefix else "") + warning
                for seed, report in zip(self.seeds, self.robustness) for warning in report["warnings"]]

    def not_converged(self) -> List[float]:
        """The eps at which the convergence check failed for at least one seed."""
        return sorted({float(eps) for report in self.robustness
                       for eps, check in report.get("convergence", {}).items() if not check["converged"]})

    @property
    def unbounded_r1(self) -> Optional[float]:
        values = [r["settings"]["unbounded_R@1"] for r in self.robustness
                  if r["settings"].get("unbounded_R@1") is not None]
        return max(values) if values else None

    @property
    def attack_passes(self) -> float:
        """Forward+backward passes per attacked query, summed over eps (mean over seeds)."""
        return statistics.mean(sum(e["passes_per_query"] for e in r["worst_case"].values()) for r in self.robustness)


def summarise_run(path: Path, protocol: AttackProtocol, label: Optional[str] = None, device: str = "auto",
                  progress: bool = False) -> RunSummary:
    run = RunDirectory.open(path)
    results_path = run.path / "results.json"
    if not results_path.is_file():
        raise FileNotFoundError(f"{run.path} has no results.json: the run has not finished (resume it with "
                                f"robustdml train --resume {run.path})")
    robustness = [robustness_for(run.path, protocol, seed, device=device, progress=progress) for seed in protocol.seeds]
    return RunSummary(path=run.path, label=label or run.path.name, config=TrainConfig.load(run.config_path),
                      results=run.read_results(), history=run.read_metrics(), robustness=robustness,
                      robustness_dirs=[robustness_folder(run.path, protocol, seed) for seed in protocol.seeds])


# ----------------------------------------------------------------------------------------- tables
def seeds_text(protocol: AttackProtocol) -> str:
    if len(protocol.seeds) == 1:
        return f"one attack seed ({protocol.seeds[0]})"
    return (f"mean ± std over {len(protocol.seeds)} attack seeds {list(protocol.seeds)}, the interval the union of "
            "the seeds' 95% intervals")


def counts_text(runs: List[RunSummary], attribute: str) -> str:
    values = sorted({getattr(run, attribute) for run in runs})
    return f"{values[0]}" if len(values) == 1 else f"{values[0]}-{values[-1]}"


def results_table(runs: List[RunSummary], protocol: AttackProtocol) -> Table:
    """The main table: benign R@1 / mAP@R, R@1 of the attacked queries clean and per eps, ERS."""
    benign = f"benign, all {counts_text(runs, 'test_items')} test items"
    attacked = f"R@1 of {counts_text(runs, 'queries')} attacked queries (%)"
    columns = [Column("run", left=True), Column("R@1", benign, "max"), Column("mAP@R", benign, "max"),
               Column("clean", attacked, "max")]
    columns += [Column(f"eps\u00a0{eps:g}", attacked, "max") for eps in protocol.eps_list]
    columns.append(Column("ERS", best="max"))
    rows = []
    for run in runs:
        row = [run.label, Cell(f"{100 * run.benign('R@1'):.1f}", run.benign("R@1")),
               Cell(f"{100 * run.benign('mAP@R'):.1f}", run.benign("mAP@R")), run.clean_attacked().cell()]
        row += [run.robust_r1(eps).cell() if run.robust_r1(eps) else "-" for eps in protocol.eps_list]
        row.append("-" if run.ers is None else run.ers_cell())
        rows.append(row)
    caption = (f"**Benign**: the selected checkpoint on the whole test split. **Attacked queries**: "
               f"{counts_text(runs, 'queries')} random test queries; *clean* is their R@1 before any attack (the "
               "robust curve's first point; it differs from benign R@1 only by which items are counted); each eps "
               "column is the per-query worst case over the attack ensemble, every perturbed query ranked against "
               f"the clean test set with itself excluded; {seeds_text(protocol)}. Below each value: its 95% "
               "Clopper-Pearson interval over the attacked queries. "
               + ("**ERS**: 0-100, higher = more robust; below it, its 95% t-interval over the attacked queries "
                  "(ERS is the mean of the queries' own ERS). " if any(run.ers is not None for run in runs) else "")
               + "Bold: the best value of each column.")
    return Table(columns, rows, caption).without_empty_columns()


def _epoch_r1(run: RunSummary) -> str:
    values = [f"{100 * r['val/R@1']:.1f}" for r in run.history
              if "epoch" in r and not r.get("final") and "val/R@1" in r]
    return " → ".join(values if len(values) <= 4 else [values[0], "…", values[-1]]) or "-"


def costs_table(runs: List[RunSummary], protocol: AttackProtocol, epochs_plotted: bool) -> Table:
    """Secondary metrics and what training and evaluation cost."""
    top = max(protocol.eps_list)
    columns = ([] if epochs_plotted else [Column("validation R@1 by epoch", left=True)]) + [
        Column("NMI", best="max"), Column(f"robust mAP@R, eps\u00a0{top:g}", best="max"),
        Column("train passes/step", best="min"), Column("train time (s)", best="min"),
        Column("attack passes/query"), Column("evaluation time (s)")]
    rows = []
    for run in runs:
        passes = run.results.get("passes", 0) / max(run.steps, 1)
        robust_map = run.robust_map(top)
        seconds = statistics.mean(r["settings"].get("seconds", float("nan")) for r in run.robustness)
        rows.append([run.label] + ([] if epochs_plotted else [_epoch_r1(run)]) + [
            Cell(f"{100 * run.benign('NMI'):.1f}", run.benign("NMI")),
            "-" if robust_map is None else Cell(f"{100 * robust_map:.1f}", robust_map),
            Cell(f"{passes:.1f}", passes), Cell(f"{run.results.get('train_seconds', 0):.0f}",
                                                run.results.get("train_seconds")),
            f"{run.attack_passes:.0f}", f"{seconds:.0f}"])
    caption = ("NMI on the test split; robust mAP@R under the same attack as robust R@1; passes = forward+backward "
               "passes (per training step; per attacked query summed over eps, after early stop); evaluation time "
               "includes the checks" + (" and the ERS attacks." if any(r.ers is not None for r in runs) else "."))
    return Table([Column("run", left=True)] + columns, rows, caption).without_empty_columns()


def ers_table(runs: List[RunSummary]) -> Optional[Table]:
    scored = [run for run in runs if run.ers is not None]
    if not scored:
        return None
    names = list(scored[0].ers_terms())
    columns = [Column("run", left=True), Column("ERS", best="max")] + [Column(n, best="max") for n in names]
    rows = [[run.label, run.ers_cell()] +
            [Cell(f"{run.ers_terms()[n]:.1f}", run.ers_terms()[n]) for n in names] for run in scored]
    ers = scored[0].robustness[0]["ers"]
    profile = "the published profile" if ers.get("published") else "**not** the published profile"
    eps = ", ".join(f"{e:.4g}" for e in ers["spec"]["eps"])
    return Table(columns, rows, f"Each term 0-100 (100: the attack changed nothing); below ERS its 95% interval "
                                f"over the attacked queries; attacks: "
                                f"{ers.get('spec_text', '')} at eps {eps} ({profile}).")


def checks_table(runs: List[RunSummary], protocol: AttackProtocol) -> Table:
    """Convergence probe (robust R@1 before -> with the stronger attack) per eps, and the unbounded attack."""
    probes = sorted({c["probe"] for run in runs for r in run.robustness for c in r.get("convergence", {}).values()})
    size = "-".join(str(p) for p in (probes[:1] + probes[-1:] if len(probes) > 1 else probes))
    group = f"probe of {size} queries: robust R@1 → with 2x steps, +1 restart"
    columns = [Column("run", left=True)] + [Column(f"eps\u00a0{eps:g}", group) for eps in protocol.eps_list] + \
              [Column("unbounded attack R@1 (expect ~0)")]
    rows = []
    for run in runs:
        row: List = [run.label]
        for eps in protocol.eps_list:
            checks = [c for c in (_at(r.get("convergence", {}), eps) for r in run.robustness) if c]
            if not checks:
                row.append("-")
                continue
            worst = max(checks, key=lambda c: c["drop"])
            ok = all(c["converged"] for c in checks)
            escalated = max(len(c.get("escalations", ())) for c in checks)
            notes = ([f"after {escalations_text(escalated)}"] if escalated else []) + \
                    ([] if ok else ["**not converged**"])
            row.append(Cell(f"{100 * worst['R@1']:.1f} → {100 * worst['stronger_R@1']:.1f}", note=", ".join(notes)))
        row.append("-" if run.unbounded_r1 is None else f"{100 * run.unbounded_r1:.1f}")
        rows.append(row)
    caption = ("Convergence: a probe of the attacked queries is re-attacked with twice the steps and one more restart; "
               "a drop of more than one point means the attack had not converged. Then every surviving query is "
               "re-attacked with that stronger attack (an escalation; robust R@1 above includes it) and the probe is "
               "checked again with an attack twice as strong; *not converged* remains only when the last allowed "
               "escalation still failed, and robust R@1 may then be overstated. "
               "Unbounded: an attack with eps = 1 from the clean image must drive R@1 near 0, otherwise the "
               "gradients are masked.")
    return Table(columns, rows, caption).without_empty_columns()


def configuration_section(runs: List[RunSummary], protocol: AttackProtocol, output: Path) -> List[Block]:
    """The attack spec and the training configuration shared by every run, shown once; then each
    run's directory, its differences and its robustness results."""
    configs = [run.config.to_dict() for run in runs]
    shared = {key: value for key, value in configs[0].items()
              if key != "output" and all(c.get(key) == value for c in configs[1:])}
    rows = []
    for run, config in zip(runs, configs):
        different = [f"{key}: {yaml.safe_dump(value, default_flow_style=True).strip().removesuffix('...').strip()}"
                     for key, value in config.items() if key != "output" and key not in shared]
        links = ", ".join(link(f"seed {seed}", folder / "robustness.md", output)
                          for seed, folder in zip(run.seeds, run.robustness_dirs))
        rows.append([run.label, link(str(run.path), run.path, output), "; ".join(different) or "(none)", links or "-"])
    spec = protocol.spec
    versions = ", ".join(f"{k} {v}" for k, v in runs[0].robustness[0]["settings"].get("versions", {}).items())
    blocks: List[Block] = [
        Paragraph(f"**Attack** (every robust R@1): `{spec.describe()}` at eps {', '.join(f'{e:g}' for e in spec.eps)} "
                  f"on {counts_text(runs, 'queries')} random test queries per run, {seeds_text(protocol)}; convergence "
                  f"probe: {f'{spec.probe_queries} queries' if spec.probe_queries else 'none'}. Versions: {versions}."),
        Table([Column("run", left=True), Column("directory", left=True),
               Column("differs from the shared configuration", left=True),
               Column("robustness results", left=True)], rows).without_empty_columns(),
        Details(f"Shared training configuration ({len(shared)} fields, the same in every run)",
                [Code(yaml.safe_dump(shared, sort_keys=False).strip())]),
        Details(f"Attack specification (key `{spec.key()}`)",
                [Code(yaml.safe_dump(spec.to_dict(), sort_keys=False).strip())]),
    ]
    return blocks


# ----------------------------------------------------------------------------------------- figures
def robust_figure(runs: List[RunSummary], protocol: AttackProtocol, path: Path) -> Figure:
    curves = {}
    for run in runs:
        clean = run.clean_attacked()
        points = [(0.0, clean.value, clean.low, clean.high)]
        points += [(eps, e.value, e.low, e.high) for eps in protocol.eps_list for e in [run.robust_r1(eps)] if e]
        curves[run.label] = points
    queries = counts_text(runs, "queries")
    plots.robust_curves(curves, path, queries=queries)
    return Figure(path, f"R@1 of the {queries} attacked queries against eps, each point with its 95% interval. "
                        "*clean*: the same queries before attack (not the table's benign R@1, which counts the whole "
                        "test split).")


def training_figures(runs: List[RunSummary], figures: Path) -> List[Figure]:
    """Validation R@1 and training loss per epoch (each loss divided by its first epoch's value,
    since defenses optimise differently scaled losses). Runs trained without a validation split
    (``val_fraction: 0``, e.g. RobRank's recipe) have no validation curve; with none at all, no figure."""
    epochs = {run.label: [r for r in run.history if "epoch" in r and not r.get("final")] for run in runs}
    r1 = {label: [(r["epoch"], 100 * r["val/R@1"]) for r in records if "val/R@1" in r]
          for label, records in epochs.items()}
    r1 = {label: points for label, points in r1.items() if points}
    loss = {label: [(r["epoch"], r["train_loss"] / records[0]["train_loss"]) for r in records if "train_loss" in r]
            for label, records in epochs.items() if records and records[0].get("train_loss")}
    shown = []
    if r1:
        missing = [label for label in epochs if label not in r1]
        caption = "Validation R@1 per epoch (the split carved from the training data)." + (
            f" No validation split (last checkpoint kept): {', '.join(missing)}." if missing else "")
        shown.append(Figure(plots.lines(r1, figures / "validation_r1.png", "epoch", "validation R@1 (%)",
                                        integer_x=True), caption))
    if loss:
        shown.append(Figure(plots.lines(loss, figures / "training_loss.png", "epoch", "training loss / first epoch's",
                                        integer_x=True), "Training loss per epoch, divided by each run's first-epoch "
                                                         "loss."))
    return shown


def _attacked(loaded, protocol: AttackProtocol, chosen: np.ndarray):
    """A loaded run's clean test embeddings and labels, and the adversarial images (and their
    embeddings) of the ``chosen`` queries under the protocol's ensemble at its largest eps."""
    from robustdml.attacks.ensemble import EnsembleRunner
    from robustdml.attacks.retrieval import AttackContext
    from robustdml.attacks.spec import AUTO_MEMBERS, ENSEMBLE_ATTACKS
    from robustdml.evaluation import compute_embeddings

    dataset = loaded.splits.test
    gallery, labels = compute_embeddings(loaded.model, dataset, device=loaded.device, progress=False)
    labels = labels.numpy()
    spec = protocol.spec
    members = tuple(m for m in spec.members if m in ENSEMBLE_ATTACKS) or AUTO_MEMBERS
    context = AttackContext(model=loaded.model, dataset=dataset, gallery=gallery, labels=labels, engine=None,
                            device=loaded.device, generator=torch.Generator().manual_seed(0))
    runner = EnsembleRunner(context, seed=protocol.seeds[0])
    outcome = runner.run(chosen, spec, max(spec.eps), members, alive=np.ones(len(chosen), dtype=bool),
                         keep_images=True)
    with torch.no_grad():
        attacked = loaded.model(outcome.images.to(loaded.device)).float().cpu()
    return gallery, labels, outcome.images, attacked


def gallery_for(run: RunSummary, protocol: AttackProtocol, path: Path, device: str = "auto", queries: int = 3,
                k: int = 5) -> Optional[Path]:
    """Query, top-k clean, top-k of the attacked query (the default attack at the largest eps)."""
    from robustdml.attacks.retrieval import load_images
    from robustdml.engine.evaluate import load_run
    from robustdml.evaluation import knn

    loaded = load_run(run.path, device=device)
    dataset = loaded.splits.test
    if len(dataset.image_shape) != 3:
        return None
    chosen = np.sort(np.random.default_rng(0).choice(len(dataset), size=queries, replace=False))
    gallery, labels, adversarial, attacked = _attacked(loaded, protocol, chosen)
    _, clean_nn = knn(gallery[chosen], gallery, k, exclude_index=chosen)
    _, attacked_nn = knn(attacked, gallery, k, exclude_index=chosen)
    as_images = lambda idx: [img.numpy() for img in load_images(dataset, idx)]  # noqa: E731
    return plots.retrieval_gallery(
        as_images(chosen), [as_images(row) for row in clean_nn],
        [labels[row] == labels[q] for row, q in zip(clean_nn, chosen)], [as_images(row) for row in attacked_nn],
        [labels[row] == labels[q] for row, q in zip(attacked_nn, chosen)], path,
        title=f"{run.label}: top-{k} clean and under attack, eps {max(protocol.eps_list):g}",
        attacked_queries=[img.numpy() for img in adversarial])


def shifts_for(run: RunSummary, protocol: AttackProtocol, path: Path, device: str = "auto") -> Optional[Path]:
    """2-d embeddings with arrows to their attacked versions (vector datasets with 2-d embeddings)."""
    from robustdml.engine.evaluate import load_run
    from robustdml.evaluation import knn

    loaded = load_run(run.path, device=device)
    if loaded.config.embedding_dim != 2:
        return None
    size = len(loaded.splits.test)
    chosen = np.sort(np.random.default_rng(0).choice(size, size=min(200, size), replace=False))
    gallery, labels, _, moved = _attacked(loaded, protocol, chosen)
    _, neighbours = knn(gallery[chosen], gallery[chosen], 1, exclude_index=np.arange(len(chosen)))
    return plots.embedding_shifts(gallery[chosen].numpy(), moved.numpy(), labels[chosen], neighbours[:, 0], path,
                                  title=f"{run.label}: embeddings under attack at eps {max(protocol.eps_list):g}")


def galleries_section(runs: List[RunSummary], protocol: AttackProtocol, figures: Path, device: str) -> List[Block]:
    """One collapsible gallery per run, under one legend for the borders."""
    pictures: List[Block] = []
    kind = ""
    for index, run in enumerate(runs):
        target = figures / f"gallery_{index}_{run.path.name}.png"
        picture = gallery_for(run, protocol, target, device=device)
        kind = kind or ("gallery" if picture else "")
        picture = picture or shifts_for(run, protocol, target, device=device)
        if picture:
            pictures.append(Details(run.label, [Figure(picture, f"{run.label}, eps {max(protocol.eps_list):g}")]))
    if not pictures:
        return []
    top = max(protocol.eps_list)
    if kind == "gallery":
        intro = [Paragraph(f"Three random test queries per run (click a run to open it). Upper row of each pair: the "
                           f"query and its top-5 results; lower row: the query perturbed by the attack at eps {top:g} "
                           "and its top-5 results (clean gallery)."),
                 Legend([("#2ca02c", "green: same class as the query"), ("#d62728", "red: another class")])]
    else:
        intro = [Paragraph(f"Test embeddings (dots, coloured by class, grey lines to their nearest neighbour) and "
                           f"arrows to the embeddings of their attacked versions at eps {top:g} (click a run to "
                           "open it).")]
    return [Heading("Retrieval under attack", anchor="galleries"), *intro, *pictures]


# ----------------------------------------------------------------------------------------- the report
def summary_json(runs: List[RunSummary], protocol: AttackProtocol, table: Table) -> Dict:
    """results.json: the main table as text and every number behind it (fractions, intervals)."""
    def estimate(e: Optional[Estimate]):
        return None if e is None else {"R@1": e.value, "R@1_ci": [e.low, e.high], "std": e.std}
    return {"header": table.header_names(), "rows": table.text_rows(), "protocol": protocol.to_dict(), "runs": [
        {"label": run.label, "path": str(run.path), "defense": run.config.defense,
         "benign": {m: run.benign(m) for m in ("R@1", "mAP@R", "NMI")},
         "clean_attacked": estimate(run.clean_attacked()),
         "robust": {f"{eps:g}": estimate(run.robust_r1(eps)) for eps in protocol.eps_list}, "ERS": run.ers,
         "queries": run.queries, "seeds": run.seeds, "warnings": run.warnings} for run in runs]}


def render_report(runs: List[RunSummary], output: Path, protocol: AttackProtocol, title: str = "robustdml report",
                  description: str = "", notes: Sequence[str] = (), command: str = "",
                  sections: Optional[Sections] = None, galleries: bool = True, device: str = "auto",
                  featured: Sequence[str] = (), sections_first: bool = False) -> Path:
    """Write ``report.md``, ``report.html``, ``results.json`` and ``figures/`` for summarised runs.

    ``featured``: names of the run directories the per-run figures (robust curves, training curves)
    and galleries show, for reports of many runs (empty: every run; the tables always list every
    run); ``sections_first``: the suite's sections come before the per-run results (suites whose
    headline is a summary over runs, e.g. mean ± std over training seeds)."""
    from robustdml.reporting.findings import how_to_read, key_findings, problems

    output = Path(output)
    figures = output / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    shown = [run for run in runs if run.path.name in featured] or runs
    epochs = max((sum(1 for r in run.history if "epoch" in r and not r.get("final")) for run in runs), default=0)
    table = results_table(runs, protocol)
    extra = sections(runs, figures) if sections else []
    blocks: List[Block] = [Heading(title, 1)]
    if description:
        blocks.append(Paragraph(description, "small"))
    blocks += [key_findings(runs, protocol), how_to_read(runs, protocol)] + (extra if sections_first else [])
    curves = robust_figure(shown, protocol, figures / "robust_r1_vs_eps.png")
    if len(shown) < len(runs):
        curves.caption += f" Plotted: {len(shown)} of the {len(runs)} runs ({'; '.join(r.label for r in shown)})."
    blocks += [Heading("Results" + (" per run" if sections_first else ""), anchor="results"), Grid([table, curves])]
    if epochs >= MIN_EPOCHS_TO_PLOT:
        training = training_figures(shown, figures)
        if training:
            blocks += [Heading("Training", 3), Grid(training)]
    blocks += [Heading("More metrics and costs", 3), costs_table(runs, protocol, epochs >= MIN_EPOCHS_TO_PLOT)]
    ers = ers_table(runs)
    if ers:
        blocks.append(Details("ERS and its ten terms per run", [ers]))
    if not sections_first:
        blocks += extra
    checks = checks_table(runs, protocol)
    blocks += [Heading("Checks: can these numbers be trusted?", anchor="checks"),
               checks if len(checks.columns) > 1 else Paragraph("No check was run (no convergence probe, no sanity "
                                                                 "checks): robust R@1 may be overstated.", "warning")]
    warnings = [f"**{run.label}**: {warning}" for run in runs for warning in run.warnings]
    if warnings:
        blocks.append(Details(f"The {len(warnings)} warning(s) in full", [Bullets(warnings)]))
    elif not any(problems(run) for run in runs):
        blocks.append(Paragraph("Every check passed."))
    if galleries:
        blocks += galleries_section(shown, protocol, figures, device)
    blocks += [Heading("Setting and configuration", anchor="configuration"), *[Paragraph(note) for note in notes],
               *configuration_section(runs, protocol, output), Heading("How to reproduce", 3),
               Code("\n".join(filter(None, [command, "# one run again, from its directory above:",
                                            "robustdml train --config RUN_DIR/config.yaml --output NEW_DIR"])))]
    atomic_write_text(output / "report.md", to_markdown(blocks, output))
    atomic_write_text(output / "report.html", to_html(blocks, output, title))
    atomic_write_json(output / "results.json", summary_json(runs, protocol, table), sort_keys=False)
    return output


def build_report(run_paths: Sequence[Path], output: Path, protocol: AttackProtocol, title: str = "robustdml report",
                 description: str = "", notes: Sequence[str] = (), labels: Optional[Dict[str, str]] = None,
                 command: str = "", device: str = "auto", progress: bool = False,
                 sections: Optional[Sections] = None, featured: Sequence[str] = (),
                 sections_first: bool = False) -> Path:
    """Summarise ``run_paths`` (computing missing robustness results) and render their report into ``output``."""
    runs = [summarise_run(Path(p), protocol, (labels or {}).get(str(p)), device=device, progress=progress)
            for p in run_paths]
    return render_report(runs, output, protocol, title=title, description=description, notes=notes, command=command,
                         sections=sections, device=device, featured=featured, sections_first=sections_first)
