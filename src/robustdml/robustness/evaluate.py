"""Robustness evaluation of an embedding model under an :class:`AttackSpec`.

For every eps: each attack of the spec (``auto`` = the ensemble of :mod:`robustdml.attacks.ensemble`)
over a seeded random query set, ranked against the clean gallery with each query's own copy
excluded; the per-query worst case over all of them (the headline robust R@1) with its 95%
Clopper-Pearson interval and its cost in forward+backward passes per query; then the checks that
say whether the number can be trusted:

- convergence: a probe subset is re-attacked with one more restart of every member, twice as
  long; if that lowers robust R@1 on the probe by more than one point, every surviving query gets
  that stronger attack (an escalation, at most ``spec.escalations``) and the probe checks again;
  if the last check still fails, the report warns and names
  the members that had not converged;
- eps monotonicity: robust R@1 must not rise with eps;
- an unbounded attack (eps = 1, clean start) must drive R@1 to near 0, or gradients are masked.

Optionally the ERS profile (another spec, published settings) on the same queries. The result is a
:class:`RobustnessReport` that writes Markdown, CSV, JSON and a robust-R@1-vs-eps plot.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
from robustdml.progress import progress_bar

from robustdml.attacks.engines import build_engine
from robustdml.attacks.ensemble import EnsembleRunner, member_runs
from robustdml.attacks.retrieval import AttackContext, run_attack
from robustdml.robustness.spec import AUTO, AUTO_MEMBERS, ENSEMBLE_ATTACKS, AttackSpec, is_published_ers
from robustdml.evaluation import compute_embeddings, retrieval_metrics
from robustdml.evaluation.ers import (ERS_INPUTS, ERS_LEVEL, empirical_robustness_score, ers_interval, ers_per_query,
                                      ers_terms)
from robustdml.evaluation.intervals import binomial_interval

DEFAULT_EPS = AttackSpec().eps
# Scores shown next to R@1 / mAP@R (the R@1-valued ERS terms would repeat the R@1 column).
EXTRA_COLUMNS = ("CA+", "CA-", "QA+", "QA-", "TMA", "ES:D", "GTT")
UNBOUNDED_EPS = 1.0
NEAR_ZERO_R1 = 0.05
CONVERGENCE_TOLERANCE = 0.01   # more than one point of robust R@1 lost to a stronger attack: not converged
MONOTONE_TOLERANCE = 0.02
UNBOUNDED_PROBE = 200


class UntrustworthyEvaluation(UserWarning):
    """A check failed: the robustness numbers may overstate the model's robustness."""


def _rate(mask: np.ndarray) -> Dict[str, object]:
    """A robust R@1 as a fraction with its 95% Clopper-Pearson interval over the queries."""
    hits, count = int(mask.sum()), len(mask)
    return {"R@1": hits / count, "R@1_ci": list(binomial_interval(hits, count)), "queries": count}


def _percent_ci(entry: Dict[str, object]) -> str:
    low, high = entry["R@1_ci"]
    return f"{100 * entry['R@1']:.1f} [{100 * low:.1f}, {100 * high:.1f}]"


