"""Attention peaks as points on the frame, and scored as locations against boxes.

The node publishes each class's peak (:func:`attention_peaks`) in ``MultiLabel.peaks`` and one
point per object of a class (:func:`instance_peaks`) in ``MultiLabel.instances``. When a
dataset has boxes, the peaks are checked against them:

* **Pointing accuracy** (the "pointing game"): for every class present in an image (at least
  one non-difficult box), a hit when the class's attention peak lies inside one of that
  class's boxes. Per class and overall (hits over present classes, all images pooled).
* **Instances**: a class's instance peaks (local maxima of its map, :func:`instance_peaks`)
  are matched greedily, strongest first, each to an unmatched box of the class that contains
  it. Instance recall is matched
  boxes over non-difficult boxes; precision is matched peaks over peaks. Both are reported for
  all present classes and for the pairs (image, class) with two or more boxes, the case of a
  controller that must pick two bottles.

Peaks are cell centres of the attention grid (7 x 7 at 224 px for the EfficientNet models), so
a small object may hold no cell centre: the scores are bounded by the map's resolution.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from mmsag_ros.bundle.preprocess import PreprocessSpec, input_to_source
from mmsag_ros.errors import ConfigError

if TYPE_CHECKING:
    from mmsag_ros.data.voc import VocAnnotation

__all__ = [
    "PointingMeter",
    "PointingReport",
    "attention_peaks",
    "check_instance_options",
    "instance_peaks",
]


def attention_peaks(
    attention: np.ndarray,
    *,
    source_size: tuple[int, int],
    spec: PreprocessSpec,
) -> np.ndarray:
    """Where each class's attention map peaks, in normalised source-image coordinates.

    Args:
        attention: C x h x w maps of one image (each a softmax over its h * w positions).
        source_size: (width, height) of the frame the input was made from, in pixels.
        spec: The preprocessing that made the model input; under ``letterbox`` the padding
            is undone, so coordinates refer to the original frame.

    Returns:
        C x 3 float32 rows ``(x, y, strength)``: x and y in [0, 1] (origin top-left) are the
        centre of the strongest cell, strength is the attention mass in that cell.
    """
    maps = np.asarray(attention)
    if maps.ndim != 3 or 0 in maps.shape:
        raise ValueError(f"attention must be C x h x w, got shape {maps.shape}")
    num_classes, grid_h, grid_w = maps.shape
    flat = maps.reshape(num_classes, grid_h * grid_w)
    best = flat.argmax(axis=1)
    rows, cols = np.divmod(best, grid_w)
    width, height = source_size
    peaks = np.empty((num_classes, 3), np.float32)
    for c in range(num_classes):
        # Each cell covers an equal share of the square model input: take its centre.
        x, y = input_to_source(
            (cols[c] + 0.5) / grid_w, (rows[c] + 0.5) / grid_h, width, height, spec
        )
        peaks[c] = (x, y, flat[c, best[c]])
    return peaks


def _local_maxima(grid: np.ndarray) -> np.ndarray:
    """Boolean mask of the 8-neighbourhood maxima of a 2-D grid (one cell per plateau).

    A cell is a maximum when no neighbour is larger and no neighbour before it in raster
    order is equal, so a flat top counts once, at its first cell (where ``argmax`` lands).
    """
    padded = np.pad(grid, 1, constant_values=-np.inf)
    height, width = grid.shape
    peak = np.ones(grid.shape, bool)
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            if dy == dx == 0:
                continue
            neighbour = padded[1 + dy : 1 + dy + height, 1 + dx : 1 + dx + width]
            earlier = dy < 0 or (dy == 0 and dx < 0)
            peak &= grid > neighbour if earlier else grid >= neighbour
    return peak


def check_instance_options(max_peaks: int, min_relative: float) -> None:
    """Validate instance-peak options (``max_peaks`` 0 means none are wanted).

    Raises:
        ConfigError: ``max_peaks`` is not a non-negative integer, or ``min_relative`` lies
            outside (0, 1].
    """
    if isinstance(max_peaks, bool) or not isinstance(max_peaks, int) or max_peaks < 0:
        raise ConfigError(f"max_instances must be an integer >= 0, got {max_peaks!r}")
    if not 0 < min_relative <= 1:
        raise ConfigError(f"instance_min_relative must lie in (0, 1], got {min_relative}")


def instance_peaks(
    attention: np.ndarray,
    *,
    source_size: tuple[int, int],
    spec: PreprocessSpec,
    min_relative: float = 0.3,
    max_peaks: int = 4,
) -> list[np.ndarray]:
    """The local maxima of each class's attention map: one point per object it attends to.

    Args:
        attention: C x h x w maps of one image.
        source_size: (width, height) of the source frame in pixels.
        spec: The preprocessing that made the model input.
        min_relative: Keep maxima whose cell mass is at least this fraction of the map's
            strongest cell, in (0, 1].
        max_peaks: At most this many per class, strongest first.

    Returns:
        Per class a k x 3 float32 array of ``(x, y, strength)`` rows as in
        :func:`attention_peaks`, strongest first; its first row is that function's peak.

    Raises:
        ConfigError: ``min_relative`` outside (0, 1] or ``max_peaks`` below 1.
    """
    check_instance_options(max_peaks, min_relative)
    if max_peaks < 1:
        raise ConfigError(f"max_peaks must be at least 1, got {max_peaks}")
    maps = np.asarray(attention, dtype=np.float32)
    if maps.ndim != 3 or 0 in maps.shape:
        raise ValueError(f"attention must be C x h x w, got shape {maps.shape}")
    _, grid_h, grid_w = maps.shape
    width, height = source_size
    result = []
    for grid in maps:
        rows, cols = np.nonzero(_local_maxima(grid) & (grid >= min_relative * grid.max()))
        order = np.lexsort((cols, rows, -grid[rows, cols]))[:max_peaks]  # strongest, then raster
        peaks = np.empty((len(order), 3), np.float32)
        for k, index in enumerate(order):
            x, y = input_to_source(
                (cols[index] + 0.5) / grid_w, (rows[index] + 0.5) / grid_h, width, height, spec
            )
            peaks[k] = (x, y, grid[rows[index], cols[index]])
        result.append(peaks)
    return result


@dataclass(frozen=True)
class PointingReport:
    """Localisation scores of one split.

    Attributes:
        classes: Class names, in label order.
        hits: Per class, present classes whose peak lies in one of their boxes.
        present: Per class, images where the class is present.
        instance_boxes: Non-difficult boxes, per class.
        instance_found: Of those, boxes matched by an instance peak (one peak each), per class.
        instance_peaks: Instance peaks of present classes, per class.
        multi_pairs: (image, class) pairs with two or more non-difficult boxes.
        multi_boxes: Boxes in those pairs.
        multi_found: Of those, boxes matched by an instance peak.
        multi_peaks: Instance peaks in those pairs.
        images: Images scored.
    """

    classes: tuple[str, ...]
    hits: tuple[int, ...]
    present: tuple[int, ...]
    instance_boxes: tuple[int, ...]
    instance_found: tuple[int, ...]
    instance_peaks: tuple[int, ...]
    multi_pairs: int
    multi_boxes: int
    multi_found: int
    multi_peaks: int
    images: int

    @staticmethod
    def _ratio(num: int, den: int) -> float:
        return num / den if den else float("nan")

    @property
    def accuracy(self) -> float:
        """Pointing accuracy over all present classes of all images (NaN if none)."""
        return self._ratio(sum(self.hits), sum(self.present))

    def class_accuracy(self, index: int) -> float:
        """Pointing accuracy of one class (NaN where it is never present)."""
        return self._ratio(self.hits[index], self.present[index])

    @property
    def instance_recall(self) -> float:
        """Boxes found by an instance peak over boxes."""
        return self._ratio(sum(self.instance_found), sum(self.instance_boxes))

    @property
    def instance_precision(self) -> float:
        """Instance peaks that found a box over instance peaks."""
        return self._ratio(sum(self.instance_found), sum(self.instance_peaks))

    @property
    def multi_recall(self) -> float:
        """Instance recall where a class has two or more objects."""
        return self._ratio(self.multi_found, self.multi_boxes)

    @property
    def multi_precision(self) -> float:
        """Instance precision where a class has two or more objects."""
        return self._ratio(self.multi_found, self.multi_peaks)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready counts and the derived scores (NaN as None)."""

        def clean(value: float) -> float | None:
            return None if np.isnan(value) else round(value, 6)

        return {
            **{k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()},
            "accuracy": clean(self.accuracy),
            "class_accuracy": {
                name: clean(self.class_accuracy(i)) for i, name in enumerate(self.classes)
            },
            "instance_recall": clean(self.instance_recall),
            "instance_precision": clean(self.instance_precision),
            "multi_recall": clean(self.multi_recall),
            "multi_precision": clean(self.multi_precision),
        }

    def format_table(self) -> str:
        """Per-class pointing accuracy and the instance scores, for a terminal."""

        def pct(value: float) -> str:
            return "   -" if np.isnan(value) else f"{100 * value:5.1f}"

        lines = [
            f"pointing accuracy (attention peak inside a box of its class), {self.images} images"
        ]
        lines.append(f"  {'class':<14} {'present':>7} {'hit %':>6}")
        for i, name in enumerate(self.classes):
            lines.append(f"  {name:<14} {self.present[i]:>7} {pct(self.class_accuracy(i)):>6}")
        lines.append(f"  {'all':<14} {sum(self.present):>7} {pct(self.accuracy):>6}")
        lines.append(
            f"instances: recall {pct(self.instance_recall)}%  precision "
            f"{pct(self.instance_precision)}% over {sum(self.instance_boxes)} boxes; "
            f"classes with 2+ objects ({self.multi_pairs} cases, {self.multi_boxes} boxes): "
            f"recall {pct(self.multi_recall)}%  precision {pct(self.multi_precision)}%"
        )
        return "\n".join(lines)


