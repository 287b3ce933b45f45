"""Plots of a report: line plots (robust R@1 against eps, training curves), embeddings with adversarial
shifts, retrieval galleries.

Everything renders with matplotlib's Agg backend to PNG files (no display needed).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
import numpy as np  # noqa: E402


# Readable at phone width: the page shows a figure about 400 px wide there, so fonts are large,
# every line has its own marker and dash pattern (not colour alone), and PNGs are saved at 200 dpi.
STYLE = {"font.size": 14, "axes.titlesize": 14, "axes.labelsize": 14, "xtick.labelsize": 13,
         "ytick.labelsize": 13, "legend.fontsize": 13}
DPI = 200
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">", "h")
DASHES = ("-", "--", "-.", ":")


def line_style(index: int) -> dict:
    """Colour, marker and dash pattern of the ``index``-th line (no two of the first 10 alike)."""
    return {"color": f"C{index % 10}", "marker": MARKERS[index % len(MARKERS)],
            "linestyle": DASHES[index % len(DASHES)], "markersize": 7, "linewidth": 1.8}


def _legend_columns(labels: Sequence[str]) -> int:
    return min(len(labels), 3 if max(map(len, labels), default=0) <= 12 else 2)


def _legend_below(axis, labels: Sequence[str]) -> None:
    """The legend under the plot (never over the lines), in as many columns as fit."""
    axis.legend(loc="upper center", bbox_to_anchor=(0.5, -0.2), ncol=_legend_columns(labels), frameon=False)


@dataclass(frozen=True)
class LineStyle:
    """How :func:`lines` draws its axes: ``title``, ``xticks`` ((position, text) pairs), ``ylim``,
    ``integer_x`` (integer ticks, e.g. epochs) and ``reference`` (a horizontal grey line at that y)."""

    title: str = ""
    xticks: Sequence[tuple] = ()
    ylim: Optional[tuple] = None
    integer_x: bool = False
    reference: Optional[float] = None


def lines(series: Dict[str, List[tuple]], path: Path, xlabel: str, ylabel: str, **style) -> Path:
    """One line per label: ``series[label] = [(x, y) or (x, y, y_low, y_high), ...]``; with low/high
    the points get error bars (shifted a little sideways per line so they stay apart). ``xticks``:
    (position, text) pairs; ``reference``: a horizontal grey line at that y (e.g. 0 for differences).
    Any suite may use it for its own figures (e.g. a clean-R@1 difference against the training
    fraction)."""
    style = LineStyle(**style)
    title, xticks, ylim, integer_x, reference = style.title, style.xticks, style.ylim, style.integer_x, style.reference
    with plt.rc_context(STYLE):
        rows = -(-len(series) // _legend_columns(list(series)))
        figure, axis = plt.subplots(figsize=(5.6, 3.6 + 0.3 * rows))
        bars = any(len(p) == 4 for points in series.values() for p in points)
        shift = 0.012 * (max((p[0] for pts in series.values() for p in pts), default=1) or 1) if bars else 0
        for index, (label, points) in enumerate(series.items()):
            points = sorted(points)
            x = [p[0] + (index - (len(series) - 1) / 2) * shift for p in points]
            errors = [[p[1] - p[2] for p in points], [p[3] - p[1] for p in points]] if bars else None
            axis.errorbar(x, [p[1] for p in points], yerr=errors, label=label, capsize=3, elinewidth=1,
                          **line_style(index))
        if xticks:
            axis.set_xticks([t[0] for t in xticks], [t[1] for t in xticks])
        if integer_x:
            axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        if reference is not None:
            axis.axhline(reference, color="0.35", linewidth=1.2, zorder=0)
        axis.set(xlabel=xlabel, ylabel=ylabel, title=title)
        if ylim:
            axis.set_ylim(*ylim)
        axis.grid(alpha=0.3)
        _legend_below(axis, list(series))
        figure.tight_layout()
        figure.savefig(path, dpi=DPI, bbox_inches="tight")
        plt.close(figure)
    return path


def robust_curves(curves: Dict[str, List[tuple]], path: Path, queries: str = "") -> Path:
    """``curves[label] = [(eps, R@1, low, high), ...]`` (fractions; eps 0 = the same queries, clean),
    evenly spaced on the x axis, each point with its 95% interval; ``queries``: how many (for the label)."""
    eps = sorted({p[0] for points in curves.values() for p in points})
    position = {e: i for i, e in enumerate(eps)}
    series = {label: [(position[p[0]], 100 * p[1], 100 * p[2], 100 * p[3]) for p in points]
              for label, points in curves.items()}
    ticks = [(i, "clean" if e == 0 else f"{e:g}") for e, i in position.items()]
    return lines(series, path, xlabel="eps (linf, pixel units; evenly spaced)",
                 ylabel=" ".join(filter(None, ["R@1 of", queries, "attacked queries (%)"])), xticks=ticks,
                 ylim=(0, 100))


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
    figure.savefig(path, dpi=150)
    plt.close(figure)
    return path


def retrieval_gallery(queries: Sequence[np.ndarray], clean_rows: Sequence[Sequence[np.ndarray]],
                      clean_correct: Sequence[Sequence[bool]], attacked_rows: Sequence[Sequence[np.ndarray]],
                      attacked_correct: Sequence[Sequence[bool]], path: Path, title: str = "",
                      attacked_queries: Sequence[np.ndarray] | None = None) -> Path:
    """For each query: the query, its top-k clean results, then the top-k of its attacked version.

    Green borders: same class as the query; red: another class (the report's legend says so).
    """
    rows, k = len(queries), len(clean_rows[0])
    figure, axes = plt.subplots(2 * rows, k + 1, figsize=(1.1 * (k + 1), 1.15 * 2 * rows), squeeze=False)
    for r in range(rows):
        shown = attacked_queries[r] if attacked_queries is not None else queries[r]
        for line, (query, images, correct, label) in enumerate([
                (queries[r], clean_rows[r], clean_correct[r], "query"),
                (shown, attacked_rows[r], attacked_correct[r], "attacked query")]):
            axis = axes[2 * r + line, 0]
            _show(axis, query, "black")
            axis.set_title(label, fontsize=8)
            for c in range(k):
                _show(axes[2 * r + line, c + 1], images[c], "tab:green" if correct[c] else "tab:red")
    if title:
        figure.suptitle(title, fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=150)
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