@dataclass
class RobustnessReport:
    """What an evaluation measured; ``to_dict`` is robustness.json.

    ``rows``: one per attack and eps (R@1 with its interval, mAP@R, passes per query, and for
    ensembles robust R@1 after each member and which run broke how many queries);
    ``worst_case``: per eps, the per-query worst case over every attack run (the headline);
    ``convergence``: per eps, the probe re-attacked with the stronger spec; ``ers``: the ERS and
    its terms with the profile that produced them; ``settings``: the spec, its key, seed, sizes.
    """

    clean: Dict[str, object]
    rows: List[Dict[str, object]] = field(default_factory=list)
    worst_case: Dict[float, Dict[str, object]] = field(default_factory=dict)
    convergence: Dict[float, Dict[str, object]] = field(default_factory=dict)
    ers: Optional[Dict[str, object]] = None
    warnings: List[str] = field(default_factory=list)
    settings: Dict[str, object] = field(default_factory=dict)

    def to_dict(self) -> Dict[str, object]:
        return {"clean": self.clean, "rows": self.rows,
                "worst_case": {str(k): v for k, v in self.worst_case.items()},
                "convergence": {str(k): v for k, v in self.convergence.items()},
                "ers": self.ers, "warnings": self.warnings, "settings": self.settings}

    def headline(self, eps: float) -> Dict[str, object]:
        return self.worst_case[eps]

    def to_markdown(self) -> str:
        spec = self.settings.get("spec_text", "")
        lines = [f"Clean: R@1 {_percent_ci(self.clean)}, mAP@R {100 * self.clean['mAP@R']:.2f} "
                 f"({self.settings.get('queries')} queries against {self.settings.get('gallery')} clean items; "
                 "R@1 with its 95% interval)", "", f"Attack: {spec}", ""]
        if self.worst_case:
            lines += ["Robust R@1 (per-query worst case over all attacks; 95% interval; cost in forward+backward "
                      "passes per query):", "", "| eps | robust R@1 | mAP@R | passes/query | converged |",
                      "| --- | --- | --- | --- | --- |"]
            for eps, entry in sorted(self.worst_case.items()):
                check = self.convergence.get(eps)
                escalated = len(check.get("escalations", ())) if check else 0
                converged = "-" if check is None else ("yes" if check["converged"] else
                                                       f"NO (-{100 * check['drop']:.1f} points)")
                if escalated:
                    converged += f" after {escalations_text(escalated)}"
                lines.append(f"| {eps:.4g} | {_percent_ci(entry)} | {100 * entry['mAP@R']:.2f} | "
                             f"{entry['passes_per_query']:.1f} | {converged} |")
            lines.append("")
        lines += ["| attack | eps | R@1 [95% CI] | mAP@R | passes/query | other |", "| --- | --- | --- | --- | --- | --- |"]
        for row in self.rows:
            other = ", ".join(f"{k} {v:.3f}" for k, v in row.items() if k in EXTRA_COLUMNS)
            if row.get("after"):
                other = "after " + ", ".join(f"{k} {100 * v:.1f}" for k, v in row["after"].items())
            r1 = _percent_ci(row) if "R@1" in row else "-"
            map_r = f"{100 * row['mAP@R']:.2f}" if "mAP@R" in row else "-"
            lines.append(f"| {row['attack']} | {row['eps']:.4g} | {r1} | {map_r} | {row['passes_per_query']:.1f} "
                         f"| {other} |")
        if self.ers:
            profile = "published profile" if self.ers.get("published") else "NOT the published profile"
            low, high = self.ers["interval"]
            lines += ["", f"ERS: **{self.ers['ERS']:.2f}** [{low:.2f}, {high:.2f}] (95% interval over "
                      f"{len(self.ers['per_query'])} queries; {profile}: {self.ers.get('spec_text', '')}); terms: "
                      + ", ".join(f"{k} {v:.1f}" for k, v in self.ers["terms"].items())]
        for warning in self.warnings:
            lines += ["", f"> WARNING: {warning}"]
        return "\n".join(lines) + "\n"

    def to_csv(self, path: Path) -> None:
        keys = ["attack", "eps", "R@1", "R@1_low", "R@1_high", "mAP@R", "passes_per_query", *EXTRA_COLUMNS]
        with open(path, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=keys, extrasaction="ignore")
            writer.writeheader()
            writer.writerow({"attack": "clean", "eps": 0, "R@1": self.clean["R@1"], "mAP@R": self.clean["mAP@R"],
                             "R@1_low": self.clean["R@1_ci"][0], "R@1_high": self.clean["R@1_ci"][1],
                             "passes_per_query": 0})
            for eps, entry in sorted(self.worst_case.items()):
                writer.writerow({"attack": "worst case", "eps": eps, **entry, "R@1_low": entry["R@1_ci"][0],
                                 "R@1_high": entry["R@1_ci"][1]})
            for row in self.rows:
                ci = row.get("R@1_ci", [None, None])
                writer.writerow({**row, "R@1_low": ci[0], "R@1_high": ci[1]})

    def plot(self, path: Path) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        figure, axis = plt.subplots(figsize=(5, 3.5))
        by_attack: Dict[str, list] = {}
        for row in self.rows:
            if "R@1" in row:
                by_attack.setdefault(row["attack"], []).append((row["eps"], row["R@1"]))
        markers = iter("os^vDP*X")
        for name, points in by_attack.items():
            points = [(0.0, self.clean["R@1"])] + sorted(points)
            axis.plot([p[0] for p in points], [100 * p[1] for p in points], marker=next(markers, "o"), label=name)
        if self.worst_case:
            points = [(0.0, self.clean["R@1"])] + sorted((e, v["R@1"]) for e, v in self.worst_case.items())
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


