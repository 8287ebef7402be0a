"""What ``launch/sorter.launch.py`` makes of its argument strings, without importing ``launch``.

The launch file only reads its arguments and hands the strings to :func:`sorter_settings`;
every decision lives here, so it is tested where ``launch`` and ``launch_ros`` cannot be
installed. Nothing here imports rclpy either.

The rules:

* ``namespace`` (default ``waste``) is the node's namespace. The sorter's topics are relative
  names (``labels``, ``debug_image``, camera topics such as ``image``), so they follow it:
  ``/waste/labels`` by default, ``/cell_2/labels`` with ``namespace:=cell_2``; the node is
  ``/waste/sorter`` or ``/cell_2/sorter``. No remapping is needed, and none is made: an
  absolute remap would pin every cell's output to the same topic. A relative namespace also
  nests under a ``PushRosNamespace`` of an including launch file. Absolute camera topics
  (``/camera/image_raw``) are unaffected by the namespace.
* ``compressed``: empty (the default) keeps the parameter file's ``input_type``; ``true`` or
  ``false`` override it with ``compressed`` or ``image``.
* ``bundle``, ``camera_topics`` (comma-separated), ``precision`` (the bundle variant:
  ``fp32``, ``fp16``, ``int8``), ``device`` (``cpu``, ``cuda``, ``cuda:N``, ``auto``) and
  ``backend`` (``auto``, ``tensorrt``, ``onnxruntime``, ``torch``): empty keeps the parameter
  file's value. A GPU cell says ``device:=cuda backend:=tensorrt`` and needs no copy of the
  file for it.
* ``autostart`` and ``debug_image``: ``true``/``false`` override the file's; empty keeps it.
  ``autostart:=false`` leaves the node unconfigured for a lifecycle manager.
* ``use_sim_time`` (default ``false``) is always passed to the node: it is the parameter every
  rclpy node declares for itself, and the simulation or bag replay decides it, not the cell's
  parameter file.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from mmsag_ros.bundle.schema import PRECISIONS
from mmsag_ros.errors import ConfigError
from mmsag_ros.runtime.backends import BACKEND_KINDS
from mmsag_ros.runtime.backends.base import parse_device

__all__ = [
    "DEFAULT_NAMESPACE",
    "SorterSettings",
    "sorter_namespace",
    "sorter_overrides",
    "sorter_settings",
]

DEFAULT_NAMESPACE = "waste"
_BOOLEANS = {"true": True, "false": False}
# One ROS name token: letters, digits, underscores, not starting with a digit.
_TOKEN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

ParameterValue = str | bool | list[str]


@dataclass(frozen=True)
class SorterSettings:
    """What the launch file gives the sorter node.

    Attributes:
        namespace: The node's namespace ("" for the root namespace).
        overrides: Parameters that override the parameter file, in launch_ros's dict form.
            There are no remappings: the node's topic names are relative to ``namespace``.
    """

    namespace: str
    overrides: dict[str, ParameterValue]


def _boolean(name: str, value: str, *, allow_empty: bool) -> bool | None:
    text = value.strip().lower()
    if allow_empty and not text:
        return None
    if text not in _BOOLEANS:
        allowed = "true, false or empty" if allow_empty else "true or false"
        raise ConfigError(f"launch argument {name} must be {allowed}, got {value!r}")
    return _BOOLEANS[text]


def sorter_namespace(namespace: str) -> str:
    """Check the ``namespace`` argument; return it without a trailing slash.

    A relative namespace (``cell_2``, ``plant_a/cell_2``) stays relative, so that it composes
    with an enclosing ``PushRosNamespace``; ``/cell_2`` is absolute; "" or "/" is the root.

    Raises:
        ConfigError: A token that is not a valid ROS name (``cell 2``, ``2nd``, ``a//b``).
    """
    text = namespace.strip()
    absolute = text.startswith("/")
    body = text.strip("/")
    if not body:
        return "/" if absolute else ""
    if not all(_TOKEN.fullmatch(token) for token in body.split("/")):
        raise ConfigError(
            f"launch argument namespace {namespace!r} is not a valid ROS namespace: use "
            "letters, digits and underscores, tokens not starting with a digit, separated by /"
        )
    return f"/{body}" if absolute else body


def sorter_overrides(
    *,
    bundle: str = "",
    camera_topics: str = "",
    compressed: str = "",
    precision: str = "",
    device: str = "",
    backend: str = "",
    autostart: str = "",
    debug_image: str = "",
    use_sim_time: str = "false",
) -> dict[str, ParameterValue]:
    """The parameters the launch arguments override (the rest come from the parameter file).

    Args:
        bundle: Bundle directory; empty keeps the parameter file's.
        camera_topics: Comma-separated topics; empty keeps the parameter file's.
        compressed: ``true``/``false`` set ``input_type``; empty keeps the parameter file's.
        precision: ``fp32``, ``fp16`` or ``int8``; empty keeps the parameter file's.
        device: ``cpu``, ``cuda``, ``cuda:N`` or ``auto``; empty keeps the parameter file's.
        backend: ``auto`` or a backend kind; empty keeps the parameter file's.
        autostart: ``true``/``false`` override the parameter file's; empty keeps it.
        debug_image: ``true``/``false`` override the parameter file's; empty keeps it.
        use_sim_time: ``true`` or ``false``, always passed.

    Raises:
        ConfigError: A boolean argument that is neither true nor false (nor empty where
            allowed), an unknown precision, device or backend.
    """
    overrides: dict[str, ParameterValue] = {}
    variant = precision.strip()
    if variant and variant not in PRECISIONS:
        raise ConfigError(
            f"launch argument precision must be {', '.join(PRECISIONS)} or empty, got {precision!r}"
        )
    if variant:
        overrides["precision"] = variant
    overrides.update(_device_and_backend(device.strip(), backend.strip()))
    for name, value in (("autostart", autostart), ("debug_image", debug_image)):
        flag = _boolean(name, value, allow_empty=True)
        if flag is not None:
            overrides[name] = flag
    if bundle.strip():
        overrides["bundle"] = bundle.strip()
    topics = [topic.strip() for topic in camera_topics.split(",") if topic.strip()]
    if topics:
        overrides["camera_topics"] = topics
    as_compressed = _boolean("compressed", compressed, allow_empty=True)
    if as_compressed is not None:
        overrides["input_type"] = "compressed" if as_compressed else "image"
    overrides["use_sim_time"] = bool(_boolean("use_sim_time", use_sim_time, allow_empty=False))
    return overrides


def _device_and_backend(device: str, backend: str) -> dict[str, ParameterValue]:
    overrides: dict[str, ParameterValue] = {}
    if device:
        if device.lower() != "auto":
            try:
                parse_device(device)
            except ConfigError:
                raise ConfigError(
                    f"launch argument device must be cpu, cuda, cuda:N, auto or empty, got "
                    f"{device!r}"
                ) from None
        overrides["device"] = device.lower()
    if backend:
        if backend not in ("auto", *BACKEND_KINDS):
            raise ConfigError(
                f"launch argument backend must be auto, {', '.join(BACKEND_KINDS)} or empty, "
                f"got {backend!r}"
            )
        overrides["backend"] = backend
    return overrides


def sorter_settings(arguments: Mapping[str, str]) -> SorterSettings:
    """The node's namespace and parameter overrides from the launch arguments' strings.

    Args:
        arguments: The values of ``namespace`` and of :func:`sorter_overrides`'s arguments;
            a missing one takes the launch file's default.
    """
    return SorterSettings(
        namespace=sorter_namespace(arguments.get("namespace", DEFAULT_NAMESPACE)),
        overrides=sorter_overrides(
            bundle=arguments.get("bundle", ""),
            camera_topics=arguments.get("camera_topics", ""),
            compressed=arguments.get("compressed", ""),
            precision=arguments.get("precision", ""),
            device=arguments.get("device", ""),
            backend=arguments.get("backend", ""),
            autostart=arguments.get("autostart", ""),
            debug_image=arguments.get("debug_image", ""),
            use_sim_time=arguments.get("use_sim_time", "false"),
        ),
    )
