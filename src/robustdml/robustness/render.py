"""A :class:`RobustnessResult` as a person reads it: Markdown, CSV and a robust-R@1-vs-eps plot, and the
folder that holds them with ``robustness.json``."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Dict, List

from robustdml.attacks.retrieval import score_columns
from robustdml.files import atomic_write_text
from robustdml.robustness.checks import escalations_text
from robustdml.robustness.result import RobustnessResult


def _converged(result: RobustnessResult, eps: float) -> str:
    check = result.check_at(eps)
    if check is None:
        return "-"
    text = "yes" if check.converged else f"NO (-{100 * check.drop:.1f} points)"
    return text + (f" after {escalations_text(len(check.escalations))}" if check.escalations else "")


def to_markdown(result: RobustnessResult) -> str:
    settings = result.settings
    lines = [f"Clean: R@1 {result.clean.text()}, mAP@R {100 * result.clean_map:.2f} ({settings.queries} queries "
             f"against {settings.gallery} clean items; R@1 with its 95% interval)", "",
             f"Attack: {settings.spec_text}", ""]
    if result.worst_case:
        lines += ["Robust R@1 (per-query worst case over all attacks; 95% interval; cost in forward+backward "
                  "passes per query):", "", "| eps | robust R@1 | mAP@R | passes/query | converged |",
                  "| --- | --- | --- | --- | --- |"]
        for eps, entry in sorted(result.worst_case.items()):
            lines.append(f"| {eps:.4g} | {entry.r1.text()} | {100 * entry.map_r:.2f} | {entry.passes_per_query:.1f} "
                         f"| {_converged(result, eps)} |")
        lines.append("")
    columns = score_columns()
    lines += ["| attack | eps | R@1 [95% CI] | mAP@R | passes/query | other |", "| --- | --- | --- | --- | --- | --- |"]
    for row in result.rows:
        other = ", ".join(f"{k} {v:.3f}" for k, v in row.scores.items() if k in columns)
        if row.after:
            other = "after " + ", ".join(f"{k} {100 * v:.1f}" for k, v in row.after.items())
        r1 = row.r1.text() if row.r1 is not None else "-"
        map_r = f"{100 * row.map_r:.2f}" if row.map_r is not None else "-"
        lines.append(f"| {row.attack} | {row.eps:.4g} | {r1} | {map_r} | {row.passes_per_query:.1f} | {other} |")
    if result.ers:
        ers = result.ers
        profile = "published profile" if ers.published else "NOT the published profile"
        interval = "" if ers.interval is None else f" [{ers.interval[0]:.2f}, {ers.interval[1]:.2f}]"
        lines += ["", f"ERS: **{ers.ers:.2f}**{interval} (95% interval over {len(ers.per_query)} queries; {profile}: "
                      f"{ers.spec_text}); terms: " + ", ".join(f"{k} {v:.1f}" for k, v in ers.terms.items())]
    for warning in result.warnings:
        lines += ["", f"> WARNING: {warning}"]
    return "\n".join(lines) + "\n"


def to_csv(result: RobustnessResult, path: Path) -> None:
    columns = score_columns()
    keys = ["attack", "eps", "R@1", "R@1_low", "R@1_high", "mAP@R", "passes_per_query", *columns]
    rows: List[Dict[str, object]] = [{"attack": "clean", "eps": 0, "R@1": result.clean.value, "mAP@R": result.clean_map,
                                      "R@1_low": result.clean.low, "R@1_high": result.clean.high,
                                      "passes_per_query": 0}]
    for eps, entry in sorted(result.worst_case.items()):
        rows.append({"attack": "worst case", "eps": eps, "R@1": entry.r1.value, "R@1_low": entry.r1.low,
                     "R@1_high": entry.r1.high, "mAP@R": entry.map_r, "passes_per_query": entry.passes_per_query})
    for row in result.rows:
        rows.append({"attack": row.attack, "eps": row.eps, "mAP@R": row.map_r, "passes_per_query": row.passes_per_query,
                     **({"R@1": row.r1.value, "R@1_low": row.r1.low, "R@1_high": row.r1.high} if row.r1 else {}),
                     **row.scores})
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=keys, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def plot(result: RobustnessResult, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(5, 3.5))
    by_attack: Dict[str, list] = {}
    for row in result.rows:
        if row.r1 is not None:
            by_attack.setdefault(row.attack, []).append((row.eps, row.r1.value))
    markers = iter("os^vDP*X")
    for name, points in by_attack.items():
        points = [(0.0, result.clean.value)] + sorted(points)
        axis.plot([p[0] for p in points], [100 * p[1] for p in points], marker=next(markers, "o"), label=name)
    if result.worst_case:
        points = [(0.0, result.clean.value)] + sorted((e, v.r1.value) for e, v in result.worst_case.items())
        axis.plot([p[0] for p in points], [100 * p[1] for p in points], "k--", label="worst case")
    axis.set_xlabel("eps (pixel units)")
    axis.set_ylabel("robust R@1 (%)")
    axis.set_ylim(0, 100)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def write(result: RobustnessResult, folder: Path) -> Path:
    """``folder`` with robustness.md, .csv, the plot and, last and atomically, robustness.json: a folder
    whose JSON is there holds a complete result."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(folder / "robustness.md", to_markdown(result))
    to_csv(result, folder / "robustness.csv")
    plot(result, folder / "robust_r1_vs_eps.png")
    atomic_write_text(folder / "robustness.json", json.dumps(result.to_dict(), indent=2) + "\n")
    return folder
