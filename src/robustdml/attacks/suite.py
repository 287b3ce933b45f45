"""Robustness evaluation: attacks x eps over a query set, the per-query worst case, ERS, sanity checks.

Produces a :class:`RobustnessReport` that writes Markdown, CSV, JSON and a robust-R@1-vs-eps plot.
Sanity checks flag evaluations that cannot be trusted (gradient masking, broken attacks): robust R@1
must not rise with eps, an unbounded attack must drive R@1 near 0, and more steps must not help.
"""

from __future__ import annotations

import csv
import json
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from robustdml.attacks.engines import build_engine
from robustdml.attacks.retrieval import RETRIEVAL_ATTACKS, AttackContext, check_attack_options, run_attack
from robustdml.evaluation import compute_embeddings, retrieval_metrics
from robustdml.evaluation.ers import ERS_INPUTS, empirical_robustness_score, ers_profile

DEFAULT_EPS = (0.01, 0.05, 0.1)
ERS_ATTACKS = ("ca+", "ca-", "qa+", "qa-", "tma", "es", "ltm", "gtm", "gtt")
# Scores shown next to R@1 / mAP@R (the R@1-valued ERS terms would repeat the R@1 column).
EXTRA_COLUMNS = ("CA+", "CA-", "QA+", "QA-", "TMA", "ES:D", "GTT")
UNBOUNDED_EPS = 1.0
NEAR_ZERO_R1 = 0.05
STEP_TOLERANCE = 0.02


class UntrustworthyEvaluation(UserWarning):
    """A sanity check failed: the robustness numbers may overstate the model's robustness."""


@dataclass
class RobustnessReport:
    clean: Dict[str, float]
    rows: List[Dict[str, object]] = field(default_factory=list)
    ensemble: Dict[float, float] = field(default_factory=dict)
    ers: Optional[Dict[str, float]] = None
    warnings: List[str] = field(default_factory=list)
    settings: Dict[str, object] = field(default_factory=dict)

    def to_dict(self) -> Dict[str, object]:
        return {"clean": self.clean, "rows": self.rows, "ensemble": {str(k): v for k, v in self.ensemble.items()},
                "ers": self.ers, "warnings": self.warnings, "settings": self.settings}

    def to_markdown(self) -> str:
        lines = [f"Clean: R@1 {100 * self.clean['R@1']:.2f}, mAP@R {100 * self.clean['mAP@R']:.2f} "
                 f"({self.settings.get('queries')} queries against {self.settings.get('gallery')} clean items)", "",
                 "| attack | engine | eps | steps | R@1 | mAP@R | other |", "| --- | --- | --- | --- | --- | --- | --- |"]
        for row in self.rows:
            other = ", ".join(f"{k} {v:.3f}" for k, v in row.items() if k in EXTRA_COLUMNS)
            r1 = f"{100 * row['R@1']:.2f}" if "R@1" in row else "-"
            map_r = f"{100 * row['mAP@R']:.2f}" if "mAP@R" in row else "-"
            lines.append(f"| {row['attack']} | {row['engine']} | {row['eps']:.4g} | {row['steps']} | {r1} | {map_r} | {other} |")
        if self.ensemble:
            lines += ["", "Per-query worst case over all attacks run (ensemble robust R@1):", ""]
            lines += [f"- eps {eps:.4g}: {100 * value:.2f}" for eps, value in sorted(self.ensemble.items())]
        if self.ers:
            lines += ["", f"ERS: **{self.ers['ERS']:.2f}** (" + ", ".join(
                f"{k} {v:.1f}" for k, v in self.ers.items() if k != "ERS") + ")"]
        for warning in self.warnings:
            lines += ["", f"> WARNING: {warning}"]
        return "\n".join(lines) + "\n"

    def to_csv(self, path: Path) -> None:
        keys = ["attack", "engine", "eps", "steps", "R@1", "mAP@R", *ERS_INPUTS]
        with open(path, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=keys, extrasaction="ignore")
            writer.writeheader()
            writer.writerow({"attack": "clean", "engine": "-", "eps": 0, "steps": 0, **self.clean})
            for row in self.rows:
                writer.writerow(row)

    def plot(self, path: Path) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        figure, axis = plt.subplots(figsize=(5, 3.5))
        by_attack: Dict[str, list] = {}
        for row in self.rows:
            if "R@1" in row and row.get("curve", True):
                by_attack.setdefault(f"{row['attack']} ({row['engine']})", []).append((row["eps"], row["R@1"]))
        for name, points in by_attack.items():
            points = [(0.0, self.clean["R@1"])] + sorted(points)
            axis.plot([p[0] for p in points], [100 * p[1] for p in points], marker="o", label=name)
        if self.ensemble:
            points = [(0.0, self.clean["R@1"])] + sorted(self.ensemble.items())
            axis.plot([p[0] for p in points], [100 * p[1] for p in points], "k--", label="worst case")
        axis.set_xlabel("eps (pixel units)")
        axis.set_ylabel("robust R@1 (%)")
        axis.set_ylim(0, 100)
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
        figure.tight_layout()
        figure.savefig(path, dpi=120)
        plt.close(figure)

    def write(self, folder: Path) -> Path:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "robustness.md").write_text(self.to_markdown())
        (folder / "robustness.json").write_text(json.dumps(self.to_dict(), indent=2, default=float) + "\n")
        self.to_csv(folder / "robustness.csv")
        self.plot(folder / "robust_r1_vs_eps.png")
        return folder


