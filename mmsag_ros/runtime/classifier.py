"""The Classifier facade: frames in, per-class scores, decisions and attention peaks out.

One object holds the bundle, one loaded backend and a preallocated input buffer. Frames go
through the shared :func:`~mmsag_ros.bundle.preprocess.preprocess` straight into their slot
of that buffer, the backend runs the batch, and :mod:`~mmsag_ros.runtime.postprocess` turns
logits into scores and decisions, so every backend yields the same kind of result.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import numpy as np

from mmsag_ros.bundle.preprocess import preprocess
from mmsag_ros.errors import BackendUnavailableError, ConfigError, ImageConversionError
from mmsag_ros.pointing import attention_peaks, check_instance_options, instance_peaks
from mmsag_ros.runtime.backends import BACKEND_KINDS, InferenceBackend, create_backend
from mmsag_ros.runtime.postprocess import check_thresholds, decide, sigmoid

if TYPE_CHECKING:
    from mmsag_ros.bundle.schema import Bundle

__all__ = ["Classifier", "Prediction", "StageTimings", "candidate_backends"]

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StageTimings:
    """Wall time of each stage for the batch a prediction belonged to, in milliseconds."""

    batch_size: int
    preprocess_ms: float
    inference_ms: float
    postprocess_ms: float

    @property
    def total_ms(self) -> float:
        """Sum of the three stages."""
        return self.preprocess_ms + self.inference_ms + self.postprocess_ms


@dataclass(frozen=True)
class Prediction:
    """The classifier's answer for one frame (arrays are read-only, in label order).

    Attributes:
        scores: C sigmoid scores in [0, 1], float32.
        decisions: C booleans, ``scores >= thresholds``.
        thresholds: The C thresholds the decisions used.
        peaks: C x 3 ``(x, y, strength)`` attention peaks in normalised source coordinates,
            or None when the bundle has no attention output.
        instances: Per class a k x 3 array of instance peaks, strongest first
            (:func:`~mmsag_ros.pointing.instance_peaks`), or None when there are no peaks
            or ``max_instances`` is 0.
        source_size: (width, height) of the frame in pixels.
        timings: Stage timings of the batch this frame was processed in.
        attention: The raw C x h x w attention maps (each a softmax over positions, in
            model-input coordinates) when peaks were computed, else None; map them back to
            the frame with :func:`mmsag_ros.runtime.overlay.attention_heat_map`.
    """

    scores: np.ndarray
    decisions: np.ndarray
    thresholds: np.ndarray
    peaks: np.ndarray | None
    source_size: tuple[int, int]
    timings: StageTimings
    attention: np.ndarray | None = None
    instances: tuple[np.ndarray, ...] | None = None


def candidate_backends(backend: str, device: str) -> list[tuple[str, str]]:
    """The (kind, device) pairs to try, in order, for a backend and device request.

    ``auto`` means TensorRT, then ONNX Runtime, then torch; device ``auto`` tries CUDA before
    the CPU for each. An explicit device is never swapped for another one.
    """
    if backend != "auto" and backend not in BACKEND_KINDS:
        raise ConfigError(
            f"unknown backend {backend!r}; use auto or one of {', '.join(BACKEND_KINDS)}"
        )
    kinds = list(BACKEND_KINDS) if backend == "auto" else [backend]
    devices = ["cuda", "cpu"] if device == "auto" else [device]
    pairs = [(kind, dev) for kind in kinds for dev in devices]
    # TensorRT has no CPU path: drop that pair instead of reporting a pointless failure.
    return [(k, d) for k, d in pairs if not (k == "tensorrt" and d == "cpu")] or pairs


def _open_bundle(bundle: Path | str | Bundle) -> Bundle:
    if isinstance(bundle, (str, Path)):
        from mmsag_ros.bundle.manifest import load_bundle

        return load_bundle(Path(bundle))
    return bundle


class Classifier:
    """Batched multi-label classification of camera frames with one bundle and one backend.

    Args:
        bundle: A bundle directory or an already loaded :class:`Bundle`.
        backend: ``auto``, ``tensorrt``, ``onnxruntime`` or ``torch``.
        device: ``cpu``, ``cuda``, ``cuda:N`` or ``auto`` (a GPU when one works, else the CPU).
        precision: The bundle variant to run: ``fp32``, ``fp16`` or ``int8``. Predictions
            carry :attr:`model_id`, which names a reduced precision (``<model id>/int8``).
        max_batch: Frames per inference call; larger inputs are split.
        thresholds: Per-class decision thresholds overriding the bundle's.
        backend_options: Per-kind keyword options, e.g.
            ``{"onnxruntime": {"intra_op_threads": 2}, "tensorrt": {"cache_dir": "/var/cache"}}``.
        peaks: Compute attention peaks when the bundle has attention maps.
        max_instances: Instance peaks per class (local maxima of its attention map); 0
            computes none.
        instance_min_relative: An instance peak's least mass, as a fraction of its map's
            strongest cell, in (0, 1].

    Raises:
        BackendUnavailableError: No requested backend can run here (the message lists why each
            candidate failed).
        ConfigError: Unknown backend or device, bad thresholds or max_batch.
        BundleError: The bundle has no ONNX variant of ``precision`` (the message says why;
            the torch backend casts its own module and needs none).

    Not thread-safe: the input buffer is shared by all calls.
    """

    def __init__(
        self,
        bundle: Path | str | Bundle,
        *,
        backend: str = "auto",
        device: str = "cpu",
        precision: str = "fp32",
        max_batch: int = 8,
        thresholds: Sequence[float] | np.ndarray | None = None,
        backend_options: Mapping[str, Mapping[str, Any]] | None = None,
        peaks: bool = True,
        max_instances: int = 4,
        instance_min_relative: float = 0.3,
    ) -> None:
        if isinstance(max_batch, bool) or not isinstance(max_batch, int) or max_batch < 1:
            raise ConfigError(f"max_batch must be a positive integer, got {max_batch!r}")
        check_instance_options(max_instances, instance_min_relative)
        self.bundle = _open_bundle(bundle)
        self.labels = self.bundle.labels
        self.spec = self.bundle.spec
        if backend != "torch":  # torch casts its module; the others run the variant's file
            self.bundle.variant(precision)  # a missing variant fails here, with the reason
        self.precision = precision
        self.model_id = self.bundle.run_id(precision)
        self.max_batch = max_batch
        self.compute_peaks = peaks
        self.max_instances = max_instances
        self.instance_min_relative = instance_min_relative
        self._thresholds = self._validated(thresholds)
        size = self.spec.input_size
        self._buffer = np.zeros((max_batch, 3, size, size), np.float32)
        self.backend, self.backend_reason = self._select(backend, device, backend_options or {})
        _log.info("classifier %s on %s: %s", self.model_id, self.backend.name, self.backend_reason)

    def _validated(self, thresholds: Sequence[float] | np.ndarray | None) -> np.ndarray:
        values = self.bundle.thresholds if thresholds is None else thresholds
        checked = check_thresholds(values, len(self.labels))
        checked.setflags(write=False)
        return checked

    def _select(
        self, backend: str, device: str, options: Mapping[str, Mapping[str, Any]]
    ) -> tuple[InferenceBackend, str]:
        skipped: list[str] = []
        candidates = candidate_backends(backend, device)
        for kind, dev in candidates:
            kind_options = dict(options.get(kind, {}))
            if kind == "tensorrt":  # the engine's batch profile must cover our batches
                kind_options.setdefault("max_batch", self.max_batch)
            candidate = create_backend(
                kind, self.bundle, device=dev, precision=self.precision, **kind_options
            )
            try:
                candidate.load()
            except BackendUnavailableError as err:
                if len(candidates) == 1:
                    raise
                skipped.append(f"{candidate.name}: {err}")
                continue
            if backend != "auto" and device != "auto":
                return candidate, "requested explicitly"
            why = f"{backend} backend, {device} device: first that loads"
            if skipped:
                why += "; skipped " + "; ".join(skipped)
            return candidate, why
        raise BackendUnavailableError(
            f"no backend can run {self.model_id} (backend={backend!r}, device={device!r}): "
            + "; ".join(skipped)
        )

    @property
    def thresholds(self) -> np.ndarray:
        """The per-class thresholds in use (read-only array)."""
        return self._thresholds

    def set_thresholds(self, thresholds: Sequence[float] | np.ndarray | None) -> None:
        """Replace the thresholds at run time; None restores the bundle's.

        Raises:
            ConfigError: Not one value in [0, 1] per class (the old thresholds stay).
        """
        self._thresholds = self._validated(thresholds)

    def warmup(self, batch_size: int = 1) -> None:
        """Run the backend on zero batches so the first real frame is not slow."""
        self.backend.warmup(min(batch_size, self.max_batch))

    def classify_one(self, image: np.ndarray, color_order: str = "rgb") -> Prediction:
        """Classify one H x W (x C) uint8 frame in the given colour order."""
        return self.classify([image], color_orders=color_order)[0]

    def classify(
        self,
        images: Sequence[np.ndarray],
        *,
        color_orders: str | Sequence[str] = "rgb",
    ) -> list[Prediction]:
        """Classify frames in batches of at most ``max_batch``.

        Args:
            images: uint8 frames (any sizes, each H x W or H x W x C).
            color_orders: One colour order for all frames, or one per frame
                (``rgb``, ``bgr``, ``rgba``, ``bgra``, ``mono``).

        Raises:
            ImageConversionError: A frame with the wrong dtype, shape or colour order; the
                message names its index in ``images``. No prediction is returned for a call
                with a bad frame, so classify frames from independent sources one by one (or
                check them first) where one bad frame must not cost the others.
        """
        images = list(images)
        if isinstance(color_orders, str):
            orders = [color_orders] * len(images)
        else:
            orders = list(color_orders)
            if len(orders) != len(images):
                raise ImageConversionError(
                    f"{len(orders)} colour orders for {len(images)} images; give one per image "
                    "or a single string"
                )
        predictions: list[Prediction] = []
        for start in range(0, len(images), self.max_batch):
            stop = start + self.max_batch
            predictions += self._run_batch(images[start:stop], orders[start:stop], start)
        return predictions

    def classify_each(
        self, images: Sequence[np.ndarray], *, color_orders: str | Sequence[str] = "rgb"
    ) -> list[Prediction | ImageConversionError]:
        """Like :meth:`classify`, but a frame that preprocessing refuses costs only itself.

        The frames go as batches first; if one is refused, each frame is classified alone and
        a refused one gets its ImageConversionError in its place in the result.

        Raises:
            ImageConversionError: A list of colour orders of another length than ``images``.
        """
        images = list(images)
        try:
            return list(self.classify(images, color_orders=color_orders))
        except ImageConversionError:
            if not isinstance(color_orders, str) and len(color_orders) != len(images):
                raise
        orders = [color_orders] * len(images) if isinstance(color_orders, str) else color_orders
        results: list[Prediction | ImageConversionError] = []
        for image, order in zip(images, orders, strict=True):
            try:
                results.append(self.classify_one(image, order))
            except ImageConversionError as err:
                results.append(err)
        return results

    def _run_batch(
        self, images: list[np.ndarray], orders: list[str], offset: int
    ) -> list[Prediction]:
        count = len(images)
        started = time.perf_counter()
        sizes = []
        for slot, (image, order) in enumerate(zip(images, orders, strict=True)):
            _check_image(image, offset + slot)
            try:
                preprocess(image, self.spec, color_order=order, out=self._buffer[slot])
            except ImageConversionError as err:
                raise ImageConversionError(f"image {offset + slot}: {err}", kind=err.kind) from err
            sizes.append((int(image.shape[1]), int(image.shape[0])))
        preprocessed = time.perf_counter()
        outputs = self.backend.infer(self._buffer[:count])
        inferred = time.perf_counter()
        scores = sigmoid(outputs["logits"])
        decisions = decide(scores, self._thresholds)
        attention = outputs.get("attention") if self.compute_peaks else None
        peaks = [
            None
            if attention is None
            else attention_peaks(attention[i], source_size=sizes[i], spec=self.spec)
            for i in range(count)
        ]
        instances = [
            None
            if attention is None or not self.max_instances
            else instance_peaks(
                attention[i],
                source_size=sizes[i],
                spec=self.spec,
                min_relative=self.instance_min_relative,
                max_peaks=self.max_instances,
            )
            for i in range(count)
        ]
        finished = time.perf_counter()
        timings = StageTimings(
            batch_size=count,
            preprocess_ms=1000.0 * (preprocessed - started),
            inference_ms=1000.0 * (inferred - preprocessed),
            postprocess_ms=1000.0 * (finished - inferred),
        )
        return [
            Prediction(
                scores=_frozen(scores[i]),
                decisions=_frozen(decisions[i]),
                thresholds=self._thresholds,
                peaks=None if peaks[i] is None else _frozen(peaks[i]),
                source_size=sizes[i],
                timings=timings,
                attention=None if attention is None else _frozen(attention[i]),
                instances=None
                if instances[i] is None
                else tuple(_frozen(points) for points in instances[i]),
            )
            for i in range(count)
        ]

    def close(self) -> None:
        """Release the backend."""
        self.backend.close()

    def __enter__(self) -> Classifier:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Classifier {self.model_id} on {self.backend.name}>"


def _frozen(values: np.ndarray) -> np.ndarray:
    array = np.array(values)
    array.setflags(write=False)
    return array


def _check_image(image: object, index: int) -> None:
    # Checked before preprocess: OpenCV would otherwise fail on these with its own errors.
    if not isinstance(image, np.ndarray):
        raise ImageConversionError(
            f"image {index} is a {type(image).__name__}, expected a numpy uint8 array",
            kind="layout",
        )
    if image.dtype != np.uint8:
        raise ImageConversionError(
            f"image {index} has dtype {image.dtype}; expected uint8 (convert 16-bit or float "
            "frames to 8 bits first)",
            kind="layout",
        )
    if image.ndim not in (2, 3) or image.shape[0] == 0 or image.shape[1] == 0:
        raise ImageConversionError(
            f"image {index} has shape {image.shape}; expected H x W or H x W x C with H, W > 0",
            kind="layout",
        )
