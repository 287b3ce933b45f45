"""The tables of a report: the main results, more metrics and costs, ERS and its terms, the checks, and the
configuration shared by the runs."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import yaml

from robustdml.reporting.blocks import Block, Cell, Code, Column, Details, Paragraph, Table, link
from robustdml.reporting.model import RunSummary, counts_text, seeds_text
from robustdml.robustness.checks import escalations_text
from robustdml.robustness.spec import AttackProtocol


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
        rows.append([run.label] + ([] if epochs_plotted else [_epoch_r1(run)]) + [
            Cell(f"{100 * run.benign('NMI'):.1f}", run.benign("NMI")),
            "-" if robust_map is None else Cell(f"{100 * robust_map:.1f}", robust_map),
            Cell(f"{passes:.1f}", passes), Cell(f"{run.results.get('train_seconds', 0):.0f}",
                                                run.results.get("train_seconds")),
            f"{run.attack_passes:.0f}", f"{run.evaluation_seconds:.0f}"])
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
    ers = scored[0].ers_results[0]
    profile = "the published profile" if ers.published else "**not** the published profile"
    eps = ", ".join(f"{e:.4g}" for e in ers.spec["eps"])
    return Table(columns, rows, f"Each term 0-100 (100: the attack changed nothing); below ERS its 95% interval "
                                f"over the attacked queries; attacks: "
                                f"{ers.spec_text} at eps {eps} ({profile}).")


def checks_table(runs: List[RunSummary], protocol: AttackProtocol) -> Table:
    """Convergence probe (robust R@1 before -> with the stronger attack) per eps, and the unbounded attack."""
    probes = sorted({c.probe for run in runs for r in run.robustness for c in r.convergence.values()})
    size = "-".join(str(p) for p in (probes[:1] + probes[-1:] if len(probes) > 1 else probes))
    group = f"probe of {size} queries: robust R@1 → with 2x steps, +1 restart"
    columns = [Column("run", left=True)] + [Column(f"eps\u00a0{eps:g}", group) for eps in protocol.eps_list] + \
              [Column("unbounded attack R@1 (expect ~0)")]
    rows = []
    for run in runs:
        row: List = [run.label]
        for eps in protocol.eps_list:
            checks = [c for c in (r.check_at(eps) for r in run.robustness) if c]
            if not checks:
                row.append("-")
                continue
            worst = max(checks, key=lambda c: c.drop)
            ok = all(c.converged for c in checks)
            escalated = max(len(c.escalations) for c in checks)
            notes = ([f"after {escalations_text(escalated)}"] if escalated else []) + \
                    ([] if ok else ["**not converged**"])
            row.append(Cell(f"{100 * worst.r1:.1f} → {100 * worst.stronger_r1:.1f}", note=", ".join(notes)))
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
    versions = ", ".join(f"{k} {v}" for k, v in runs[0].robustness[0].settings.versions.items())
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
