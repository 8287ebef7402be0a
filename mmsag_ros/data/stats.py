"""Label statistics from annotations alone: counts, cardinality, co-occurrence, label graph.

The static label graph of MM-SAG's graph module is ML-GCN's (Chen et al., CVPR 2019, eqs. 7-8):
the conditional probability P(j | i) = M_ij / N_i of seeing class j in an image that has class
i, binarised at a threshold t and re-weighted with p so that a node keeps weight 1 - p on itself
and spreads p over its neighbours. Only entries equal to 1 count as positives: ignored (-1)
entries are neither positives nor negatives here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mmsag_ros.bundle.labels import LabelSet
from mmsag_ros.data.dataset import AnnotatedSplit
from mmsag_ros.errors import ConfigError, DatasetError

__all__ = [
    "LabelStatistics",
    "conditional_probability",
    "format_adjacency",
    "format_statistics",
    "label_statistics",
    "mlgcn_adjacency",
    "plot_cooccurrence",
]

_FULL_MATRIX_MAX_CLASSES = 16  # wider co-occurrence tables do not fit a terminal
_TOP_PAIRS = 10


@dataclass(frozen=True, eq=False)
class LabelStatistics:
    """Per-class and pairwise label counts of one split.

    Attributes:
        num_images: Number of images N.
        counts: Images positive for each class (C,), int64.
        frequency: ``counts / num_images`` (C,), float64.
        ignored: Images whose entry for each class is -1 (ignore) (C,), int64.
        cooccurrence: C x C int64; entry (i, j) counts images positive for both i and j, so the
            diagonal equals ``counts``.
        cardinality_mean: Mean number of positive labels per image.
        cardinality_max: Largest number of positive labels on one image.
        images_without_labels: Images with no positive label.
    """

    num_images: int
    counts: np.ndarray
    frequency: np.ndarray
    ignored: np.ndarray
    cooccurrence: np.ndarray
    cardinality_mean: float
    cardinality_max: int
    images_without_labels: int

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON."""
        return {
            "num_images": self.num_images,
            "counts": self.counts.tolist(),
            "frequency": self.frequency.tolist(),
            "ignored": self.ignored.tolist(),
            "cooccurrence": self.cooccurrence.tolist(),
            "cardinality_mean": self.cardinality_mean,
            "cardinality_max": self.cardinality_max,
            "images_without_labels": self.images_without_labels,
        }


def label_statistics(split: AnnotatedSplit | np.ndarray) -> LabelStatistics:
    """Count labels of a split (or of an N x C target array); no image is read."""
    targets = split.targets() if isinstance(split, AnnotatedSplit) else np.asarray(split)
    if targets.ndim != 2:
        raise DatasetError(f"targets must be an N x C array, got shape {targets.shape}")
    positive = (targets == 1).astype(np.int64)
    num_images = int(targets.shape[0])
    counts = positive.sum(axis=0)
    cardinality = positive.sum(axis=1)
    return LabelStatistics(
        num_images=num_images,
        counts=counts,
        frequency=counts / num_images if num_images else np.zeros(len(counts)),
        ignored=(targets == -1).sum(axis=0).astype(np.int64),
        cooccurrence=positive.T @ positive,
        cardinality_mean=float(cardinality.mean()) if num_images else 0.0,
        cardinality_max=int(cardinality.max()) if num_images else 0,
        images_without_labels=int((cardinality == 0).sum()),
    )


def conditional_probability(stats: LabelStatistics) -> np.ndarray:
    """C x C matrix with entry (i, j) = P(j | i) = M_ij / N_i.

    Rows of classes with no positive image are all zero (nothing is known about them).
    """
    counts = stats.counts.astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        probability = stats.cooccurrence / counts[:, None]
    probability[counts == 0] = 0.0
    return probability


def mlgcn_adjacency(
    stats: LabelStatistics, *, threshold: float = 0.4, reweight: float = 0.2
) -> np.ndarray:
    """ML-GCN's static label graph: binarised P(j | i), re-weighted, with self-loops.

    Row i has an edge to j (j != i) when P(j | i) >= ``threshold``. A row with k >= 1 edges
    gets ``reweight / k`` on each of them and ``1 - reweight`` on its diagonal (the paper's
    equation 8, which keeps every row summing to 1). A row with no edge keeps only its
    self-loop, weight 1: the paper's formula would divide by zero there, and a weight of
    1 - p on a lone self-loop would shrink that class's features for no reason. ML-GCN's
    released code normalises columns and adds the identity afterwards; this follows the paper
    so that rows, which the graph convolution aggregates over, are normalised.

    Returns:
        C x C float32 matrix, row i = how node i mixes its neighbours' features.
    """
    if not 0.0 < threshold <= 1.0:
        raise ConfigError(f"adjacency threshold must be in (0, 1], got {threshold}")
    if not 0.0 <= reweight < 1.0:
        raise ConfigError(f"adjacency re-weighting p must be in [0, 1), got {reweight}")
    edges = conditional_probability(stats) >= threshold
    np.fill_diagonal(edges, False)
    degree = edges.sum(axis=1)
    adjacency = np.zeros(edges.shape, np.float64)
    has_edges = degree > 0
    adjacency[has_edges] = edges[has_edges] * (reweight / degree[has_edges, None])
    np.fill_diagonal(adjacency, np.where(has_edges, 1.0 - reweight, 1.0))
    return adjacency.astype(np.float32)


