"""Plots of a report: robust R@1 against eps, training curves, embeddings with adversarial shifts.

Everything renders with matplotlib's Agg backend to PNG files (no display needed).
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
import numpy as np  # noqa: E402


def robust_curves(curves: Dict[str, List[tuple]], path: Path, title: str = "") -> Path:
    """``curves[label] = [(eps, R@1 in [0,1]), ...]`` (eps 0 = clean) -> one line per label."""
    figure, axis = plt.subplots(figsize=(5.5, 3.8))
    for label, points in curves.items():
        points = sorted(points)
        axis.plot([p[0] for p in points], [100 * p[1] for p in points], marker="o", label=label)
    axis.set(xlabel="eps (pixel units, linf)", ylabel="robust R@1 (%)", ylim=(0, 100), title=title)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def training_curves(histories: Dict[str, List[dict]], path: Path) -> Path:
    """Training loss and validation R@1 per epoch for each run."""
    figure, (loss_axis, r1_axis) = plt.subplots(1, 2, figsize=(9, 3.5))
    for label, records in histories.items():
        epochs = [r for r in records if "epoch" in r and not r.get("final")]
        if not epochs:
            continue
        x = [r["epoch"] for r in epochs]
        loss_axis.plot(x, [r.get("train_loss") for r in epochs], marker=".", label=label)
        if any("val/R@1" in r for r in epochs):
            r1_axis.plot(x, [100 * r.get("val/R@1", float("nan")) for r in epochs], marker=".", label=label)
    loss_axis.set(xlabel="epoch", ylabel="training loss")
    r1_axis.set(xlabel="epoch", ylabel="validation R@1 (%)")
    for axis in (loss_axis, r1_axis):
        axis.grid(alpha=0.3)
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
    loss_axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def embedding_shifts(clean: np.ndarray, adversarial: np.ndarray, labels: np.ndarray, neighbours: np.ndarray,
                     path: Path, title: str = "") -> Path:
    """2-d embeddings (synthetic set), arrows to their adversarial versions, lines to nearest neighbours."""
    figure, axis = plt.subplots(figsize=(4.5, 4.5))
    colours = np.array(["tab:blue", "tab:orange", "tab:green", "tab:red"])[labels % 4]
    for i, j in enumerate(neighbours):
        axis.plot(*zip(clean[i], clean[j]), color="0.8", linewidth=0.5, zorder=1)
    axis.scatter(clean[:, 0], clean[:, 1], c=colours, s=12, zorder=2)
    delta = adversarial - clean
    axis.quiver(clean[:, 0], clean[:, 1], delta[:, 0], delta[:, 1], angles="xy", scale_units="xy", scale=1,
                width=0.004, color="k", alpha=0.6, zorder=3)
    axis.set(title=title, xlabel="embedding 1", ylabel="embedding 2", aspect="equal", xlim=(-1.1, 1.1),
             ylim=(-1.1, 1.1))
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path


def retrieval_gallery(queries: Sequence[np.ndarray], clean_rows: Sequence[Sequence[np.ndarray]],
                      clean_correct: Sequence[Sequence[bool]], attacked_rows: Sequence[Sequence[np.ndarray]],
                      attacked_correct: Sequence[Sequence[bool]], path: Path, title: str = "",
                      attacked_queries: Sequence[np.ndarray] | None = None) -> Path:
    """For each query: the query, its top-k clean results, then the top-k of its attacked version.

    Green borders: same class as the query; red: another class.
    """
    rows, k = len(queries), len(clean_rows[0])
    figure, axes = plt.subplots(2 * rows, k + 1, figsize=(1.1 * (k + 1), 1.15 * 2 * rows), squeeze=False)
    for r in range(rows):
        shown = attacked_queries[r] if attacked_queries is not None else queries[r]
        for line, (query, images, correct, label) in enumerate([
                (queries[r], clean_rows[r], clean_correct[r], "clean"),
                (shown, attacked_rows[r], attacked_correct[r], "attacked")]):
            axis = axes[2 * r + line, 0]
            _show(axis, query, "black")
            axis.set_title(f"query ({label})", fontsize=6)
            for c in range(k):
                _show(axes[2 * r + line, c + 1], images[c], "tab:green" if correct[c] else "tab:red")
    figure.suptitle(title, fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def _show(axis, image: np.ndarray, border: str) -> None:
    image = np.asarray(image)
    if image.ndim == 3:
        image = image[0] if image.shape[0] == 1 else np.transpose(image, (1, 2, 0))
    axis.imshow(image, cmap="gray" if image.ndim == 2 else None, vmin=0, vmax=1)
    axis.set_xticks([])
    axis.set_yticks([])
    for spine in axis.spines.values():
        spine.set_edgecolor(border)
        spine.set_linewidth(3)
