"""``mmsag info``: what this installation can do.

Looks components up without importing them, so it answers in a fraction of a second and works
on a machine with no ROS, no torch or no GPU.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import platform
import sys

from mmsag_ros import __version__

__all__ = ["add_arguments", "run"]

# label -> (import name that proves it is there, distribution that carries its version)
_COMPONENTS: dict[str, tuple[str, str | None]] = {
    "numpy": ("numpy", "numpy"),
    "opencv": ("cv2", "opencv-python-headless"),
    "torch": ("torch", "torch"),
    "torchvision": ("torchvision", "torchvision"),
    "onnx": ("onnx", "onnx"),
    "onnxruntime": ("onnxruntime", "onnxruntime"),
    "tensorrt": ("tensorrt", "tensorrt"),
    "rosbags": ("rosbags", "rosbags"),
    "rclpy": ("rclpy", None),
    "mmsag_ros messages": ("mmsag_ros.msg", None),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the options of ``mmsag info``."""
    parser.add_argument("--json", action="store_true", help="print a JSON object instead")


def _find(import_name: str) -> bool:
    try:
        return importlib.util.find_spec(import_name) is not None
    except ModuleNotFoundError:  # a missing parent package
        return False


def _version(distribution: str | None) -> str:
    if distribution is None:
        return ""
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return ""


def collect() -> dict[str, object]:
    """Return the version, platform and per-component availability as plain data."""
    components = {
        label: {"available": _find(import_name), "version": _version(distribution)}
        for label, (import_name, distribution) in _COMPONENTS.items()
    }
    return {
        "mmsag_ros": __version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "components": components,
    }


def run(args: argparse.Namespace) -> int:
    """Print the report; always succeeds."""
    report = collect()
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"mmsag_ros {report['mmsag_ros']}  (Python {report['python']}, {report['platform']})")
    for label, state in report["components"].items():
        mark = "yes" if state["available"] else "no "
        print(f"  {mark}  {label:<20} {state['version']}")
    return 0
