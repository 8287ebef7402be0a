"""Evaluation output for people: a plain-text metrics table and PNG plots.

The table is for terminals and logs; the plots (per-class precision-recall curves, latency
histograms for benchmarks and bag evaluation) are written with matplotlib's Agg renderer,
imported only when a plot is drawn and without pyplot, so no display or global backend is
touched.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mmsag_ros.bundle.labels import LabelSet
from mmsag_ros.errors import ConfigError
from mmsag_ros.metrics import METRIC_KEYS, MetricReport, average_precision, pr_curve

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from mmsag_ros.pointing import PointingReport

__all__ = ["format_report_table", "plot_latency_histogram", "plot_pr_curves"]

_LINE_STYLES = ("-", "--", ":", "-.")


def _percent(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{100.0 * value:.2f}"


def format_report_table(report: MetricReport, labels: LabelSet) -> str:
    """Render a MetricReport as an aligned plain-text table (values in percent).

    The first block lists each class (display name) with its AP and decision threshold, then
    mAP; the second block gives CP, CR, CF1, OP, OR and OF1 at those thresholds, at 0.5 and
    for the top-3 classes per image.

    Args:
        report: The metrics to show.
        labels: The label set the report was computed with (same class order).

    Returns:
        The table, lines joined by newlines, without a trailing newline.
    """
    if len(labels) != len(report.ap):
        raise ConfigError(
            f"the report has {len(report.ap)} classes but the label set {len(labels)}; "
            f"pass the label set the model was evaluated with"
        )
    top_k = min(3, len(labels))
    rows = [("at thresholds", report.at_threshold), ("at 0.5", report.at_half)]
    rows.append((f"top-{top_k}", report.top3))
    width = max(len(name) for name in (*labels.display_names, *(r[0] for r in rows), "class"))
    col = 8
    lines = [
        f"{report.num_samples} samples, {len(labels)} classes (values in %)",
        f"{'class':<{width}}{'AP':>{col}}{'thresh':>{col}}",
    ]
    lines.append("-" * len(lines[-1]))
    for name, ap, threshold in zip(labels.display_names, report.ap, report.thresholds, strict=True):
        lines.append(f"{name:<{width}}{_percent(ap):>{col}}{threshold:>{col}.3f}")
    lines.append(f"{'mAP':<{width}}{_percent(report.map):>{col}}")
    lines.append("")
    lines.append(f"{'':<{width}}" + "".join(f"{key:>{col}}" for key in METRIC_KEYS))
    lines.append("-" * len(lines[-1]))
    for title, values in rows:
        cells = "".join(f"{_percent(values[key]):>{col}}" for key in METRIC_KEYS)
        lines.append(f"{title:<{width}}{cells}")
    return "\n".join(lines)


def _save(figure: Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, format="png", bbox_inches="tight")
    return path


def plot_pr_curves(
    scores: np.ndarray, targets: np.ndarray, labels: LabelSet, path: str | Path
) -> Path:
    """Write one PNG with the precision-recall curve of every class.

    Curves are drawn as the steps whose area is the AP of :func:`mmsag_ros.metrics.
    average_precision`; the legend gives each class's display name and AP, the title the mAP.
    A class without positives has no curve and shows "AP n/a".

    Args:
        scores: (N, C) per-class scores (probabilities or logits).
        targets: (N, C) targets in {1, 0, -1}.
        labels: The label set, in the same class order.
        path: Where to write the PNG; parent folders are created.

    Returns:
        ``path`` as a Path.
    """
    import matplotlib  # lazy: plotting is optional for everything else
    from matplotlib.figure import Figure

    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 2 or scores.shape[1] != len(labels):
        raise ConfigError(
            f"scores of shape {scores.shape} do not fit the label set's {len(labels)} classes"
        )
    ap = average_precision(scores, targets)
    count = len(labels)
    colors = matplotlib.colormaps["tab10" if count <= 10 else "tab20"]
    figure = Figure(figsize=(9, 6), dpi=100)
    axes = figure.add_subplot()
    for c, name in enumerate(labels.display_names):
        style: dict[str, Any] = {
            "color": colors(c % colors.N),
            "linestyle": _LINE_STYLES[(c // colors.N) % len(_LINE_STYLES)],
        }
        if math.isnan(ap[c]):
            axes.plot([], [], label=f"{name} (AP n/a)", **style)
            continue
        precision, recall = pr_curve(scores[:, c], np.asarray(targets)[:, c])
        # Start at recall 0 with the first precision: the step area then equals AP.
        axes.step(
            np.r_[0.0, recall],
            np.r_[precision[0], precision],
            where="pre",
            label=f"{name} (AP {_percent(ap[c])})",
            **style,
        )
    mean_ap = math.nan if np.isnan(ap).all() else float(np.nanmean(ap))
    axes.set(xlim=(0.0, 1.0), ylim=(0.0, 1.02), xlabel="recall", ylabel="precision")
    axes.set_title(f"Precision-recall per class: mAP {_percent(mean_ap)} % ({len(scores)} images)")
    axes.grid(alpha=0.3)
    axes.legend(
        loc="center left",
        bbox_to_anchor=(1.01, 0.5),
        fontsize="small",
        ncol=1 + (count - 1) // 25,
    )
    return _save(figure, path)


def plot_latency_histogram(
    latencies_ms: Sequence[float] | np.ndarray, path: str | Path, *, title: str
) -> Path:
    """Write a PNG histogram of latencies with the p50, p95 and p99 marked.

    Args:
        latencies_ms: Per-frame (or per-call) latencies in milliseconds; finite, >= 0.
        path: Where to write the PNG; parent folders are created.
        title: Plot title (say what was timed, on which machine).

    Returns:
        ``path`` as a Path.
    """
    from matplotlib.figure import Figure  # lazy: plotting is optional for everything else

    values = np.asarray(latencies_ms, dtype=np.float64).reshape(-1)
    if values.size == 0:
        raise ConfigError("no latencies to plot: time at least one frame first")
    bad = int((~np.isfinite(values) | (values < 0)).sum())
    if bad:
        raise ConfigError(f"{bad} of {values.size} latencies are negative or not finite")
    figure = Figure(figsize=(8, 5), dpi=100)
    axes = figure.add_subplot()
    bins = int(min(60, max(10, math.sqrt(values.size))))
    axes.hist(values, bins=bins, color="tab:blue", alpha=0.75)
    marks = zip((50, 95, 99), np.percentile(values, (50, 95, 99)), ("-", "--", ":"), strict=True)
    for q, value, style in marks:
        axes.axvline(value, color="tab:red", linestyle=style, label=f"p{q} = {value:.2f} ms")
    axes.set(xlabel="latency (ms)", ylabel="count")
    axes.set_title(f"{title} (n = {values.size}, mean {values.mean():.2f} ms)")
    axes.grid(alpha=0.3)
    axes.legend()
    return _save(figure, path)


def write_pointing_report(
    report: PointingReport,
    examples: Sequence[tuple[Path, Any, np.ndarray, Sequence[np.ndarray], np.ndarray]],
    labels: LabelSet,
    out_dir: str | Path,
) -> str:
    """Write ``pointing.json`` and ``pointing_examples.png`` into ``out_dir``; return the table.

    ``examples`` are those of :func:`draw_pointing_examples`.
    """
    import json

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "pointing.json").write_text(json.dumps(report.to_dict(), indent=2) + "\n")
    draw_pointing_examples(examples, labels, out_dir / "pointing_examples.png")
    return report.format_table()


def draw_pointing_examples(
    examples: Sequence[tuple[Path, Any, np.ndarray, Sequence[np.ndarray], np.ndarray]],
    labels: LabelSet,
    path: str | Path,
    *,
    columns: int = 4,
) -> Path:
    """Write a PNG grid of images with their boxes and the model's attention peaks.

    Each example is ``(image path, annotation with boxes, C x 3 peaks, per-class instance
    peaks, per-class decisions)``, peaks in normalised coordinates. Boxes are outlined in their
    class's colour; for every class the model decided present, its peak is a large cross and
    its further instance peaks small circles, in the same colour, so a peak outside the box
    of its colour is a miss.
    """
    import cv2
    import matplotlib
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    if not examples:
        raise ConfigError("no examples to draw")
    colors = matplotlib.colormaps["tab10" if len(labels) <= 10 else "tab20"]
    rows = math.ceil(len(examples) / columns)
    figure = Figure(figsize=(3.2 * columns, 2.7 * rows + 0.6), dpi=100)
    for k, (image_path, annotation, peaks, instances, decisions) in enumerate(examples):
        axes = figure.add_subplot(rows, columns, k + 1)
        bgr = cv2.imread(str(image_path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise ConfigError(f"cannot read {image_path} to draw it")
        height, width = bgr.shape[:2]
        axes.imshow(bgr[..., ::-1])
        for box in annotation.boxes:
            xmin, ymin, xmax, ymax = box.box
            known = box.name in labels.names
            color = colors(labels.index(box.name) % colors.N) if known else "w"
            axes.add_patch(
                Rectangle(
                    (xmin - 1, ymin - 1), xmax - xmin + 1, ymax - ymin + 1,
                    fill=False, edgecolor=color, linewidth=1.5,
                    linestyle="--" if box.difficult else "-",
                )
            )  # fmt: skip
        shown = []
        for c in np.flatnonzero(decisions):
            color = colors(int(c) % colors.N)
            axes.plot(peaks[c, 0] * width, peaks[c, 1] * height, "x", color=color, ms=11, mew=3)
            extra = instances[c][1:]
            if len(extra):
                axes.plot(extra[:, 0] * width, extra[:, 1] * height, "o", color=color, ms=6)
            shown.append(labels.display_names[c])
        axes.set_title(", ".join(shown) or "(nothing decided)", fontsize=8)
        axes.set_axis_off()
    figure.suptitle(
        "Attention peaks (x: class peak, o: further instances) and boxes, same colour per class"
    )
    return _save(figure, path)
