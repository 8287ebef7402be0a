"""The sorter node's parameters: declarations with descriptors and one validated, frozen record.

``config/sorter.yaml`` is the only home of the values a cell runs with; the defaults here only
make the node start without it (``python -m mmsag_ros.ros.sorter -p bundle:=...``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import MISSING, dataclass, fields
from typing import Any

import numpy as np
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.expand_topic_name import expand_topic_name
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.validate_full_topic_name import validate_full_topic_name

from mmsag_ros.bundle.manifest import PRECISIONS
from mmsag_ros.camera.decode import DEFAULT_MAX_INPUT_PIXELS
from mmsag_ros.errors import ConfigError
from mmsag_ros.pointing import check_instance_options
from mmsag_ros.ros.capture import CaptureRules
from mmsag_ros.ros.qos import RELIABILITY_CHOICES
from mmsag_ros.runtime.drift import check_drift_options
from mmsag_ros.runtime.postprocess import check_thresholds

__all__ = [
    "DYNAMIC_PARAMETERS",
    "INPUT_TYPES",
    "STATIC_PARAMETERS",
    "SorterParams",
    "backend_options",
    "declare_parameters",
    "read_parameters",
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


def _descriptor(
    description: str,
    *,
    read_only: bool = False,
    float_range: tuple[float, float] | None = None,
    int_range: tuple[int, int] | None = None,
) -> ParameterDescriptor:
    descriptor = ParameterDescriptor(description=description, read_only=read_only)
    if float_range is not None:
        descriptor.floating_point_range = [
            FloatingPointRange(from_value=float_range[0], to_value=float_range[1])
        ]
    if int_range is not None:
        descriptor.integer_range = [
            IntegerRange(from_value=int_range[0], to_value=int_range[1], step=1)
        ]
    return descriptor


# Every default lives in SorterParams; the declarations take theirs from it (lists for tuples,
# as rclpy wants).
_DEFAULTS: dict[str, Any] = {
    f.name: list(f.default) if isinstance(f.default, tuple) else f.default
    for f in fields(SorterParams)
    if f.default is not MISSING
}

_DECLARATIONS: tuple[tuple[str, Any, ParameterDescriptor], ...] = (
    (
        "bundle",
        "",
        _descriptor("Exported model bundle directory; set while configured to swap the model."),
    ),
    (
        "backend",
        _DEFAULTS["backend"],
        _descriptor("auto, tensorrt, onnxruntime or torch.", read_only=True),
    ),
    ("device", _DEFAULTS["device"], _descriptor("cpu, cuda, cuda:N or auto.", read_only=True)),
    (
        "precision",
        _DEFAULTS["precision"],
        _descriptor("Bundle variant to run: fp32, fp16 or int8.", read_only=True),
    ),
    (
        "intra_op_threads",
        _DEFAULTS["intra_op_threads"],
        _descriptor(
            "ONNX Runtime threads per operator; 0 = its default.",
            read_only=True,
            int_range=(0, 256),
        ),
    ),
    (
        "engine_cache_dir",
        _DEFAULTS["engine_cache_dir"],
        _descriptor("TensorRT engine cache; empty = BUNDLE/engines.", read_only=True),
    ),
    (
        "max_batch",
        _DEFAULTS["max_batch"],
        _descriptor("Frames per inference call.", read_only=True, int_range=(1, 64)),
    ),
    (
        "max_instances",
        _DEFAULTS["max_instances"],
        _descriptor(
            "Instance peaks per class in MultiLabel.instances; 0 = none.", int_range=(0, 64)
        ),
    ),
    (
        "instance_min_relative",
        _DEFAULTS["instance_min_relative"],
        _descriptor(
            "An instance peak's least attention, as a share of the class's strongest cell.",
            float_range=(0.01, 1.0),
        ),
    ),
    (
        "camera_topics",
        _DEFAULTS["camera_topics"],
        _descriptor("Camera topics (relative names, remap in launch)."),
    ),
    (
        "input_type",
        _DEFAULTS["input_type"],
        _descriptor("image (sensor_msgs/Image) or compressed."),
    ),
    ("image_reliability", _DEFAULTS["image_reliability"], _descriptor("best_effort or reliable.")),
    (
        "image_depth",
        _DEFAULTS["image_depth"],
        _descriptor("Camera QoS history depth.", int_range=(1, 100)),
    ),
    ("output_topic", _DEFAULTS["output_topic"], _descriptor("MultiLabel output topic.")),
    (
        "output_depth",
        _DEFAULTS["output_depth"],
        _descriptor("MultiLabel QoS history depth.", int_range=(1, 1000)),
    ),
    (
        "threshold",
        _DEFAULTS["threshold"],
        _descriptor("Global threshold in [0, 1]; -1 keeps the bundle's.", float_range=(-1.0, 1.0)),
    ),
    (
        "class_thresholds",
        Parameter.Type.DOUBLE_ARRAY,
        _descriptor("Per-class thresholds in model order; -1 keeps that class's; empty: none."),
    ),
    (
        "max_rate_hz",
        _DEFAULTS["max_rate_hz"],
        _descriptor("Inference rate cap in Hz; 0 means no limit.", float_range=(0.0, 10_000.0)),
    ),
    (
        "diagnostics_period_s",
        _DEFAULTS["diagnostics_period_s"],
        _descriptor("Period of /diagnostics reports in seconds.", float_range=(0.01, 3600.0)),
    ),
    (
        "stale_after_s",
        _DEFAULTS["stale_after_s"],
        _descriptor("A camera silent this long is reported stale.", float_range=(0.01, 86_400.0)),
    ),
    (
        "expected_rate_hz",
        _DEFAULTS["expected_rate_hz"],
        _descriptor(
            "Frame rate each camera should send; /diagnostics warns outside the tolerance. 0: off.",
            float_range=(0.0, 10_000.0),
        ),
    ),
    (
        "rate_tolerance",
        _DEFAULTS["rate_tolerance"],
        _descriptor("Share of expected_rate_hz a camera may be off by.", float_range=(0.01, 0.99)),
    ),
    (
        "debug_image",
        _DEFAULTS["debug_image"],
        _descriptor("Publish frames with scores and attention drawn while someone subscribes."),
    ),
    (
        "debug_image_format",
        _DEFAULTS["debug_image_format"],
        _descriptor("raw: Image on debug_image; jpeg: CompressedImage on debug_image/compressed."),
    ),
    (
        "max_input_pixels",
        _DEFAULTS["max_input_pixels"],
        _descriptor(
            "Frames with more pixels (width x height) are rejected before decoding.",
            int_range=(1, 1 << 31),
        ),
    ),
    (
        "drift_window",
        _DEFAULTS["drift_window"],
        _descriptor("Labelled frames the drift watch compares.", int_range=(1, 1_000_000)),
    ),
    (
        "drift_factor",
        _DEFAULTS["drift_factor"],
        _descriptor(
            "Ratio to the bundle's reference that /diagnostics warns at; 0 = off.",
            float_range=(0.0, 1000.0),
        ),
    ),
    (
        "capture_dir",
        _DEFAULTS["capture_dir"],
        _descriptor("Folder of the capture bags; empty: no capture."),
    ),
    (
        "capture_margin",
        _DEFAULTS["capture_margin"],
        _descriptor(
            "Capture a frame with a class this close to threshold.", float_range=(0.0, 1.0)
        ),
    ),
    (
        "capture_many_classes",
        _DEFAULTS["capture_many_classes"],
        _descriptor(
            "Capture a frame with this many classes within capture_wide_margin; 0 off.",
            int_range=(0, 10_000),
        ),
    ),
    (
        "capture_wide_margin",
        _DEFAULTS["capture_wide_margin"],
        _descriptor("Margin of the capture_many_classes rule.", float_range=(0.0, 1.0)),
    ),
    (
        "capture_sample_rate",
        _DEFAULTS["capture_sample_rate"],
        _descriptor("Share of all frames captured at random.", float_range=(0.0, 1.0)),
    ),
    (
        "capture_max_rate_hz",
        _DEFAULTS["capture_max_rate_hz"],
        _descriptor("At most this many captures a second; 0 = no cap.", float_range=(0.0, 1000.0)),
    ),
    (
        "capture_max_mb",
        _DEFAULTS["capture_max_mb"],
        _descriptor(
            "Disk cap of capture_dir; the oldest bags go first.", int_range=(1, 100_000_000)
        ),
    ),
    (
        "capture_frames_per_bag",
        _DEFAULTS["capture_frames_per_bag"],
        _descriptor("Frames per capture bag.", int_range=(1, 1_000_000)),
    ),
    (
        "autostart",
        _DEFAULTS["autostart"],
        _descriptor("Configure and activate at start (no lifecycle manager)."),
    ),
)
# Read at configure or activate; changing them while configured is refused with the reason.
STATIC_PARAMETERS = frozenset(name for name, _, _ in _DECLARATIONS) - DYNAMIC_PARAMETERS


_DOUBLES = frozenset(name for name, default, _ in _DECLARATIONS if isinstance(default, float))
_DOUBLE_ARRAYS = frozenset(
    name for name, default, _ in _DECLARATIONS if default == Parameter.Type.DOUBLE_ARRAY
)


def integers_as_doubles(parameters: Sequence[Parameter]) -> list[Parameter]:
    """The parameters with integers given to double parameters turned into doubles.

    ``ros2 param set /waste/sorter threshold 1`` and ``-p threshold:=1`` send an integer, which
    rclpy refuses for a double parameter ("expected 3 got 2"); a person meant 1.0.
    """
    converted = []
    for parameter in parameters:
        if parameter.name in _DOUBLES and parameter.type_ == Parameter.Type.INTEGER:
            parameter = Parameter(parameter.name, Parameter.Type.DOUBLE, float(parameter.value))
        elif parameter.name in _DOUBLE_ARRAYS and parameter.type_ == Parameter.Type.INTEGER_ARRAY:
            values = [float(v) for v in parameter.value]
            parameter = Parameter(parameter.name, Parameter.Type.DOUBLE_ARRAY, values)
        converted.append(parameter)
    return converted


def declare_parameters(node: Node) -> None:
    """Declare every sorter parameter on ``node`` with its descriptor.

    Integers given for double parameters, on the command line or in a parameter file, or set
    later (from Iron on, where rclpy has pre-set callbacks), are taken as doubles.
    """
    # rclpy checks the overrides' types at declaration, before any callback could run.
    overrides = getattr(node, "_parameter_overrides", {})
    for parameter in integers_as_doubles(list(overrides.values())):
        overrides[parameter.name] = parameter
    for name, default, descriptor in _DECLARATIONS:
        node.declare_parameter(name, default, descriptor)
    if hasattr(node, "add_pre_set_parameters_callback"):  # not in Humble's rclpy
        node.add_pre_set_parameters_callback(integers_as_doubles)


def read_parameters(node: Node, overrides: Sequence[Parameter] = ()) -> SorterParams:
    """Read and validate the node's parameters, with ``overrides`` (pending changes) on top.

    Raises:
        ConfigError: A value is missing, out of range or inconsistent; the message names it.
    """
    values = {name: node.get_parameter_or(name).value for name, _, _ in _DECLARATIONS}
    values.update({p.name: p.value for p in overrides})
    return SorterParams.from_values(values)
