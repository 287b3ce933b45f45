"""Build a report (Markdown + HTML + PNG figures) from run directories, without retraining.

Robustness results are read from each run's cache (``robustness/<protocol>.json``) and computed
only when missing. Every number in a table names the run directory it comes from.
"""

from __future__ import annotations

import html
import json
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from robustdml.engine.config import TrainConfig
from robustdml.engine.run_dir import RunDirectory
from robustdml.reporting import plots
from robustdml.reporting.robustness_cache import robustness_for
from robustdml.reporting.suites import AttackProtocol

Block = Tuple  # ("h2", text) | ("p", text) | ("table", header, rows) | ("img", path, caption) | ("code", text)


@dataclass
class RunSummary:
    path: Path
    label: str
    config: TrainConfig
    results: Dict
    history: List[Dict]
    robustness: List[Dict]  # one per attack seed

    @property
    def steps(self) -> int:
        epochs = [r for r in self.history if "step" in r and not r.get("final")]
        return max((r["step"] for r in epochs), default=0)

    def robust(self, metric: str, eps: float) -> List[float]:
        """``metric`` (R@1, mAP@R) of the per-query worst case at ``eps``, one value per attack seed."""
        return [report["worst_case"][key][metric] for report in self.robustness
                for key in report["worst_case"] if abs(float(key) - eps) < 1e-9]

    def robust_r1(self, eps: float) -> List[float]:
        return self.robust("R@1", eps)

    def interval(self, eps: float) -> Optional[Tuple[float, float]]:
        """95% interval of the first seed's robust R@1 at ``eps`` (over its queries)."""
        for key, entry in self.robustness[0]["worst_case"].items():
            if abs(float(key) - eps) < 1e-9:
                return tuple(entry["R@1_ci"])
        return None

    @property
    def attack_cost(self) -> float:
        """Forward+backward passes per query, summed over the eps of the first seed's evaluation."""
        return sum(entry["passes_per_query"] for entry in self.robustness[0]["worst_case"].values())

    def unconverged(self) -> List[str]:
        return [warning for report in self.robustness for warning in report["warnings"]]

    @property
    def ers(self) -> Optional[float]:
        values = [report["ers"]["ERS"] for report in self.robustness if report.get("ers")]
        return values[0] if values else None


def _mean_std(values: Sequence[float], scale: float = 100.0, interval: Optional[Tuple[float, float]] = None) -> str:
    """One value (with its 95% interval when given) or mean ± std over seeds."""
    if not values:
        return "-"
    if len(values) == 1:
        ci = f" [{scale * interval[0]:.1f}, {scale * interval[1]:.1f}]" if interval else ""
        return f"{scale * values[0]:.2f}{ci}"
    return f"{scale * statistics.mean(values):.2f} ± {scale * statistics.stdev(values):.2f}"


def summarise_run(path: Path, protocol: AttackProtocol, label: Optional[str] = None, device: str = "auto",
                  progress: bool = False) -> RunSummary:
    run = RunDirectory.open(path)
    results_path = run.path / "results.json"
    if not results_path.is_file():
        raise FileNotFoundError(f"{run.path} has no results.json: the run has not finished (resume it with "
                                f"robustdml train --resume {run.path})")
    robustness = [robustness_for(run.path, protocol, seed, device=device, progress=progress) for seed in protocol.seeds]
    return RunSummary(path=run.path, label=label or run.path.name, config=TrainConfig.load(run.config_path),
                      results=json.loads(results_path.read_text()), history=run.read_metrics(), robustness=robustness)


def results_table(runs: List[RunSummary], protocol: AttackProtocol) -> Tuple[List[str], List[List[str]]]:
    eps_list = list(protocol.eps_list)
    header = ["run", "defense", "R@1", "mAP@R", "NMI"] + [f"robust R@1 (eps {e:g})" for e in eps_list] + \
             [f"robust mAP@R (eps {eps_list[-1]:g})"] + (["ERS"] if protocol.with_ers else []) + \
             ["attack passes/query", "passes/step", "train time (s)", "run directory"]
    rows = []
    for run in runs:
        row = [run.label, run.config.defense,
               f"{100 * run.results['test/R@1']:.2f}", f"{100 * run.results['test/mAP@R']:.2f}",
               f"{100 * run.results.get('test/NMI', float('nan')):.2f}"]
        row += [_mean_std(run.robust_r1(eps), interval=run.interval(eps)) for eps in eps_list]
        row.append(_mean_std(run.robust("mAP@R", eps_list[-1])))
        if protocol.with_ers:
            row.append("-" if run.ers is None else f"{run.ers:.2f}")
        row += [f"{run.attack_cost:.0f}", f"{run.results['passes'] / max(run.steps, 1):.1f}",
                f"{run.results['train_seconds']:.0f}", f"`{run.path}`"]
        rows.append(row)
    return header, rows


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
        title=f"{run.label}: top-{k} clean (upper) and under attack, eps {max(protocol.eps_list):g} (lower)",
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


