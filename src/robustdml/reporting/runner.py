"""Run a benchmark suite into one report directory, resumably.

Layout: ``OUTPUT/suite.yaml`` (what was asked), ``OUTPUT/runs/<run>/`` (ordinary run directories,
each with ``robustness/<key>/``, see :mod:`robustdml.robustness.store`),
``OUTPUT/report.md|html`` and ``OUTPUT/figures/``. A killed benchmark resumes: finished runs are
skipped, an interrupted run continues from its last checkpoint, and robustness results already
computed with the same attack spec, checkpoint, batch norm and seed are reused. A run directory already there
is reused only when it was trained with the settings the suite asks for now (how it ran, e.g. the device,
may differ); otherwise the benchmark is refused before it writes anything, naming the fields, so a report
never claims settings a run did not use.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Dict, List, Optional

import yaml

from robustdml.engine.config import ConfigError, TrainConfig, config_differences
from robustdml.engine.run_dir import RunDirectory
from robustdml.engine.run_marker import refuse_output_in_run, run_kind
from robustdml.engine.trainer import train
from robustdml.files import atomic_write_text
from robustdml.reporting.report import build_report
from robustdml.robustness.store import robustness_for
from robustdml.reporting.suites import Suite


def check_reusable(config: TrainConfig, run_path: Path) -> None:
    """Refuse a run directory in ``run_path`` that holds a run of other settings than ``config`` (the suite's
    run as asked now), naming the fields: reusing it would report settings it was not trained with. How a run
    is executed (device, progress, workers, checkpoint interval) may differ."""
    if not run_kind(run_path):
        return  # nothing there yet (or not a run directory: training into it says why)
    stored = TrainConfig.load(RunDirectory.open(run_path).config_path, run_directory=True)
    differences = config_differences(stored, config)
    if differences:
        raise ConfigError(f"{run_path} holds a run trained with other settings than this benchmark asks for: "
                          f"{', '.join(differences)} (run -> asked); its results would be reported under settings it "
                          "did not use. Write the benchmark to another --output, or delete that run directory to "
                          "train it again")


def train_or_resume(config: TrainConfig, run_path: Path) -> Dict:
    """Train ``config`` into ``run_path``: skip when finished, resume when interrupted; a run there with other
    settings is refused (:func:`check_reusable`)."""
    check_reusable(config, run_path)
    run = RunDirectory(run_path)
    if run_kind(run_path) and run.results_path.is_file():
        return run.read_results()
    if run_kind(run_path):  # interrupted (before its first checkpoint: from step 0)
        return train(None, resume_dir=str(run_path), changes={"device": config.device, "progress": config.progress})[1]
    config.output = str(run_path)
    return train(config)[1]


def run_suite(suite: Suite, output: Path, device: str = "auto", progress: bool = True,
              overrides: Optional[Dict] = None, command: Optional[str] = None) -> Path:
    """Train and attack every run of ``suite`` under ``output`` and write the report.

    ``overrides`` replace config fields of every run (they are named in the report's notes);
    ``command`` is the exact command line the report gives for reproducing it.
    """
    output = Path(output)
    refuse_output_in_run(output)  # its report's results.json would replace the run's own
    configs = []
    for spec in suite.runs:  # every run's config, and whether a run already there may be reused, before any write
        values = {**spec.config, **(overrides or {}), "device": device, "progress": progress}
        configs.append(TrainConfig.from_dict(values, source=f"suite {suite.name}, run {spec.name}").resolved())
        check_reusable(configs[-1], output / "runs" / spec.name)
    (output / "runs").mkdir(parents=True, exist_ok=True)
    atomic_write_text(output / "suite.yaml", yaml.safe_dump({
        "suite": suite.name, "scale": suite.scale, "protocol": suite.protocol.to_dict(),
        "runs": [{"name": spec.name, "label": spec.label, "config": spec.config} for spec in suite.runs]},
        sort_keys=False))
    run_paths: List[Path] = []
    for index, (spec, config) in enumerate(zip(suite.runs, configs), start=1):
        run_path = output / "runs" / spec.name
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
