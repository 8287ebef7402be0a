"""The sorter node's parameters as one validated, frozen record, the home of every default.

``config/sorter.yaml`` repeats the defaults to document them (a test holds them equal); the
declarations rclpy sees (descriptors, ranges) are :mod:`~mmsag_ros.ros.declarations`'.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
from rclpy.expand_topic_name import expand_topic_name
from rclpy.validate_full_topic_name import validate_full_topic_name

from mmsag_ros.bundle.schema import PRECISIONS
from mmsag_ros.camera.decode import DEFAULT_MAX_INPUT_PIXELS
from mmsag_ros.errors import ConfigError
from mmsag_ros.pointing import check_instance_options
from mmsag_ros.ros.capture import CaptureRules, FrameCapture
from mmsag_ros.ros.qos import RELIABILITY_CHOICES
from mmsag_ros.runtime.drift import check_drift_options
from mmsag_ros.runtime.postprocess import check_thresholds

__all__ = [
    "DEBUG_IMAGE_FORMATS",
    "DYNAMIC_PARAMETERS",
    "INPUT_TYPES",
    "SorterParams",
    "backend_options",
    "resolve_thresholds",
]

INPUT_TYPES = ("image", "compressed")
DEBUG_IMAGE_FORMATS = ("raw", "jpeg")
# Applied at once while the node runs; every other change waits for the next configure.
DYNAMIC_PARAMETERS = frozenset({"threshold", "class_thresholds", "max_rate_hz"})


@dataclass(frozen=True)
class SorterParams:
    """Validated sorter parameters (see ``config/sorter.yaml`` for each one's meaning)."""

    bundle: str
    backend: str = "auto"
    device: str = "cpu"
    precision: str = "fp32"
    intra_op_threads: int = 0
    engine_cache_dir: str = ""
    max_batch: int = 4
    max_instances: int = 4
    instance_min_relative: float = 0.3
    camera_topics: tuple[str, ...] = ("image",)
    input_type: str = "image"
    image_reliability: str = "best_effort"
    image_depth: int = 1
    output_topic: str = "labels"
    output_depth: int = 10
    threshold: float = -1.0
    class_thresholds: tuple[float, ...] = ()
    max_rate_hz: float = 0.0
    diagnostics_period_s: float = 1.0
    stale_after_s: float = 2.0
    expected_rate_hz: float = 0.0
    rate_tolerance: float = 0.2
    debug_image: bool = False
    debug_image_format: str = "raw"
    max_input_pixels: int = DEFAULT_MAX_INPUT_PIXELS
    drift_window: int = 300
    drift_factor: float = 2.0
    capture_dir: str = ""
    capture_margin: float = 0.05
    capture_many_classes: int = 3
    capture_wide_margin: float = 0.15
    capture_sample_rate: float = 0.01
    capture_max_rate_hz: float = 2.0
    capture_max_mb: int = 1000
    capture_frames_per_bag: int = 200
    autostart: bool = False

    def __post_init__(self) -> None:
        if not self.bundle:
            raise ConfigError("parameter bundle is empty; set it to an exported bundle directory")
        if not self.camera_topics or any(not t for t in self.camera_topics):
            raise ConfigError(
                f"camera_topics must list at least one non-empty topic, got {self.camera_topics!r}"
            )
        if len(set(self.camera_topics)) != len(self.camera_topics):
            raise ConfigError(f"camera_topics lists a topic twice: {self.camera_topics!r}")
        for topic in self.camera_topics:
            _check_topic_name("camera_topics", topic)
        _choice("precision", self.precision, PRECISIONS)
        if self.intra_op_threads < 0:
            raise ConfigError(
                f"intra_op_threads must be >= 0 (0 = ONNX Runtime's default), got "
                f"{self.intra_op_threads}"
            )
        check_instance_options(self.max_instances, self.instance_min_relative)
        check_drift_options(self.drift_window, self.drift_factor)
        self.capture_rules()  # checks them
        if self.capture_max_rate_hz < 0 or self.capture_max_mb < 1:
            raise ConfigError(
                "capture_max_rate_hz must be >= 0 and capture_max_mb at least 1, got "
                f"{self.capture_max_rate_hz} and {self.capture_max_mb}"
            )
        if self.capture_frames_per_bag < 1:
            raise ConfigError(
                f"capture_frames_per_bag must be at least 1, got {self.capture_frames_per_bag}"
            )
        _choice("input_type", self.input_type, INPUT_TYPES)
        _choice("debug_image_format", self.debug_image_format, DEBUG_IMAGE_FORMATS)
        _choice("image_reliability", self.image_reliability, RELIABILITY_CHOICES)
        if not self.output_topic:
            raise ConfigError("output_topic is empty; the default is the relative name 'labels'")
        _check_topic_name("output_topic", self.output_topic)
        for name in ("max_batch", "image_depth", "output_depth", "max_input_pixels"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.threshold != -1.0 and not 0.0 <= self.threshold <= 1.0:
            raise ConfigError(
                f"threshold must lie in [0, 1] (or be -1 for the bundle's), got {self.threshold}"
            )
        bad = [v for v in self.class_thresholds if v != -1.0 and not 0.0 <= v <= 1.0]
        if bad:
            raise ConfigError(
                f"class_thresholds must lie in [0, 1] (or be -1 for the bundle's), got {bad}"
            )
        if not math.isfinite(self.max_rate_hz) or self.max_rate_hz < 0.0:
            raise ConfigError(f"max_rate_hz must be >= 0 (0 = no limit), got {self.max_rate_hz}")
        for name in ("diagnostics_period_s", "stale_after_s"):
            value = getattr(self, name)
            if not math.isfinite(value) or value <= 0.0:
                raise ConfigError(f"{name} must be a positive number of seconds, got {value}")
        if not math.isfinite(self.expected_rate_hz) or self.expected_rate_hz < 0.0:
            raise ConfigError(
                f"expected_rate_hz must be >= 0 (0 = no rate check), got {self.expected_rate_hz}"
            )
        if not 0.0 < self.rate_tolerance < 1.0:
            raise ConfigError(f"rate_tolerance must lie in (0, 1), got {self.rate_tolerance}")
        if 0.0 < self.expected_rate_hz * self.diagnostics_period_s < 5.0:
            # A report period must hold a few frames for a rate to be told from counting noise.
            raise ConfigError(
                f"expected_rate_hz {self.expected_rate_hz:g} needs diagnostics_period_s of at "
                f"least {5.0 / self.expected_rate_hz:g} s (five expected frames per report), "
                f"got {self.diagnostics_period_s:g}"
            )

    def frame_capture(self, image_type: str) -> FrameCapture | None:
        """The capture ring of ``image_type`` frames these parameters ask for; None when off."""
        if not self.capture_dir:
            return None
        return FrameCapture(
            Path(self.capture_dir),
            image_type=image_type,
            max_rate_hz=self.capture_max_rate_hz,
            max_bytes=self.capture_max_mb * 1_000_000,
            frames_per_bag=self.capture_frames_per_bag,
        )

    def capture_rules(self) -> CaptureRules:
        """The capture rules these parameters describe."""
        return CaptureRules(
            margin=self.capture_margin,
            many_classes=self.capture_many_classes,
            wide_margin=self.capture_wide_margin,
            sample_rate=self.capture_sample_rate,
        )

    @classmethod
    def from_values(cls, values: Mapping[str, Any]) -> SorterParams:
        """Build from raw parameter values (lists become tuples; None means the default)."""
        known = {f.name for f in fields(cls)}
        kwargs = {}
        for name, value in values.items():
            if name not in known or value is None:
                continue
            kwargs[name] = tuple(value) if isinstance(value, (list, tuple, np.ndarray)) else value
        if "bundle" not in kwargs:
            raise ConfigError("parameter bundle is not set; pass -p bundle:=<bundle directory>")
        return cls(**kwargs)


def backend_options(params: SorterParams) -> dict[str, dict[str, Any]]:
    """The Classifier's per-backend options from the runtime parameters."""
    options: dict[str, dict[str, Any]] = {}
    if params.intra_op_threads:
        options["onnxruntime"] = {"intra_op_threads": params.intra_op_threads}
    if params.engine_cache_dir:
        options["tensorrt"] = {"cache_dir": params.engine_cache_dir}
    return options


def _check_topic_name(name: str, topic: str) -> None:
    # Expanded as for a node named "sorter" at the root: what a namespace adds is valid anyway.
    try:
        validate_full_topic_name(expand_topic_name(topic, "sorter", "/"))
    except Exception as err:  # rclpy raises ValueError or its own InvalidTopicNameException
        detail = str(err).splitlines()[0].split(", at /")[0]
        raise ConfigError(f"{name}: {topic!r} is not a valid ROS topic name ({detail})") from err


def _choice(name: str, value: str, choices: Sequence[str]) -> None:
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {value!r}")


def resolve_thresholds(params: SorterParams, bundle_thresholds: np.ndarray) -> np.ndarray:
    """The per-class thresholds in force: bundle's, overridden globally, then per class.

    Raises:
        ConfigError: ``class_thresholds`` is non-empty but not one value per class.
    """
    base = np.array(bundle_thresholds, dtype=np.float32)
    if params.threshold != -1.0:
        base[:] = params.threshold
    if params.class_thresholds:
        if len(params.class_thresholds) != base.size:
            raise ConfigError(
                f"class_thresholds has {len(params.class_thresholds)} values, the model has "
                f"{base.size} classes; give one per class (-1 keeps the bundle's) or none"
            )
        override = np.array(params.class_thresholds, dtype=np.float32)
        base = np.where(override == -1.0, base, override)
    return check_thresholds(base, base.size)
