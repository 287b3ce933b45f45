"""Build a report (Markdown + one responsive HTML page + PNG figures) from run directories, without retraining.

The page answers the reader's question first: the key findings (generated from the numbers, see
:mod:`robustdml.reporting.findings`), then one results table (benign R@1, robust R@1 per eps with its 95%
interval, ERS), the robust-R@1 plot, the checks, galleries and, at the end, the shared configuration once
with each run's differences. Robustness results are read from each run's store (``robustness/<key>/``) and
computed only when missing; every row links to its run directory. The read model is
:mod:`robustdml.reporting.model`, the tables :mod:`~robustdml.reporting.tables`, the figures
:mod:`~robustdml.reporting.figures`.

Suites add their own sections with ``sections(runs, figures) -> List[Block]`` (see ``Suite.sections`` and
:mod:`robustdml.reporting.blocks`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

from robustdml.files import atomic_write_json, atomic_write_text
from robustdml.reporting.blocks import Block, Bullets, Code, Details, Grid, Heading, Paragraph, Table, to_html, to_markdown
from robustdml.reporting.figures import galleries_section, robust_figure, training_figures
from robustdml.reporting.findings import how_to_read, key_findings, problems
from robustdml.reporting.model import Estimate, RunSummary, summarise_run
from robustdml.reporting.tables import checks_table, configuration_section, costs_table, ers_table, results_table
from robustdml.robustness.spec import AttackProtocol

Sections = Callable[[List[RunSummary], Path], List[Block]]
# Fewer epochs than this: the per-epoch validation R@1 goes into a table instead of a plot.
MIN_EPOCHS_TO_PLOT = 3


@dataclass
class PageOptions:
    """What a report page says besides its runs: ``title``, ``description`` (under the title), ``notes`` (on the
    setting), ``command`` (how to reproduce it), the suite's ``sections`` and whether they come first
    (``sections_first``: suites whose headline is a summary over runs), ``galleries`` (computed on ``device``)
    and ``featured``: names of the run directories the per-run figures and galleries show, for reports of
    many runs (empty: every run; the tables always list every run)."""

    title: str = "robustdml report"
    description: str = ""
    notes: Sequence[str] = ()
    command: str = ""
    sections: Optional[Sections] = None
    sections_first: bool = False
    galleries: bool = True
    device: str = "auto"
    featured: Sequence[str] = ()


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


def _epochs(runs: List[RunSummary]) -> int:
    return max((sum(1 for r in run.history if "epoch" in r and not r.get("final")) for run in runs), default=0)


def _checks_blocks(runs: List[RunSummary], protocol: AttackProtocol) -> List[Block]:
    checks = checks_table(runs, protocol)
    blocks: List[Block] = [Heading("Checks: can these numbers be trusted?", anchor="checks"),
                           checks if len(checks.columns) > 1 else
                           Paragraph("No check was run (no convergence probe, no sanity checks): robust R@1 may be "
                                     "overstated.", "warning")]
    warnings = [f"**{run.label}**: {warning}" for run in runs for warning in run.warnings]
    if warnings:
        blocks.append(Details(f"The {len(warnings)} warning(s) in full", [Bullets(warnings)]))
    elif not any(problems(run) for run in runs):
        blocks.append(Paragraph("Every check passed."))
    return blocks


def render_report(runs: List[RunSummary], output: Path, protocol: AttackProtocol,
                  options: Optional[PageOptions] = None, **overrides) -> Path:
    """Write ``report.md``, ``report.html``, ``results.json`` and ``figures/`` for summarised runs
    (``overrides``: fields of :class:`PageOptions`)."""
    page = dataclasses.replace(options or PageOptions(), **overrides)
    output = Path(output)
    figures = output / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    shown = [run for run in runs if run.path.name in page.featured] or runs
    plotted = _epochs(runs) >= MIN_EPOCHS_TO_PLOT
    table = results_table(runs, protocol)
    extra = page.sections(runs, figures) if page.sections else []
    blocks: List[Block] = [Heading(page.title, 1)]
    if page.description:
        blocks.append(Paragraph(page.description, "small"))
    blocks += [key_findings(runs, protocol), how_to_read(runs, protocol)] + (extra if page.sections_first else [])
    curves = robust_figure(shown, protocol, figures / "robust_r1_vs_eps.png")
    if len(shown) < len(runs):
        curves.caption += f" Plotted: {len(shown)} of the {len(runs)} runs ({'; '.join(r.label for r in shown)})."
    blocks += [Heading("Results" + (" per run" if page.sections_first else ""), anchor="results"),
               Grid([table, curves])]
    training = training_figures(shown, figures) if plotted else []
    if training:
        blocks += [Heading("Training", 3), Grid(training)]
    blocks += [Heading("More metrics and costs", 3), costs_table(runs, protocol, plotted)]
    ers = ers_table(runs)
    if ers:
        blocks.append(Details("ERS and its ten terms per run", [ers]))
    if not page.sections_first:
        blocks += extra
    blocks += _checks_blocks(runs, protocol)
    if page.galleries:
        blocks += galleries_section(shown, protocol, figures, page.device)
    blocks += [Heading("Setting and configuration", anchor="configuration"), *[Paragraph(note) for note in page.notes],
               *configuration_section(runs, protocol, output), Heading("How to reproduce", 3),
               Code("\n".join(filter(None, [page.command, "# one run again, from its directory above:",
                                            "robustdml train --config RUN_DIR/config.yaml --output NEW_DIR"])))]
    atomic_write_text(output / "report.md", to_markdown(blocks, output))
    atomic_write_text(output / "report.html", to_html(blocks, output, page.title))
    atomic_write_json(output / "results.json", summary_json(runs, protocol, table), sort_keys=False)
    return output


def build_report(run_paths: Sequence[Path], output: Path, protocol: AttackProtocol,
                 labels: Optional[Dict[str, str]] = None, device: str = "auto", progress: bool = False,
                 options: Optional[PageOptions] = None, **overrides) -> Path:
    """Summarise ``run_paths`` (computing missing robustness results) and render their report into ``output``."""
    runs = [summarise_run(Path(p), protocol, (labels or {}).get(str(p)), device=device, progress=progress)
            for p in run_paths]
    return render_report(runs, output, protocol, options, device=device, **overrides)