def _row(attack: str, engine, summary: Dict[str, object], **extra) -> Dict[str, object]:
    row = {"attack": attack, "engine": engine.name, "eps": engine.eps, "steps": engine.steps, **extra}
    row.update({k: v for k, v in summary.items() if k != "correct@1"})
    return row


def evaluate_robustness(model: torch.nn.Module, dataset, attacks: Sequence[str] = ("nn",),
                        eps_list: Sequence[float] = DEFAULT_EPS, engine: str = "pgd", steps: int = 10,
                        step_size: Optional[float] = None, norm: str = "linf", max_queries: Optional[int] = None,
                        with_ers: bool = False, ers_overrides: Optional[Dict[str, object]] = None,
                        attack_options: Optional[Dict[str, int]] = None, sanity_checks: bool = True,
                        batch_size: int = 256, device="cpu", seed: int = 0, progress: bool = True) -> RobustnessReport:
    """Attack ``model`` on ``dataset`` with every attack at every eps and report the damage.

    Queries: a seeded random subset of ``max_queries`` items (None: all); gallery: the whole CLEAN
    dataset, each query's own clean copy excluded. Queries are attacked ``batch_size`` at a time;
    only their embeddings are kept. ``attack_options``: ``qa_candidates`` (m), ``ca_queries`` (w),
    ``gtt_k`` (see :mod:`robustdml.attacks.retrieval`). Every option is checked before any work.
    """
    for name in attacks:
        RETRIEVAL_ATTACKS.get(name)
    if not attacks and not with_ers:
        raise ValueError("attacks is empty: name at least one attack (e.g. attacks=['nn']) or set with_ers=True")
    if any(not eps >= 0 for eps in eps_list):
        raise ValueError(f"eps_list values must be >= 0 (pixel units, e.g. 8/255), got {list(eps_list)}")
    for eps in eps_list or [0.0]:
        build_engine(engine, eps=eps, steps=steps, step_size=step_size, norm=norm)
    if max_queries is not None and max_queries < 1:
        raise ValueError(f"max_queries must be >= 1 or None (all items), got {max_queries}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    attack_options = dict(attack_options or {})
    check_attack_options(attack_options)
    device = torch.device(device)
    model = model.to(device)
    gallery, labels = compute_embeddings(model, dataset, batch_size=batch_size, device=device, progress=progress)
    labels = labels.numpy()
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(labels), generator=generator).numpy()
    queries = np.sort(order[:max_queries] if max_queries else order)
    clean = retrieval_metrics(gallery[queries], labels[queries], gallery, labels, exclude_index=queries)
    report = RobustnessReport(clean={k: clean[k] for k in ("R@1", "mAP@R")},
                              settings={"queries": len(queries), "gallery": len(labels), "engine": engine,
                                        "steps": steps, "norm": norm, "seed": seed, "attacks": list(attacks),
                                        "eps": list(eps_list), "attack_options": attack_options})

    def context(engine_instance):
        return AttackContext(model=model, dataset=dataset, gallery=gallery, labels=labels, engine=engine_instance,
                             device=device, generator=torch.Generator().manual_seed(seed), **attack_options)

    jobs = [(name, eps) for eps in eps_list for name in attacks]
    profile = None
    if with_ers:
        image_size = dataset.image_shape[-1] if len(dataset.image_shape) == 3 else 28
        profile = ers_profile(image_size, **(ers_overrides or {}))
        jobs += [(name, "ers") for name in ERS_ATTACKS]
    bar = tqdm(total=len(jobs) * len(queries), desc="attacks", unit="query", disable=not progress, leave=False)
    correct_by_eps: Dict[float, np.ndarray] = {}
    ers_scores: Dict[str, float] = {}
    for name, eps in jobs:
        if eps == "ers":
            instance = build_engine(profile.engine, eps=profile.eps, steps=profile.steps,
                                    step_size=profile.step_size, norm=profile.norm)
        else:
            instance = build_engine(engine, eps=eps, steps=steps, step_size=step_size, norm=norm)
        bar.set_postfix(attack=name, eps=f"{instance.eps:.3g}")
        summary = run_attack(name, context(instance), queries, batch_size=batch_size, progress=bar.update)
        report.rows.append(_row(name, instance, summary, curve=eps != "ers", profile="ers" if eps == "ers" else ""))
        if eps == "ers":
            ers_scores.update({k: v for k, v in summary.items() if k in ERS_INPUTS})
        elif "correct@1" in summary:
            previous = correct_by_eps.get(eps, np.ones(len(queries), dtype=bool))
            correct_by_eps[eps] = previous & summary["correct@1"]
    bar.close()
    report.ensemble = {eps: float(mask.mean()) for eps, mask in correct_by_eps.items()}
    if with_ers:
        report.ers = {"ERS": empirical_robustness_score(ers_scores), **ers_scores}
    if sanity_checks:
        run_sanity_checks(report, context, queries, engine, steps, step_size, norm, batch_size, eps_list)
    return report