class PointingMeter:
    """Accumulates pointing and instance counts image by image."""

    def __init__(self, classes: Sequence[str]) -> None:
        self.classes = tuple(classes)
        size = len(self.classes)
        self._counts = {
            key: np.zeros(size, np.int64) for key in ("hits", "present", "boxes", "found", "peaks")
        }
        self._multi = dict.fromkeys(("pairs", "boxes", "found", "peaks"), 0)
        self.images = 0

    def update(
        self,
        annotation: VocAnnotation,
        peaks: np.ndarray,
        instances: Sequence[np.ndarray],
    ) -> None:
        """Score one image.

        Args:
            annotation: Its boxes and size.
            peaks: C x 3 ``(x, y, strength)`` rows in normalised coordinates
                (:func:`attention_peaks`).
            instances: Per class, k x 3 instance peaks in the same coordinates
                (:func:`instance_peaks`).
        """
        scale = np.array([annotation.width, annotation.height], np.float64)
        counts = self._counts
        for c, name in enumerate(self.classes):
            boxes = [b for b in annotation.boxes if b.name == name]
            wanted = [b for b in boxes if not b.difficult]
            if not wanted:
                continue
            x, y = np.asarray(peaks[c, :2], np.float64) * scale
            counts["present"][c] += 1
            counts["hits"][c] += any(b.contains(x, y) for b in boxes)
            unmatched = list(wanted)
            matched = 0
            for point in instances[c]:
                px, py = np.asarray(point[:2], np.float64) * scale
                box = next((b for b in unmatched if b.contains(px, py)), None)
                if box is not None:
                    unmatched.remove(box)
                    matched += 1
            counts["boxes"][c] += len(wanted)
            counts["found"][c] += matched
            counts["peaks"][c] += len(instances[c])
            if len(wanted) >= 2:
                self._multi["pairs"] += 1
                self._multi["boxes"] += len(wanted)
                self._multi["found"] += matched
                self._multi["peaks"] += len(instances[c])
        self.images += 1

    def compute(self) -> PointingReport:
        """The report of every image seen so far."""
        counts = {k: tuple(int(v) for v in a) for k, a in self._counts.items()}
        return PointingReport(
            classes=self.classes,
            hits=counts["hits"],
            present=counts["present"],
            instance_boxes=counts["boxes"],
            instance_found=counts["found"],
            instance_peaks=counts["peaks"],
            multi_pairs=self._multi["pairs"],
            multi_boxes=self._multi["boxes"],
            multi_found=self._multi["found"],
            multi_peaks=self._multi["peaks"],
            images=self.images,
        )
