"""Annotated splits and the torch datasets that read them.

Readers (VOC, COCO, CSV) turn annotation files into an :class:`AnnotatedSplit`: the label set
plus one :class:`Sample` (image path, target, id) per image. Nothing here touches pixels until
:class:`MultiLabelImageDataset` is indexed, so label statistics never need the images.

Augmentation randomness comes from a numpy Generator seeded by ``(seed, epoch, index)``: the
same image gets the same crop in a given epoch whichever DataLoader worker or DDP rank loads it,
and a rerun with the same seed replays the same augmentation.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
from torch.utils.data import Dataset

from mmsag_ros.bundle.labels import LabelSet
from mmsag_ros.errors import ConfigError, DatasetError

__all__ = [
    "AnnotatedSplit",
    "FakeMultiLabelDataset",
    "MultiLabelImageDataset",
    "Sample",
    "Transform",
    "box_masks",
    "check_images",
    "visible_targets",
]

Transform = Callable[[np.ndarray, np.random.Generator | None], np.ndarray]
"""RGB uint8 H x W x 3 image and an optional Generator -> float32 3 x S x S array."""

_TARGET_VALUES = (-1.0, 0.0, 1.0)
_MISSING_SHOWN = 5  # how many missing files an error message names


@dataclass(frozen=True, eq=False)
class Sample:
    """One annotated image.

    Attributes:
        image_path: Where the image file is (or is expected to be).
        target: float32 array of length C: 1 positive, 0 negative, -1 ignore.
        image_id: The dataset's own name for the image (VOC stem, COCO file name, CSV cell).
        boxes: The objects behind the positive labels, K x 5 float32 rows ``(label, x0, y0,
            x1, y1)`` with corners normalised to [0, 1] of the image; None when the dataset
            has no boxes for this image.
    """

    image_path: Path
    target: np.ndarray
    image_id: str
    boxes: np.ndarray | None = None


@dataclass(frozen=True, eq=False)
class AnnotatedSplit:
    """A label set and the annotated images of one split, as read from disk.

    Attributes:
        labels: Class names in target order.
        samples: One entry per image, in the reader's order.
        name: The split's name (``trainval``, ``test``, ``train-val`` ...).
        source: Where the annotations came from (a directory or file), for messages.
        image_root: The directory the images are expected under, for messages; None if the
            samples' paths do not share one.
    """

    labels: LabelSet
    samples: tuple[Sample, ...]
    name: str
    source: str
    image_root: Path | None = field(default=None)

    def __post_init__(self) -> None:
        for sample in self.samples:
            target = sample.target
            if target.shape != (len(self.labels),) or target.dtype != np.float32:
                raise DatasetError(
                    f"sample {sample.image_id!r} of {self.source} has a target of shape "
                    f"{target.shape} and dtype {target.dtype}; expected float32 of shape "
                    f"({len(self.labels)},)"
                )
            if not np.isin(target, _TARGET_VALUES).all():
                raise DatasetError(
                    f"sample {sample.image_id!r} of {self.source} has target values "
                    f"{sorted(set(target.tolist()))}; only 1, 0 and -1 (ignore) are allowed"
                )

    def __len__(self) -> int:
        return len(self.samples)

    def targets(self) -> np.ndarray:
        """All targets as an N x C float32 array (1 positive, 0 negative, -1 ignore)."""
        if not self.samples:
            return np.zeros((0, len(self.labels)), np.float32)
        return np.stack([sample.target for sample in self.samples])

    def subset(self, indices: Sequence[int], *, name: str) -> AnnotatedSplit:
        """A new split holding the samples at ``indices`` (in that order)."""
        samples = tuple(self.samples[i] for i in indices)
        return AnnotatedSplit(self.labels, samples, name, self.source, self.image_root)


def visible_targets(
    target: np.ndarray, boxes: np.ndarray, visible: np.ndarray, *, keep: float
) -> np.ndarray:
    """The target of an augmented view, from what its crop left of each object.

    A positive class with boxes stays positive while one of its objects shows at least
    ``keep`` of its area, is ignored (-1) when only a sliver is left, and becomes negative
    when none of it is in view. Classes without boxes keep their value.
    """
    out = target.copy()
    labels = boxes[:, 0].astype(np.int64)
    for c in np.flatnonzero(target == 1.0):
        shown = visible[labels == c]
        if shown.size:
            best = float(shown.max())
            out[c] = 1.0 if best >= keep else 0.0 if best <= 0.0 else -1.0
    return out


def box_masks(boxes: np.ndarray, num_labels: int, grid: int) -> np.ndarray:
    """Where each class's objects lie on a ``grid`` x ``grid`` map: C x g x g float32 of 0/1.

    A cell belongs to a box when its centre lies inside it; a box too small to hold a cell
    centre still marks the cell holding its own centre. Classes without boxes are all zero.
    """
    masks = np.zeros((num_labels, grid, grid), np.float32)
    centres = (np.arange(grid, dtype=np.float32) + 0.5) / grid
    for label, x0, y0, x1, y1 in boxes:
        if x1 <= x0 or y1 <= y0:
            continue  # cropped away
        rows = (centres >= y0) & (centres <= y1)
        cols = (centres >= x0) & (centres <= x1)
        masks[int(label)][np.ix_(rows, cols)] = 1.0
        row = min(int((y0 + y1) / 2 * grid), grid - 1)
        col = min(int((x0 + x1) / 2 * grid), grid - 1)
        masks[int(label), row, col] = 1.0
    return masks


def _expected_root(split: AnnotatedSplit) -> Path:
    if split.image_root is not None:
        return split.image_root
    return split.samples[0].image_path.parent if split.samples else Path(split.source)


def check_images(split: AnnotatedSplit) -> None:
    """Check that every image file of ``split`` exists, before any training starts.

    Raises:
        DatasetError: Naming how many images are missing, the first few, and where they were
            expected (annotation-only downloads such as TACO's ship no images).
    """
    missing = [s.image_path for s in split.samples if not s.image_path.is_file()]
    if not missing:
        return
    root = _expected_root(split)
    shown = ", ".join(str(p) for p in missing[:_MISSING_SHOWN])
    more = f" and {len(missing) - _MISSING_SHOWN} more" if len(missing) > _MISSING_SHOWN else ""
    raise DatasetError(
        f"images are missing: {len(missing)} of {len(split.samples)} image files of split "
        f"{split.name!r} ({split.source}) do not exist, e.g. {shown}{more}. They were expected "
        f"under {root}; put the images there (annotation-only downloads such as TACO need the "
        f"images fetched separately) or point the image root at where they are."
    )


def _read_rgb(path: Path, split: AnnotatedSplit) -> np.ndarray:
    """Read an image file as RGB uint8; DatasetError naming the file and the dataset root."""
    if not path.is_file():
        raise DatasetError(
            f"image {path} is missing (dataset {split.source}, images expected under "
            f"{_expected_root(split)}); put the images there or fix the image root"
        )
    # imdecode of the raw bytes also handles paths that cv2.imread cannot open (non-ASCII).
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as err:
        raise DatasetError(f"image {path} cannot be read (dataset {split.source}): {err}") from err
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if image is None:
        raise DatasetError(
            f"image {path} cannot be decoded (dataset {split.source}); the file is empty, "
            f"truncated or not an image: replace it or drop it from the annotations"
        )
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


class MultiLabelImageDataset(Dataset):
    """Map-style dataset over an :class:`AnnotatedSplit`.

    Items are ``(image, target, index)``: the transformed float32 3 x S x S image, the float32
    target of length C (with -1 for ignored entries) and the sample's index, which metrics use
    to count every image exactly once under DDP.
    """

    def __init__(
        self,
        split: AnnotatedSplit,
        transform: Transform,
        *,
        seed: int = 0,
        check_files: bool = True,
        box_keep: float | None = None,
        box_grid: int | None = None,
    ) -> None:
        """Wrap ``split``; with ``check_files`` every image must exist now, not mid-epoch.

        With ``box_keep`` (a fraction in (0, 1]) the targets of samples with boxes follow
        the transform's crop (:func:`visible_targets`); the transform needs an ``apply``.
        With ``box_grid`` every item carries a fourth part, the :func:`box_masks` of the
        view on that grid (all zero for a sample without boxes).
        """
        if check_files:
            check_images(split)
        if box_keep is not None and not 0.0 < box_keep <= 1.0:
            raise ConfigError(
                "augment.box_keep (the visible share that keeps a label) must lie in (0, 1], "
                f"got {box_keep}"
            )
        self.split = split
        self.labels = split.labels
        self.transform = transform
        self.seed = int(seed)
        self.epoch = 0
        self.box_keep = box_keep
        self.box_grid = box_grid

    def set_epoch(self, epoch: int) -> None:
        """Select the augmentation stream of ``epoch`` (call before each epoch)."""
        self.epoch = int(epoch)

    def rng(self, index: int) -> np.random.Generator:
        """The augmentation Generator of item ``index`` in the current epoch."""
        return np.random.default_rng([self.seed, self.epoch, int(index)])

    def targets(self) -> np.ndarray:
        """All targets as an N x C float32 array."""
        return self.split.targets()

    def __len__(self) -> int:
        return len(self.split.samples)

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray, int]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} samples")
        index = index % len(self)
        sample = self.split.samples[index]
        image = _read_rgb(sample.image_path, self.split)
        uses_boxes = self.box_keep is not None or self.box_grid is not None
        if sample.boxes is None or not uses_boxes:
            view, target = self.transform(image, self.rng(index)), sample.target.copy()
            boxes = np.zeros((0, 5), np.float32)
        elif self.box_keep is None:
            view, boxes, _ = self.transform.apply(image, self.rng(index), sample.boxes)
            target = sample.target.copy()
        else:
            view, boxes, visible = self.transform.apply(image, self.rng(index), sample.boxes)
            target = visible_targets(sample.target, boxes, visible, keep=self.box_keep)
            # An object whose label the crop dropped points nowhere.
            boxes = boxes[visible >= self.box_keep]
        if self.box_grid is None:
            return view, target, index
        return view, target, index, box_masks(boxes, len(self.labels), self.box_grid)


class FakeMultiLabelDataset(Dataset):
    """Deterministic random images and multi-hot targets for ``--dummy`` runs and tests.

    Each positive class adds its own fixed low-frequency colour pattern to the noise, so a
    model can actually learn the labels: a smoke run shows the loss falling.
    """

    def __init__(
        self,
        num_samples: int,
        labels: LabelSet,
        input_size: int,
        *,
        seed: int = 0,
        positive_rate: float = 0.3,
    ) -> None:
        """Describe ``num_samples`` fake images of ``input_size`` pixels with ``labels``."""
        if num_samples < 1:
            raise ConfigError(f"num_samples must be at least 1, got {num_samples}")
        if input_size < 1:
            raise ConfigError(f"input_size must be positive, got {input_size} pixels")
        if not 0.0 < positive_rate < 1.0:
            raise ConfigError(f"positive_rate must be in (0, 1), got {positive_rate}")
        self.num_samples = int(num_samples)
        self.labels = labels
        self.input_size = int(input_size)
        self.seed = int(seed)
        self.positive_rate = float(positive_rate)
        self.epoch = 0
        pattern_rng = np.random.default_rng([self.seed, 0x5EED])
        self._patterns = pattern_rng.normal(0.0, 1.0, (len(labels), 4, 4, 3)).astype(np.float32)

    def set_epoch(self, epoch: int) -> None:
        """Accepted for interface parity; fake items do not change between epochs."""
        self.epoch = int(epoch)

    def _target(self, index: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, 1, index])
        positive = rng.random(len(self.labels)) < self.positive_rate
        if not positive.any():
            positive[rng.integers(len(self.labels))] = True
        return positive.astype(np.float32)

    def targets(self) -> np.ndarray:
        """All targets as an N x C float32 array (every image has at least one positive)."""
        return np.stack([self._target(i) for i in range(self.num_samples)])

    def __len__(self) -> int:
        return self.num_samples

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray, int]:
        if not -self.num_samples <= index < self.num_samples:
            raise IndexError(f"index {index} out of range for {self.num_samples} samples")
        index = index % self.num_samples
        target = self._target(index)
        size = self.input_size
        signal = np.tensordot(target, self._patterns, axes=1)  # 4 x 4 x 3
        signal = cv2.resize(signal, (size, size), interpolation=cv2.INTER_LINEAR)
        noise = np.random.default_rng([self.seed, 2, index]).normal(0.0, 1.0, (3, size, size))
        image = (noise + signal.reshape(size, size, 3).transpose(2, 0, 1)).astype(np.float32)
        return image, target, index