def run_sanity_checks(report: RobustnessReport, context, queries, engine: str, steps: int, step_size, norm: str,
                      batch_size: int, eps_list: Sequence[float]) -> None:
    """Append a warning (and emit it) for every check that fails."""
    problems: List[str] = []
    for attack in {row["attack"] for row in report.rows if row.get("curve") and "R@1" in row}:
        curve = sorted((row["eps"], row["R@1"]) for row in report.rows if row["attack"] == attack and row.get("curve"))
        for (eps_a, r_a), (eps_b, r_b) in zip(curve, curve[1:]):
            if r_b > r_a + STEP_TOLERANCE:
                problems.append(f"{attack}: robust R@1 rises from {100 * r_a:.1f} to {100 * r_b:.1f} as eps grows "
                                f"from {eps_a:.3g} to {eps_b:.3g}")
    probe = queries[: min(len(queries), 200)]
    # No random start: at eps=1 a random image alone already ruins retrieval, which would hide masked gradients.
    unbounded_engine = build_engine("pgd", eps=UNBOUNDED_EPS, steps=max(steps, 20), step_size=0.1, norm="linf",
                                    random_start=False)
    unbounded = run_attack("nn", context(unbounded_engine), probe, batch_size=batch_size)
    report.settings["unbounded_R@1"] = unbounded["R@1"]
    if unbounded["R@1"] > NEAR_ZERO_R1:
        problems.append(f"an unbounded nearest-neighbour attack (eps={UNBOUNDED_EPS}) leaves R@1 at "
                        f"{100 * unbounded['R@1']:.1f}% (expected near 0): gradients may be masked")
    if eps_list:
        eps = max(eps_list)
        base = run_attack("nn", context(build_engine(engine, eps=eps, steps=steps, step_size=step_size, norm=norm)),
                          probe, batch_size=batch_size)
        more = run_attack("nn", context(build_engine(engine, eps=eps, steps=2 * steps,
                                                     step_size=None if step_size is None else step_size / 2,
                                                     norm=norm)), probe, batch_size=batch_size)
        report.settings["steps_check"] = {"steps": steps, "R@1": base["R@1"], "2x_steps_R@1": more["R@1"]}
        if more["R@1"] > base["R@1"] + STEP_TOLERANCE:
            problems.append(f"doubling the attack steps raised robust R@1 from {100 * base['R@1']:.1f} to "
                            f"{100 * more['R@1']:.1f} at eps {eps:.3g}: the attack has not converged")
    for problem in problems:
        warnings.warn(problem, UntrustworthyEvaluation, stacklevel=3)
    report.warnings.extend(problems)
