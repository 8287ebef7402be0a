"""The sorter's parameter declarations as rclpy sees them: descriptors, ranges, defaults.

Every default comes from :class:`~mmsag_ros.ros.params.SorterParams`; each declaration adds the
description and range that ``ros2 param describe`` shows and rclpy enforces.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import MISSING, fields
from typing import Any

from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from rclpy.node import Node
from rclpy.parameter import Parameter

from mmsag_ros.ros.params import DYNAMIC_PARAMETERS, SorterParams

__all__ = [
    "DECLARATIONS",
    "STATIC_PARAMETERS",
    "declare_parameters",
    "integers_as_doubles",
    "read_parameters",
    "static_change_refusal",
]


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

DECLARATIONS: tuple[tuple[str, Any, ParameterDescriptor], ...] = (
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
STATIC_PARAMETERS = frozenset(name for name, _, _ in DECLARATIONS) - DYNAMIC_PARAMETERS


def static_change_refusal(names: Iterable[str], state: str) -> str:
    """Why setting ``names`` in lifecycle ``state`` is refused; empty when it is not.

    Static parameters take effect at configure, so they change only while unconfigured. On a
    configured node (inactive or active) ``bundle`` is the exception: setting it swaps the model.
    """
    static = set(names) & STATIC_PARAMETERS
    if state in ("inactive", "active"):
        static.discard("bundle")
    if not static or state == "unconfigured":
        return ""
    return (
        f"{', '.join(sorted(static))} only take(s) effect at configure and the sorter is "
        f"{state}: deactivate and clean it up, set the value, configure again"
    )


_DOUBLES = frozenset(name for name, default, _ in DECLARATIONS if isinstance(default, float))
_DOUBLE_ARRAYS = frozenset(
    name for name, default, _ in DECLARATIONS if default == Parameter.Type.DOUBLE_ARRAY
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
    for name, default, descriptor in DECLARATIONS:
        node.declare_parameter(name, default, descriptor)
    if hasattr(node, "add_pre_set_parameters_callback"):  # not in Humble's rclpy
        node.add_pre_set_parameters_callback(integers_as_doubles)


def read_parameters(node: Node, overrides: Sequence[Parameter] = ()) -> SorterParams:
    """Read and validate the node's parameters, with ``overrides`` (pending changes) on top.

    Raises:
        ConfigError: A value is missing, out of range or inconsistent; the message names it.
    """
    values = {name: node.get_parameter_or(name).value for name, _, _ in DECLARATIONS}
    values.update({p.name: p.value for p in overrides})
    return SorterParams.from_values(values)
