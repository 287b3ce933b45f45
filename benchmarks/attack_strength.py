"""How strong is the default attack? Robust R@1 of each ensemble member and of the ensemble as the
steps and restarts grow, on a natural and on a defended model, plus attacks the ensemble does not
contain (other objectives, plain PGD), to see whether anything finds more.

    python benchmarks/attack_strength.py                       # trains the two CPU-sized models if needed
    python benchmarks/attack_strength.py --run natural=runs/x --run hm=runs/y --queries 300

The models default to the CPU-sized ``defenses`` suite's natural and HM + LGA + ICS runs (trained
once into ``runs/attack-strength/``). For every eps and every (steps, restarts) point it prints
robust R@1 (%) of each member alone and of the ensemble, and the ensemble's forward+backward passes
per query. The default is justified when doubling both steps and restarts moves the ensemble's
robust R@1 by less than one point; the script prints that verdict. The independent attacks are the
per-query worst case of the default ensemble and: a soft margin (log-sum-exp over the candidates),
a list-wise cross-entropy over positives vs negatives, and fixed-step PGD on the margin, each with
2x the default steps and 2 restarts; it prints how many points they find below the default.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np
import torch

from robustdml.attacks import objectives as O
from robustdml.attacks.context import AttackContext
from robustdml.attacks.ensemble import EnsembleRunner
from robustdml.attacks.members import AUTO, MARGIN_CANDIDATES, Member, Run
from robustdml.attacks.settings import EngineSettings, EnsembleSettings
from robustdml.robustness.spec import AUTO_RESTARTS, AUTO_STEPS
from robustdml.robustness.state import attacked_queries
from robustdml.engine.config import TrainConfig
from robustdml.engine.evaluate import load_run
from robustdml.evaluation import compute_embeddings
from robustdml.reporting.runner import train_or_resume
from robustdml.reporting.suites import build_suite

TEMPERATURE = 0.05


def _soft_nearest(embeddings, targets):
    distances = O.squared_distance(embeddings[:, None, :], targets)
    return -TEMPERATURE * torch.logsumexp(-distances / TEMPERATURE, dim=1)


def _soft_margin(embeddings, positives, negatives):
    return _soft_nearest(embeddings, positives) - _soft_nearest(embeddings, negatives)


def _listwise(embeddings, positives, negatives):
    """-log of the softmax mass of the positives among positives and negatives (to maximise)."""
    scores = -O.squared_distance(embeddings[:, None, :], torch.cat([positives, negatives], dim=1)) / TEMPERATURE
    return -(torch.logsumexp(scores[:, :positives.shape[1]], dim=1) - torch.logsumexp(scores, dim=1))


class IndependentMember(Member):
    """A member with an objective the ensemble does not have (not registered: only this benchmark runs it)."""

    candidates = MARGIN_CANDIDATES

    def __init__(self, kind: str):
        super().__init__()
        self.kind = kind
        self.name = kind

    def objective(self, run: Run, gallery, candidates):
        function = {"soft-margin": _soft_margin, "listwise": _listwise, "margin": O._margin}[self.kind]
        return O.Objective(function, gallery[candidates.positives], gallery[candidates.negatives])


AUTO_MEMBERS = tuple(cls() for cls in AUTO)


def _models(arguments) -> Dict[str, Path]:
    if arguments.run:
        return {item.split("=", 1)[0]: Path(item.split("=", 1)[1]) for item in arguments.run}
    suite = build_suite("defenses")
    chosen = {"natural": "natural", "hm-lga-ics": "hm-lga-ics"}
    paths = {}
    for label, name in chosen.items():
        spec = next(run for run in suite.runs if run.name == name)
        path = Path(arguments.output) / name
        config = TrainConfig.from_dict({**spec.config, "device": "cpu", "progress": False}).resolved()
        print(f"training or loading {name} into {path}", flush=True)
        train_or_resume(config, path)
        paths[label] = path
    return paths


def _runner(path: Path, seed: int) -> Tuple[EnsembleRunner, np.ndarray, int]:
    loaded = load_run(path, device="cpu")
    gallery, labels = compute_embeddings(loaded.model, loaded.splits.test, progress=False)
    ctx = AttackContext(model=loaded.model, dataset=loaded.splits.test, gallery=gallery, labels=labels.numpy(),
                        engine=EngineSettings().build(0.0), device=torch.device("cpu"), generator=torch.Generator().manual_seed(seed))
    return EnsembleRunner(ctx, seed=seed), labels.numpy(), len(labels)


def _points(text: str) -> List[Tuple[int, int]]:
    return [tuple(int(x) for x in item.split("x")) for item in text.split(",")]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", action="append", help="NAME=RUN_DIR (repeatable); default: train two models")
    parser.add_argument("--output", default="runs/attack-strength", help="where the default models are trained")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--eps", default="0.01,0.05,0.1")
    default_points = f"{AUTO_STEPS // 4}x1,{AUTO_STEPS // 2}x1,{AUTO_STEPS}x{AUTO_RESTARTS}," \
                     f"{2 * AUTO_STEPS}x{2 * AUTO_RESTARTS},{4 * AUTO_STEPS}x{2 * AUTO_RESTARTS}"
    parser.add_argument("--points", default=default_points, help="steps x restarts, comma-separated")
    parser.add_argument("--no-members", action="store_true", help="only the ensemble at each point")
    parser.add_argument("--no-independent", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    arguments = parser.parse_args(argv)
    torch.manual_seed(arguments.seed)
    eps_list = [float(e) for e in arguments.eps.split(",")]
    points = _points(arguments.points)
    default = (AUTO_STEPS, AUTO_RESTARTS)
    verdicts = []
    for label, path in _models(arguments).items():
        runner, labels, size = _runner(path, arguments.seed)
        # the queries evaluate_robustness attacks with this seed and max_queries: a report's own queries
        queries = attacked_queries(size, arguments.queries, arguments.seed)
        clean = runner.clean_correct(queries)
        print(f"\n## {label} ({path}): clean R@1 {100 * clean.mean():.1f} on {len(queries)} queries\n", flush=True)
        print("| eps | steps x restarts | " + " | ".join(m.name for m in AUTO_MEMBERS)
              + " | ensemble | passes/query | seconds |")
        print("| --- | --- | " + " | ".join("---" for _ in AUTO_MEMBERS) + " | --- | --- | --- |")
        for eps in eps_list:
            curve = {}
            for steps, restarts in points:
                spec = EnsembleSettings(EngineSettings("apgd", steps), restarts=restarts)
                started = time.perf_counter()
                outcome = runner.run(queries, spec, eps, AUTO_MEMBERS)
                seconds = time.perf_counter() - started
                curve[(steps, restarts)] = outcome
                alone = ["-" if arguments.no_members else
                         f"{100 * runner.run(queries, spec, eps, (member,)).correct.mean():.1f}"
                         for member in AUTO_MEMBERS]
                print(f"| {eps:g} | {steps} x {restarts} | " + " | ".join(alone) +
                      f" | {100 * outcome.correct.mean():.1f} | {outcome.passes.mean():.0f} | {seconds:.0f} |",
                      flush=True)
            doubled = (2 * default[0], 2 * default[1])
            if default in curve and doubled in curve:
                gap = 100 * (curve[default].correct.mean() - curve[doubled].correct.mean())
                worst = 100 * (curve[default].correct.mean() - (curve[default].correct & curve[doubled].correct).mean())
                verdicts.append((label, eps, gap, worst))
            if not arguments.no_independent and default in curve:
                found = curve[default].correct.copy()
                for kind in ("soft-margin", "listwise", "margin-pgd"):
                    engine = "pgd" if kind == "margin-pgd" else "apgd"
                    spec = EnsembleSettings(EngineSettings(engine, 2 * default[0],
                                                           eps / 4 if engine == "pgd" else None), restarts=2)
                    member = IndependentMember(kind.replace("-pgd", ""))
                    outcome = runner.run(queries, spec, eps, (member,), alive=found.copy())
                    extra = int(found.sum() - outcome.correct.sum())
                    found &= outcome.correct
                    print(f"|   independent {kind} (on the default's survivors) | {eps:g} | "
                          f"{extra} more queries broken |", flush=True)
                print(f"| {eps:g} | default + independent attacks | worst case {100 * found.mean():.1f} "
                      f"(default {100 * curve[default].correct.mean():.1f}) |", flush=True)
    if verdicts:
        print(f"\nDoubling both steps and restarts from the default {default[0]} x {default[1]}:")
        for label, eps, gap, worst in verdicts:
            mark = "OK" if worst < 1.0 else "NOT CONVERGED"
            print(f"- {label}, eps {eps:g}: robust R@1 moves by {gap:+.1f} points (per-query worst case of both: "
                  f"{worst:.1f} points lower) {mark}")


if __name__ == "__main__":
    main()
