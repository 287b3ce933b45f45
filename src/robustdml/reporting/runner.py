"""Run a benchmark suite into one report directory, resumably.

Layout: ``OUTPUT/suite.yaml`` (what was asked), ``OUTPUT/runs/<run>/`` (ordinary run directories,
each with ``robustness/<key>/``, see :mod:`robustdml.robustness.store`),
``OUTPUT/report.md|html`` and ``OUTPUT/figures/``. A killed benchmark resumes: finished runs are
skipped, an interrupted run continues from its last checkpoint, and robustness results already
computed with the same attack spec, checkpoint, batch norm and seed are reused.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Dict, List, Optional

import yaml

from robustdml.engine.config import TrainConfig
from robustdml.engine.run_dir import RunDirectory
from robustdml.engine.trainer import train
from robustdml.reporting.report import build_report
from robustdml.robustness.store import robustness_for
from robustdml.reporting.suites import Suite


def train_or_resume(config: TrainConfig, run_path: Path) -> Dict:
    """Train ``config`` into ``run_path``: skip when finished, resume when interrupted."""
    results = run_path / "results.json"
    if results.is_file():
        return json.loads(results.read_text())
    if (run_path / RunDirectory.CONFIG).is_file():  # interrupted (before its first checkpoint: from step 0)
        return train(None, resume_dir=str(run_path))[1]
    config.output = str(run_path)
    return train(config)[1]


def run_suite(suite: Suite, output: Path, device: str = "auto", progress: bool = True,
              overrides: Optional[Dict] = None, command: Optional[str] = None) -> Path:
    """Train and attack every run of ``suite`` under ``output`` and write the report.

    ``overrides`` replace config fields of every run (they are named in the report's notes);
    ``command`` is the exact command line the report gives for reproducing it.
    """
    output = Path(output)
    (output / "runs").mkdir(parents=True, exist_ok=True)
    (output / "suite.yaml").write_text(yaml.safe_dump({
        "suite": suite.name, "scale": suite.scale, "protocol": suite.protocol.to_dict(),
        "runs": [{"name": spec.name, "label": spec.label, "config": spec.config} for spec in suite.runs]},
        sort_keys=False))
    run_paths: List[Path] = []
    for index, spec in enumerate(suite.runs, start=1):
        run_path = output / "runs" / spec.name
        values = {**spec.config, **(overrides or {}), "device": device, "progress": progress}
        config = TrainConfig.from_dict(values, source=f"suite {suite.name}, run {spec.name}").resolved()
        started = time.perf_counter()
        print(f"[{index}/{len(suite.runs)}] {spec.name}: training ({spec.label})", flush=True)
        train_or_resume(config, run_path)
        for seed in suite.protocol.seeds:
            print(f"[{index}/{len(suite.runs)}] {spec.name}: attacking (seed {seed})", flush=True)
            robustness_for(run_path, suite.protocol, seed, device=device, progress=progress)
        print(f"[{index}/{len(suite.runs)}] {spec.name}: done in {time.perf_counter() - started:.0f} s", flush=True)
        run_paths.append(run_path)
    labels = {str(output / "runs" / spec.name): spec.label for spec in suite.runs}
    notes = list(suite.notes)
    if overrides:
        notes.append("Overridden in every run: " + ", ".join(f"{key} = {value}" for key, value in overrides.items()) + ".")
    command = command or f"robustdml benchmark {suite.name}" + (" --full" if suite.scale == "full" else "")
    return build_report(run_paths, output, protocol=suite.protocol, title=f"robustdml benchmark: {suite.name}",
                        description=suite.description, notes=notes, labels=labels, command=command, device=device,
                        sections=suite.sections, featured=suite.featured, sections_first=suite.sections_first)