def _versions() -> Dict[str, str]:
    import robustdml

    return {"robustdml": getattr(robustdml, "__version__", "?"), "torch": torch.__version__}


def escalations_text(count: int) -> str:
    """``1 escalation`` / ``2 escalations``: how many times an eps was re-attacked after a failed check."""
    return f"{count} escalation{'s' if count > 1 else ''}"


def attacked_queries(size: int, max_queries: Optional[int], seed: int) -> np.ndarray:
    """The sorted indices of the test items an evaluation attacks: ``max_queries`` of ``size`` drawn with
    ``seed`` (None: all). Benchmarks use it to attack exactly the queries of a report."""
    order = torch.randperm(size, generator=torch.Generator().manual_seed(seed)).numpy()
    return np.sort(order[:max_queries] if max_queries else order)


class _Evaluation:
    """The state of one ``evaluate_robustness`` call: model, clean gallery, queries, runner."""

    def __init__(self, model, dataset, spec: AttackSpec, seed: int, device, batch_size: int, progress: bool):
        self.model, self.dataset, self.spec, self.seed = model, dataset, spec, seed
        self.device, self.batch_size, self.progress = device, batch_size, progress
        self.gallery, labels = compute_embeddings(model, dataset, batch_size=batch_size, device=device,
                                                  progress=progress)
        self.labels = labels.numpy()
        self.queries = attacked_queries(len(self.labels), spec.max_queries, seed)
        self.bar = progress_bar(desc="attacking", unit="query", disable=not progress, leave=False)
        self.runner = EnsembleRunner(self.context(spec, 0.0), seed=seed, batch_size=batch_size,
                                     progress=self.bar.update)

    def context(self, spec: AttackSpec, eps: float) -> AttackContext:
        engine = build_engine(spec.engine, eps=eps, steps=spec.steps, step_size=spec.step_size, norm=spec.norm,
                              random_start=spec.random_start)
        return AttackContext(model=self.model, dataset=self.dataset, gallery=self.gallery, labels=self.labels,
                             engine=engine, device=self.device, generator=torch.Generator().manual_seed(self.seed),
                             qa_candidates=spec.qa_candidates, ca_queries=spec.ca_queries, gtt_k=spec.gtt_k,
                             gtm_target=spec.gtm_target)

    def ensemble_row(self, name: str, spec: AttackSpec, eps: float):
        members = AUTO_MEMBERS if name == AUTO else (name,)
        self.bar.set_postfix(attack=name, eps=f"{eps:.3g}")
        started = time.perf_counter()
        outcome = self.runner.run(self.queries, spec, eps, members)
        row = {"attack": name, "eps": eps, **_rate(outcome.correct), "mAP@R": float(np.nanmean(outcome.ap)),
               "passes_per_query": float(outcome.passes.mean()), "seconds": time.perf_counter() - started,
               "broken_by": _counts(outcome.broken_by)}
        if len(members) > 1:
            row["after"] = outcome.after_member(members)
        return row, outcome.correct, outcome.ap

    def attack_row(self, name: str, spec: AttackSpec, eps: float, per_query: Optional[Dict[str, np.ndarray]] = None):
        """One attack at one eps on every query: its report row, per-query correctness and AP;
        ``per_query`` (a dict), when given, receives the attack's per-query ERS inputs."""
        self.bar.set_postfix(attack=name, eps=f"{eps:.3g}")
        started = time.perf_counter()
        ctx = self.context(spec, eps)
        summary = run_attack(name, ctx, self.queries, batch_size=self.batch_size, progress=self.bar.update)
        row = {"attack": name, "eps": eps, "passes_per_query": ctx.passes / len(self.queries),
               "seconds": time.perf_counter() - started}
        if per_query is not None:
            per_query.update(summary["per_query"])
        del summary["per_query"]
        correct = summary.pop("correct@1", None)
        ap = summary.pop("ap@r", None)
        if correct is not None:
            row.update(_rate(correct))
        row.update(summary)
        return row, correct, ap


