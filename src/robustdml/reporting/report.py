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

    def robust(self, metric: str, eps: float, attack: str = "nn") -> List[float]:
        """``metric`` (R@1, mAP@R) of ``attack``'s eps-curve row at ``eps``, one value per attack seed."""
        return [row[metric] for report in self.robustness for row in report["rows"]
                if row["attack"] == attack and row.get("curve", True) and abs(row["eps"] - eps) < 1e-9]

    def robust_r1(self, eps: float, attack: str = "nn") -> List[float]:
        return self.robust("R@1", eps, attack)

    @property
    def ers(self) -> Optional[float]:
        values = [report["ers"]["ERS"] for report in self.robustness if report.get("ers")]
        return values[0] if values else None


def _mean_std(values: Sequence[float], scale: float = 100.0) -> str:
    if not values:
        return "-"
    if len(values) == 1:
        return f"{scale * values[0]:.2f}"
    return f"{scale * statistics.mean(values):.2f} ± {scale * statistics.stdev(values):.2f}"


def summarise_run(path: Path, protocol: AttackProtocol, label: Optional[str] = None, device: str = "auto",
                  progress: bool = False) -> RunSummary:
    from robustdml.reporting.runner import robustness_for

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
             [f"robust mAP@R (eps {eps_list[-1]:g})", "ensemble R@1"] + (["ERS"] if protocol.with_ers else []) + \
             ["passes/step", "train time (s)", "run directory"]
    rows = []
    for run in runs:
        ensemble = [report["ensemble"].get(str(eps_list[-1]), report["ensemble"].get(str(float(eps_list[-1]))))
                    for report in run.robustness]
        row = [run.label, run.config.defense,
               f"{100 * run.results['test/R@1']:.2f}", f"{100 * run.results['test/mAP@R']:.2f}",
               f"{100 * run.results.get('test/NMI', float('nan')):.2f}"]
        row += [_mean_std(run.robust_r1(eps)) for eps in eps_list]
        row += [_mean_std(run.robust("mAP@R", eps_list[-1])), _mean_std([e for e in ensemble if e is not None])]
        if protocol.with_ers:
            row.append("-" if run.ers is None else f"{run.ers:.2f}")
        row += [f"{run.results['passes'] / max(run.steps, 1):.1f}", f"{run.results['train_seconds']:.0f}",
                f"`{run.path}`"]
        rows.append(row)
    return header, rows


def gallery_for(run: RunSummary, protocol: AttackProtocol, path: Path, device: str = "auto", queries: int = 3,
                k: int = 5) -> Optional[Path]:
    """Query, top-k clean, top-k of the NN-attacked query (largest eps) against the clean gallery."""
    from robustdml.attacks import build_engine
    from robustdml.attacks.objectives import push_from
    from robustdml.attacks.retrieval import load_images
    from robustdml.engine.evaluate import load_run
    from robustdml.evaluation import compute_embeddings, knn

    loaded = load_run(run.path, device=device)
    dataset = loaded.splits.test
    if len(dataset.image_shape) != 3:
        return None
    gallery, labels = compute_embeddings(loaded.model, dataset, device=loaded.device, progress=False)
    labels = labels.numpy()
    chosen = np.random.default_rng(0).choice(len(labels), size=queries, replace=False)
    _, clean_nn = knn(gallery[chosen], gallery, k, exclude_index=chosen)
    engine = build_engine(protocol.engine, eps=max(protocol.eps_list), steps=protocol.steps)
    images = load_images(dataset, chosen).to(loaded.device)
    adversarial = engine.perturb(loaded.model, images, push_from(gallery[clean_nn[:, 0]].to(loaded.device)),
                                 torch.Generator().manual_seed(0))
    with torch.no_grad():
        attacked = loaded.model(adversarial).float().cpu()
    _, attacked_nn = knn(attacked, gallery, k, exclude_index=chosen)
    as_images = lambda idx: [img.numpy() for img in load_images(dataset, idx)]  # noqa: E731
    return plots.retrieval_gallery(
        [img.cpu().numpy() for img in images], [as_images(row) for row in clean_nn],
        [labels[row] == labels[q] for row, q in zip(clean_nn, chosen)], [as_images(row) for row in attacked_nn],
        [labels[row] == labels[q] for row, q in zip(attacked_nn, chosen)], path,
        title=f"{run.label}: top-{k} clean (upper) and under the NN attack, eps {max(protocol.eps_list):g} (lower)",
        attacked_queries=[img.cpu().numpy() for img in adversarial])


def shifts_for(run: RunSummary, protocol: AttackProtocol, path: Path, device: str = "auto") -> Optional[Path]:
    """2-d embeddings with arrows to their embedding-shift adversarial versions (vector datasets)."""
    from robustdml.attacks import build_engine
    from robustdml.attacks.objectives import push_from
    from robustdml.attacks.retrieval import load_images
    from robustdml.engine.evaluate import load_run
    from robustdml.evaluation import compute_embeddings, knn

    loaded = load_run(run.path, device=device)
    dataset = loaded.splits.test
    if loaded.config.embedding_dim != 2:
        return None
    gallery, labels = compute_embeddings(loaded.model, dataset, device=loaded.device, progress=False)
    chosen = np.random.default_rng(0).choice(len(labels), size=min(200, len(labels)), replace=False)
    images = load_images(dataset, chosen).to(loaded.device)
    engine = build_engine(protocol.engine, eps=max(protocol.eps_list), steps=protocol.steps)
    adversarial = engine.perturb(loaded.model, images, push_from(gallery[chosen].to(loaded.device)))
    with torch.no_grad():
        moved = loaded.model(adversarial).float().cpu().numpy()
    _, neighbours = knn(gallery[chosen], gallery[chosen], 1, exclude_index=np.arange(len(chosen)))
    return plots.embedding_shifts(gallery[chosen].numpy(), moved, labels[chosen].numpy(), neighbours[:, 0], path,
                                  title=f"{run.label}: embedding shifts at eps {max(protocol.eps_list):g}")


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
    blocks += [("h2", "Results"), ("p", f"Benign R@1 / mAP@R / NMI on the test split (percent). Robust R@1 under the "
                                        f"nearest-neighbour {protocol.engine.upper()}-{protocol.steps} attack "
                                        f"(linf, perturbed query against the clean test set, query excluded), "
                                        f"mean ± std over attack seeds {list(protocol.seeds)}; ensemble = per-query "
                                        "worst case over all attacks at the largest eps; passes/step = "
                                        "forward+backward passes per training step."),
               ("table", header, rows)]
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