def _table(header: list[str], rows: list[list[str]], *, left: tuple[int, ...]) -> str:
    """Aligned text table; columns in ``left`` are left-aligned, the others right-aligned."""
    widths = [max(len(row[k]) for row in [header, *rows]) for k in range(len(header))]

    def line(cells: list[str]) -> str:
        return "  ".join(
            cell.ljust(width) if k in left else cell.rjust(width)
            for k, (cell, width) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    return "\n".join([line(header), "  ".join("-" * w for w in widths), *map(line, rows)])


def format_statistics(stats: LabelStatistics, labels: LabelSet) -> str:
    """Terminal tables: per-class counts, cardinality, co-occurrence (matrix or top pairs)."""
    if len(labels) != len(stats.counts):
        raise DatasetError(f"{len(labels)} labels for statistics of {len(stats.counts)} classes")
    lines = [
        f"images: {stats.num_images}   labels per image: mean {stats.cardinality_mean:.2f}, "
        f"max {stats.cardinality_max}   images without labels: {stats.images_without_labels}",
        "",
    ]
    rows = [
        [
            str(c),
            name,
            display,
            str(stats.counts[c]),
            f"{100 * stats.frequency[c]:.1f}%",
            str(stats.ignored[c]),
        ]
        for c, (name, display) in enumerate(zip(labels.names, labels.display_names, strict=True))
    ]
    lines.append(
        _table(["#", "class", "display name", "images", "share", "ignored"], rows, left=(1, 2))
    )
    probability = conditional_probability(stats)
    if len(labels) <= _FULL_MATRIX_MAX_CLASSES:
        lines += ["", "co-occurrence (images with both; row i, column j; diagonal = images):"]
        width = max(4, len(str(stats.cooccurrence.max(initial=0))) + 1)
        lines.append("    " + "".join(f"{j:>{width}}" for j in range(len(labels))))
        lines += [
            f"{i:>3} " + "".join(f"{v:>{width}}" for v in stats.cooccurrence[i])
            for i in range(len(labels))
        ]
    pairs = [
        (int(stats.cooccurrence[i, j]), i, j)
        for i in range(len(labels))
        for j in range(i + 1, len(labels))
        if stats.cooccurrence[i, j] > 0
    ]
    pairs.sort(key=lambda item: (-item[0], item[1], item[2]))
    lines += ["", f"most frequent pairs (of {len(pairs)} that co-occur):"]
    pair_rows = [
        [
            str(n),
            labels.names[i],
            labels.names[j],
            f"{probability[i, j]:.2f}",
            f"{probability[j, i]:.2f}",
        ]
        for n, i, j in pairs[:_TOP_PAIRS]
    ]
    lines.append(
        _table(["images", "class i", "class j", "P(j|i)", "P(i|j)"], pair_rows, left=(1, 2))
    )
    return "\n".join(lines)


def format_adjacency(
    adjacency: np.ndarray, stats: LabelStatistics, labels: LabelSet, *, threshold: float
) -> str:
    """Summary of an ML-GCN adjacency: its edges with their P(j | i), and the isolated nodes."""
    probability = conditional_probability(stats)
    off_diagonal = adjacency.copy()
    np.fill_diagonal(off_diagonal, 0.0)
    edges = np.argwhere(off_diagonal > 0)
    isolated = [labels.names[i] for i in range(len(labels)) if not off_diagonal[i].any()]
    lines = [
        f"label graph (ML-GCN, P(j|i) >= {threshold}): {len(edges)} edges, "
        f"{len(isolated)} of {len(labels)} classes with no neighbour"
    ]
    if len(edges):
        rows = [
            [labels.names[i], labels.names[j], f"{probability[i, j]:.2f}", f"{adjacency[i, j]:.3f}"]
            for i, j in edges
        ]
        lines.append(_table(["from i", "to j", "P(j|i)", "weight"], rows, left=(0, 1)))
    if isolated:
        lines.append(f"  self-loop only: {', '.join(isolated)}")
    return "\n".join(lines)


def plot_cooccurrence(stats: LabelStatistics, labels: LabelSet, path: Path) -> Path:
    """Write a heat map of P(column | row) to ``path`` (PNG); counts annotated when few classes.

    Uses matplotlib's Agg canvas directly, so it never needs a display or changes the
    process-wide matplotlib backend.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    num = len(labels)
    if num != len(stats.counts):
        raise DatasetError(f"{num} labels for statistics of {len(stats.counts)} classes")
    side_in = min(4.0 + 0.35 * num, 30.0)
    figure = Figure(figsize=(side_in + 1.5, side_in), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    image = axes.imshow(conditional_probability(stats), vmin=0.0, vmax=1.0, cmap="viridis")
    figure.colorbar(image, ax=axes, label="P(column label | row label)")
    names = list(labels.display_names)
    font = max(4, 10 - num // 10)
    axes.set_xticks(range(num), names, rotation=90, fontsize=font)
    axes.set_yticks(range(num), names, fontsize=font)
    axes.set_title(f"label co-occurrence, {stats.num_images} images")
    if num <= _FULL_MATRIX_MAX_CLASSES:
        for i in range(num):
            for j in range(num):
                value = int(stats.cooccurrence[i, j])
                axes.text(j, i, str(value), ha="center", va="center", fontsize=7, color="w")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png")
    return path