def _counts(names: np.ndarray) -> Dict[str, int]:
    values, counts = np.unique(names.astype(str), return_counts=True)
    return {str(v): int(c) for v, c in zip(values, counts) if v}


def evaluate_robustness(model: torch.nn.Module, dataset, spec: Optional[AttackSpec] = None, *, seed: int = 0,
                        device="cpu", batch_size: int = 256, progress: bool = True) -> RobustnessReport:
    """Attack ``model`` on ``dataset`` as ``spec`` says (default: the ``auto`` ensemble at eps
    0.01, 0.05, 0.1 on every item) and report the damage, its cost, its confidence and its checks.

    Queries: a random subset of ``spec.max_queries`` items drawn with ``seed`` (None: all);
    gallery: the whole CLEAN dataset, each query's own clean copy excluded. Every option is checked
    (by :class:`AttackSpec`) before any work.
    """
    spec = AttackSpec() if spec is None else spec
    if not isinstance(spec, AttackSpec):
        raise TypeError(f"spec must be an AttackSpec (robustdml.robustness.spec), got {type(spec).__name__}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    device = torch.device(device)
    model = model.to(device)
    started = time.perf_counter()
    state = _Evaluation(model, dataset, spec, seed, device, batch_size, progress)
    queries, gallery, labels = state.queries, state.gallery, state.labels
    clean = retrieval_metrics(gallery[queries], labels[queries], gallery, labels, exclude_index=queries,
                              per_query=True)
    report = RobustnessReport(clean={**_rate(clean["correct@1"]), "mAP@R": clean["mAP@R"]},
                              settings={"spec": spec.to_dict(), "spec_key": spec.key(), "spec_text": spec.describe(),
                                        "seed": seed, "queries": len(queries), "gallery": len(labels),
                                        "versions": _versions()})
    for eps in spec.eps if spec.attacks else ():  # attacks=() with an ERS profile: ERS only
        correct = clean["correct@1"].copy()
        worst_ap = clean["ap@r"].copy()
        passes = 0.0

        def absorb(row, row_correct, row_ap) -> None:
            """Add an attack's row to the report and its damage to the per-query worst case."""
            nonlocal correct, worst_ap, passes
            report.rows.append(row)
            passes += row["passes_per_query"]
            if row_correct is not None:
                correct &= row_correct
                worst_ap = np.fmin(worst_ap, row_ap)

        for name in spec.attacks:
            if name == AUTO or name in ENSEMBLE_ATTACKS:
                absorb(*state.ensemble_row(name, spec, eps))
            else:
                absorb(*state.attack_row(name, spec, eps))
        if spec.probe_queries and any(m in ENSEMBLE_ATTACKS for m in spec.members):
            check = convergence_check(state, spec, eps, correct)
            history = []
            while not check["converged"] and len(history) < spec.escalations:
                row, row_correct, row_ap = escalate(state, spec, eps, correct, level=len(history) + 1)
                history.append({"attack": row["stronger"], "R@1_before": float(correct.mean()),
                                "R@1": row["R@1"], "passes_per_query": row["passes_per_query"],
                                "failed_check": {k: check[k] for k in ("probe", "R@1", "stronger_R@1", "drop")}})
                absorb(row, row_correct, row_ap)
                check = convergence_check(state, spec, eps, correct, level=len(history))
            report.convergence[eps] = {**check, "escalations": history}
        report.worst_case[eps] = {**_rate(correct), "mAP@R": float(np.nanmean(worst_ap)), "passes_per_query": passes}
    if spec.ers is not None:
        report.ers = _ers(state, spec.ers, dataset)
    if spec.sanity_checks:
        report.settings["unbounded_R@1"] = unbounded_check(state)
    state.bar.close()
    report.settings["seconds"] = time.perf_counter() - started
    for problem in _problems(report, spec):
        warnings.warn(problem, UntrustworthyEvaluation, stacklevel=2)
        report.warnings.append(problem)
    return report


def _stronger_runs(state: _Evaluation, spec: AttackSpec, level: int):
    """The attack of escalation ``level`` (>= 1): every ensemble member once more, 2**level times the
    steps, from the fresh random start of restart number ``spec.restarts + level - 1``. The check at
    level k - 1 and the escalation to level k run exactly this attack (same seeded starts), so an
    escalation reproduces the check on the probe and extends it to every query."""
    members = tuple(m for m in spec.members if m in ENSEMBLE_ATTACKS)
    stronger = spec.stronger(level)
    runs = member_runs(stronger, members, state.runner.classes, first_restart=spec.restarts + level - 1)
    return stronger, members, runs


def convergence_check(state: _Evaluation, spec: AttackSpec, eps: float, correct: np.ndarray,
                      level: int = 0) -> Dict[str, object]:
    """Re-attack a probe subset with one more restart of every ensemble member, twice as long as the
    strongest attack so far (``level``: escalations already applied to every query).

    Only the probe queries that survived the evaluation need it (the others are already broken),
    so the check costs little where the evaluation already succeeded. The new runs start from fresh
    random points (restart numbers after the evaluation's), so the per-query worst case of both is
    the evaluation with one more restart of twice the steps; the drop is the share of the probe it
    breaks on top of the evaluation.
    """
    generator = np.random.default_rng(state.seed + 1)
    positions = np.sort(generator.permutation(len(state.queries))[:spec.probe_queries])
    stronger, members, runs = _stronger_runs(state, spec, level + 1)
    outcome = state.runner.run(state.queries[positions], stronger, eps, members, alive=correct[positions],
                               runs=runs)
    newly = _counts(np.array([name.split("@")[0].split("#")[0] for name in outcome.broken_by
                              if name not in ("", "clean")], dtype=object))
    before, after = correct[positions].mean(), outcome.correct.mean()
    extra = int(correct[positions].sum() - outcome.correct.sum())
    return {"probe": len(positions), "R@1": float(before), "stronger_R@1": float(after),
            "drop": float(before - after), "converged": extra <= CONVERGENCE_TOLERANCE * len(positions) + 1e-9,
            "newly_broken_by": newly, "stronger": stronger.describe(),
            "passes_per_query": float(outcome.passes.mean())}


def escalate(state: _Evaluation, spec: AttackSpec, eps: float, correct: np.ndarray, level: int):
    """After a failed convergence check: attack every query that still survives with the check's
    stronger attack (escalation ``level``), so the reported robust R@1 is the stronger figure, not a
    warning beside a weaker one. Returns the report row, its per-query correctness and AP."""
    stronger, members, runs = _stronger_runs(state, spec, level)
    state.bar.set_postfix(attack=f"escalation {level}", eps=f"{eps:.3g}")
    started = time.perf_counter()
    outcome = state.runner.run(state.queries, stronger, eps, members, alive=correct, runs=runs)
    row = {"attack": f"auto, escalation {level}", "eps": eps, **_rate(outcome.correct),
           "mAP@R": float(np.nanmean(outcome.ap)), "passes_per_query": float(outcome.passes.mean()),
           "seconds": time.perf_counter() - started, "broken_by": _counts(outcome.broken_by),
           "stronger": stronger.describe()}
    return row, outcome.correct, outcome.ap


def unbounded_check(state: _Evaluation) -> float:
    """Robust R@1 under an unbounded margin attack (eps = 1, APGD from the clean image) on a probe.

    No random start: at eps = 1 a random image alone already ruins retrieval, which would hide
    masked gradients. Expected near 0; anything else means the gradients do not lead anywhere.
    """
    spec = AttackSpec(attacks=("margin",), eps=(UNBOUNDED_EPS,), engine="apgd", steps=max(20, state.spec.steps // 2),
                      random_start=False, probe_queries=0, sanity_checks=False)
    probe = state.queries[:UNBOUNDED_PROBE]
    outcome = state.runner.run(probe, spec, UNBOUNDED_EPS, ("margin",))
    return float(outcome.correct.mean())


def _ers(state: _Evaluation, ers: AttackSpec, dataset) -> Dict[str, object]:
    """ERS (Zhou & Patel, CVPR 2022) under the profile ``ers`` on the evaluation's queries, with its
    95% interval over the queries (``interval``; ``per_query``: each query's own ERS, whose mean it is)."""
    scores: Dict[str, float] = {}
    per_query: Dict[str, np.ndarray] = {}
    rows = []
    for name in ers.attacks:
        for eps in ers.eps:
            row, _, _ = state.attack_row(name, ers, eps, per_query=per_query)
            rows.append(row)
            scores.update({k: v for k, v in row.items() if k in ERS_INPUTS})
    image_size = dataset.image_shape[-1] if len(getattr(dataset, "image_shape", ())) == 3 else 28
    each = ers_per_query(per_query)
    return {"ERS": empirical_robustness_score(scores), "interval": list(ers_interval(each)),
            "level": ERS_LEVEL, "per_query": [round(float(v), 4) for v in each],
            "terms": ers_terms(scores), "scores": scores, "rows": rows,
            "spec": ers.to_dict(), "spec_text": ers.describe(), "published": is_published_ers(ers, image_size)}


def _problems(report: RobustnessReport, spec: AttackSpec) -> List[str]:
    problems: List[str] = []
    for eps, check in sorted(report.convergence.items()):
        if not check["converged"]:
            culprits = ", ".join(f"{member} ({count} more)" for member, count in check["newly_broken_by"].items())
            escalated = len(check.get("escalations", ()))
            after = (f" even after {escalations_text(escalated)} (every surviving query "
                     f"re-attacked up to {check['escalations'][-1]['attack']})" if escalated else "")
            problems.append(
                f"eps {eps:.4g}: the attack has not converged{after}: one more restart with twice the steps "
                f"({check['stronger']}) lowered robust R@1 on {check['probe']} probe queries from "
                f"{100 * check['R@1']:.1f} to {100 * check['stronger_R@1']:.1f} (more than "
                f"{100 * CONVERGENCE_TOLERANCE:.0f} point); not converged: {culprits}. Raise --steps / --restarts.")
    curves: Dict[str, list] = {"worst case": [(eps, v["R@1"]) for eps, v in report.worst_case.items()]}
    for row in report.rows:
        if "R@1" in row:
            curves.setdefault(row["attack"], []).append((row["eps"], row["R@1"]))
    for name, curve in curves.items():
        curve = sorted(curve)
        for (eps_a, r_a), (eps_b, r_b) in zip(curve, curve[1:]):
            if r_b > r_a + MONOTONE_TOLERANCE:
                problems.append(f"{name}: robust R@1 rises from {100 * r_a:.1f} to {100 * r_b:.1f} as eps grows "
                                f"from {eps_a:.3g} to {eps_b:.3g}")
    unbounded = report.settings.get("unbounded_R@1")
    if unbounded is not None and unbounded > NEAR_ZERO_R1:
        problems.append(f"an unbounded attack (eps={UNBOUNDED_EPS}, margin, APGD from the clean image) leaves R@1 at "
                        f"{100 * unbounded:.1f}% (expected near 0): gradients may be masked")
    return problems