def build_report(run_paths: Sequence[Path], output: Path, protocol: AttackProtocol, title: str = "robustdml report",
                 description: str = "", notes: Sequence[str] = (), labels: Optional[Dict[str, str]] = None,
                 command: str = "", device: str = "auto", progress: bool = False) -> Path:
    output = Path(output)
    figures = output / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    runs = [summarise_run(Path(p), protocol, (labels or {}).get(str(p)), device=device, progress=progress)
            for p in run_paths]
    blocks: List[Block] = [("h1", title)]
    if description:
        blocks.append(("p", description))
    blocks += [("p", note) for note in notes]
    header, rows = results_table(runs, protocol)
    queries = runs[0].robustness[0]["settings"]["queries"] if runs else 0
    seeds = (f"mean ± std over attack seeds {list(protocol.seeds)}" if len(protocol.seeds) > 1 else
             "with its 95% confidence interval over the attacked queries (Clopper-Pearson)")
    blocks += [("h2", "Results"), ("p", f"Benign R@1 / mAP@R / NMI on the test split (percent). Robust R@1: per-query "
                                        f"worst case over the attack ({protocol.spec.describe()}) on {queries} test "
                                        "queries, each perturbed query ranked against the clean test set with "
                                        f"itself excluded; {seeds}. attack passes/query = forward+backward passes "
                                        "per query, summed over eps; passes/step = per training step."),
               ("table", header, rows)]
    blocks += [("p", f"WARNING ({run.label}): {warning}") for run in runs for warning in run.unconverged()]
    curves = {run.label: [(0.0, run.robustness[0]["clean"]["R@1"])] +
              [(eps, statistics.mean(run.robust_r1(eps))) for eps in protocol.eps_list if run.robust_r1(eps)]
              for run in runs}
    blocks += [("h2", "Robust R@1 against eps"),
               ("img", plots.robust_curves(curves, figures / "robust_r1_vs_eps.png"), "robust R@1 vs eps")]
    blocks += [("h2", "Training curves"),
               ("img", plots.training_curves({r.label: r.history for r in runs}, figures / "training_curves.png"),
                "training loss and validation R@1")]
    pictures = []
    for index, run in enumerate(runs):
        target = figures / f"gallery_{index}_{run.path.name}.png"
        picture = gallery_for(run, protocol, target, device=device) or shifts_for(run, protocol, target, device=device)
        if picture:
            pictures.append(("img", picture, run.label))
    if pictures:
        blocks += [("h2", "Retrieval under attack")] + pictures
    blocks += [("h2", "How to reproduce")]
    if command:
        blocks.append(("code", command))
    blocks.append(("code", "\n".join(f"robustdml train --config {run.path}/config.yaml --output NEW_DIR"
                                     for run in runs)))
    blocks += [("h2", "Configurations")]
    for run in runs:
        blocks.append(("p", f"{run.label} ({run.path}):"))
        blocks.append(("code", (run.path / RunDirectory.CONFIG).read_text().strip()))
    (output / "report.md").write_text(to_markdown(blocks, output))
    (output / "report.html").write_text(to_html(blocks, output, title))
    (output / "results.json").write_text(json.dumps({"header": header, "rows": rows}, indent=2) + "\n")
    return output


def _relative(path: Path, base: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(base.resolve()))
    except ValueError:
        return str(path)


def to_markdown(blocks: Sequence[Block], base: Path) -> str:
    lines: List[str] = []
    for block in blocks:
        kind = block[0]
        if kind in ("h1", "h2"):
            lines += [("# " if kind == "h1" else "## ") + block[1], ""]
        elif kind == "p":
            lines += [block[1], ""]
        elif kind == "table":
            _, header, rows = block
            lines += ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
            lines += ["| " + " | ".join(row) + " |" for row in rows] + [""]
        elif kind == "img":
            lines += [f"![{block[2]}]({_relative(block[1], base)})", ""]
        elif kind == "code":
            lines += ["```", block[1], "```", ""]
    return "\n".join(lines)


def to_html(blocks: Sequence[Block], base: Path, title: str) -> str:
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
             "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto}table{border-collapse:collapse;"
             "font-size:13px}td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}td:first-child{text-align:"
             "left}pre{background:#f4f4f4;padding:8px;overflow-x:auto}img{max-width:100%}</style></head><body>"]
    for block in blocks:
        kind = block[0]
        if kind in ("h1", "h2"):
            parts.append(f"<{kind}>{html.escape(block[1])}</{kind}>")
        elif kind == "p":
            parts.append(f"<p>{html.escape(block[1])}</p>")
        elif kind == "table":
            _, header, rows = block
            parts.append("<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>")
            parts += ["<tr>" + "".join(f"<td>{html.escape(c.strip('`'))}</td>" for c in row) + "</tr>" for row in rows]
            parts.append("</table>")
        elif kind == "img":
            parts.append(f"<figure><img src='{html.escape(_relative(block[1], base))}' alt='{html.escape(block[2])}'>"
                         f"<figcaption>{html.escape(block[2])}</figcaption></figure>")
        elif kind == "code":
            parts.append(f"<pre>{html.escape(block[1])}</pre>")
    parts.append("</body></html>")
    return "\n".join(parts)
