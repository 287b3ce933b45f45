"""The figures of a report: robust R@1 against eps, training curves, and the retrieval galleries (or, for
2-d embeddings, the embedding shifts) under attack."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import numpy as np

from robustdml.reporting import plots
from robustdml.reporting.blocks import Block, Details, Figure, Heading, Legend, Paragraph
from robustdml.reporting.model import RunSummary, counts_text
from robustdml.robustness.gallery import attack_for_gallery
from robustdml.robustness.spec import AttackProtocol


def robust_figure(runs: List[RunSummary], protocol: AttackProtocol, path: Path) -> Figure:
    curves = {}
    for run in runs:
        clean = run.clean_attacked()
        points = [(0.0, clean.value, clean.low, clean.high)]
        points += [(eps, e.value, e.low, e.high) for eps in protocol.eps_list for e in [run.robust_r1(eps)] if e]
        curves[run.label] = points
    queries = counts_text(runs, "queries")
    plots.robust_curves(curves, path, queries=queries)
    return Figure(path, f"R@1 of the {queries} attacked queries against eps, each point with its 95% interval. "
                        "*clean*: the same queries before attack (not the table's benign R@1, which counts the whole "
                        "test split).")


def training_figures(runs: List[RunSummary], figures: Path) -> List[Figure]:
    """Validation R@1 and training loss per epoch (each loss divided by its first epoch's value,
    since defenses optimise differently scaled losses). Runs trained without a validation split
    (``val_fraction: 0``, e.g. RobRank's recipe) have no validation curve; with none at all, no figure."""
    epochs = {run.label: [r for r in run.history if "epoch" in r and not r.get("final")] for run in runs}
    r1 = {label: [(r["epoch"], 100 * r["val/R@1"]) for r in records if "val/R@1" in r]
          for label, records in epochs.items()}
    r1 = {label: points for label, points in r1.items() if points}
    loss = {label: [(r["epoch"], r["train_loss"] / records[0]["train_loss"]) for r in records if "train_loss" in r]
            for label, records in epochs.items() if records and records[0].get("train_loss")}
    shown = []
    if r1:
        missing = [label for label in epochs if label not in r1]
        caption = "Validation R@1 per epoch (the split carved from the training data)." + (
            f" No validation split (last checkpoint kept): {', '.join(missing)}." if missing else "")
        shown.append(Figure(plots.lines(r1, figures / "validation_r1.png", "epoch", "validation R@1 (%)",
                                        integer_x=True), caption))
    if loss:
        shown.append(Figure(plots.lines(loss, figures / "training_loss.png", "epoch", "training loss / first epoch's",
                                        integer_x=True), "Training loss per epoch, divided by each run's first-epoch "
                                                         "loss."))
    return shown


def gallery_for(run: RunSummary, protocol: AttackProtocol, path: Path, device: str = "auto", queries: int = 3,
                k: int = 5) -> Optional[Path]:
    """Query, top-k clean, top-k of the attacked query (the default attack at the largest eps)."""
    from robustdml.attacks.context import load_images
    from robustdml.engine.evaluate import load_run
    from robustdml.evaluation import knn

    loaded = load_run(run.path, device=device)
    dataset = loaded.splits.test
    if len(dataset.image_shape) != 3:
        return None
    chosen = np.sort(np.random.default_rng(0).choice(len(dataset), size=queries, replace=False))
    gallery, labels, adversarial, attacked = attack_for_gallery(loaded.model, loaded.splits.test, protocol.spec, chosen, loaded.device, protocol.seeds[0])
    _, clean_nn = knn(gallery[chosen], gallery, k, exclude_index=chosen)
    _, attacked_nn = knn(attacked, gallery, k, exclude_index=chosen)
    as_images = lambda idx: [img.numpy() for img in load_images(dataset, idx)]  # noqa: E731
    return plots.retrieval_gallery(
        as_images(chosen), [as_images(row) for row in clean_nn],
        [labels[row] == labels[q] for row, q in zip(clean_nn, chosen)], [as_images(row) for row in attacked_nn],
        [labels[row] == labels[q] for row, q in zip(attacked_nn, chosen)], path,
        title=f"{run.label}: top-{k} clean and under attack, eps {max(protocol.eps_list):g}",
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
    gallery, labels, _, moved = attack_for_gallery(loaded.model, loaded.splits.test, protocol.spec, chosen, loaded.device, protocol.seeds[0])
    _, neighbours = knn(gallery[chosen], gallery[chosen], 1, exclude_index=np.arange(len(chosen)))
    return plots.embedding_shifts(gallery[chosen].numpy(), moved.numpy(), labels[chosen], neighbours[:, 0], path,
                                  title=f"{run.label}: embeddings under attack at eps {max(protocol.eps_list):g}")


def galleries_section(runs: List[RunSummary], protocol: AttackProtocol, figures: Path, device: str) -> List[Block]:
    """One collapsible gallery per run, under one legend for the borders."""
    pictures: List[Block] = []
    kind = ""
    for index, run in enumerate(runs):
        target = figures / f"gallery_{index}_{run.path.name}.png"
        picture = gallery_for(run, protocol, target, device=device)
        kind = kind or ("gallery" if picture else "")
        picture = picture or shifts_for(run, protocol, target, device=device)
        if picture:
            pictures.append(Details(run.label, [Figure(picture, f"{run.label}, eps {max(protocol.eps_list):g}")]))
    if not pictures:
        return []
    top = max(protocol.eps_list)
    if kind == "gallery":
        intro = [Paragraph(f"Three random test queries per run (click a run to open it). Upper row of each pair: the "
                           f"query and its top-5 results; lower row: the query perturbed by the attack at eps {top:g} "
                           "and its top-5 results (clean gallery)."),
                 Legend([("#2ca02c", "green: same class as the query"), ("#d62728", "red: another class")])]
    else:
        intro = [Paragraph(f"Test embeddings (dots, coloured by class, grey lines to their nearest neighbour) and "
                           f"arrows to the embeddings of their attacked versions at eps {top:g} (click a run to "
                           "open it).")]
    return [Heading("Retrieval under attack", anchor="galleries"), *intro, *pictures]
