"""Paths, process and message helpers shared by tests (a uniquely named module, unlike
conftest.py; peer scripts import it too)."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

from mmsag_ros.live.sorter_process import SorterProcess

REPO = Path(__file__).resolve().parents[1]
VENV = Path(sys.prefix)
FASTDDS_PROFILE = REPO / "config" / "fastdds_shm.xml"
# Real material (camera rosbags, TACO annotations) lies beside the checkout, in CI too.
SHARED_DATA = REPO.parent / "shared" / "data"


def ros_environment() -> dict[str, str]:
    """This process's environment for ROS peer processes: a domain of their own, this machine
    only, the venv's ament index, the shipped DDS profile, and the checkout on the path."""
    env = dict(os.environ)
    env.update(
        ROS_DOMAIN_ID=str(random.Random().randint(1, 101)),
        ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
        AMENT_PREFIX_PATH=str(VENV),
        FASTDDS_DEFAULT_PROFILES_FILE=str(FASTDDS_PROFILE),
        PYTHONPATH=os.pathsep.join([str(REPO), str(REPO / "test")]),
        PYTHONUNBUFFERED="1",
    )
    return env


def start_python(script: Path, *args: str, env: dict[str, str]) -> subprocess.Popen[str]:
    """Start ``script`` with this interpreter as a separate process, capturing its output."""
    return subprocess.Popen(
        [sys.executable, str(script), *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def start_sorter(
    env: dict[str, str], *params: str, params_file: Path | None = None
) -> SorterProcess:
    """Start ``python -m mmsag_ros.ros.sorter`` on ONNX Runtime with ``name:=value`` params.

    :meth:`SorterProcess.stop` Ctrl-Cs it and returns its stderr.
    """
    parameters = dict(param.split(":=", 1) for param in ("backend:=onnxruntime", *params))
    files = [params_file] if params_file is not None else []
    return SorterProcess(parameters, params_files=files, env=env, cwd=REPO).start()


def multilabel_summary(msg: Any) -> dict[str, Any]:
    """Every field of a MultiLabel (rclpy or rosbags) as plain JSON-ready values."""
    return {
        "stamp": [msg.header.stamp.sec, msg.header.stamp.nanosec],
        "frame_id": msg.header.frame_id,
        "model_id": msg.model_id,
        "class_names": list(msg.class_names),
        "scores": [float(v) for v in msg.scores],
        "decisions": [bool(v) for v in msg.decisions],
        "thresholds": [float(v) for v in msg.thresholds],
        "peaks": [[float(p.x), float(p.y), float(p.strength)] for p in msg.peaks],
        "instances": [
            [[float(p.x), float(p.y), float(p.strength)] for p in group.peaks]
            for group in msg.instances
        ],
        "inference_time_ms": msg.inference_time_ms,
        "latency_ms": msg.latency_ms,
        "image_size": [msg.image_width, msg.image_height],
        "contract_version": msg.contract_version,
    }


def multilabel_to_rosbags(msg: Any, store: Any) -> Any:
    """An rclpy MultiLabel rebuilt as the rosbags class of ``store``, field by field.

    Only the fields that class has: a store holding an older contract's definition gets the
    message a publisher of that contract would have built.
    """
    types = store.types
    point = types["mmsag_ros/msg/AttentionPeak"]
    cls = types["mmsag_ros/msg/MultiLabel"]
    stamp = types["builtin_interfaces/msg/Time"](
        sec=msg.header.stamp.sec, nanosec=msg.header.stamp.nanosec
    )
    fields = {
        "header": types["std_msgs/msg/Header"](stamp=stamp, frame_id=msg.header.frame_id),
        "model_id": msg.model_id,
        "class_names": list(msg.class_names),
        "scores": np.array(msg.scores, dtype=np.float32),
        "decisions": np.array(msg.decisions, dtype=bool),
        "thresholds": np.array(msg.thresholds, dtype=np.float32),
        "peaks": [point(x=p.x, y=p.y, strength=p.strength) for p in msg.peaks],
        "instances": [
            types["mmsag_ros/msg/InstancePeaks"](
                peaks=[point(x=p.x, y=p.y, strength=p.strength) for p in group.peaks]
            )
            for group in msg.instances
        ],
        "inference_time_ms": msg.inference_time_ms,
        "latency_ms": msg.latency_ms,
        "image_width": msg.image_width,
        "image_height": msg.image_height,
        "contract_version": msg.contract_version,
    }
    return cls(
        **{name: value for name, value in fields.items() if name in cls.__dataclass_fields__}
    )
