"""One sorter node process for a replay: its command, start-up, readiness, parameters, stop.

The node runs as deployed (``python -m mmsag_ros.ros.sorter``), under a name of its own and
with its labels on a topic of its own, so that a real cell on the same network is never
confused with it. It is ready once its labels publisher has matched ours; a configure that
failed says why on ``/diagnostics``.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mmsag_ros._share import default_dds_profile
from mmsag_ros.errors import BagError

__all__ = ["NODE_NAME", "OUTPUT_TOPIC", "set_replay_parameter", "wait_until_ready"]

_log = logging.getLogger(__name__)

NODE_NAME = "mmsag_bag_eval_sorter"
OUTPUT_TOPIC = "/mmsag_bag_eval/labels"
_DIAGNOSTICS_PERIOD_S = 0.5
_POLL_S = 0.05


def _child_environment() -> dict[str, str]:
    # The node and this process's own participants (player, label collector) alike.
    default_dds_profile(os.environ)
    return dict(os.environ, PYTHONUNBUFFERED="1")


def _sorter_command(
    bundle: Path,
    topics: list[str],
    input_type: str,
    *,
    backend: str | None,
    device: str | None,
    precision: str | None,
    params_file: Path | None,
) -> list[str]:
    # JSON strings and lists are valid YAML, so paths and topic names arrive unchanged.
    parameters = {
        "bundle": json.dumps(str(bundle)),
        "camera_topics": json.dumps(topics),
        "input_type": input_type,
        "output_topic": OUTPUT_TOPIC,
        "diagnostics_period_s": str(_DIAGNOSTICS_PERIOD_S),
        "autostart": "true",
    }
    # Unless asked for, these come from the cell's parameter file (or the node's defaults).
    chosen = (("backend", backend), ("device", device), ("precision", precision))
    parameters.update({k: v for k, v in chosen if v})
    command = [sys.executable, "-m", "mmsag_ros.ros.sorter", "--ros-args"]
    command += ["-r", f"__node:={NODE_NAME}"]
    if params_file is not None:
        # Before the -p overrides: rcl lets later parameter sources win.
        command += ["--params-file", str(Path(params_file).resolve())]
    for name, value in parameters.items():
        command += ["-p", f"{name}:={value}"]
    return command


def _last_error(log_path: Path) -> str:
    """The node's last error line without its ROS log prefix, and where its log is."""
    try:
        lines = log_path.read_text(errors="replace").splitlines()
    except OSError:
        lines = []
    found = next(
        (line for line in reversed(lines) if "configure failed" in line or "Error" in line),
        lines[-1] if lines else "no output",
    )
    return f"{found.rsplit(']: ', 1)[-1].strip()} (node log: {log_path})"


def wait_until_ready(
    process: subprocess.Popen[bytes],
    matched: Callable[[], bool],
    configure_error: Callable[[], str],
    log_path: Path,
    timeout_s: float,
    stop: threading.Event,
) -> None:
    """Block until ``matched()``: the node's labels publisher has matched ours.

    BagError when the node exits, says its configure failed (``configure_error()``, from
    /diagnostics) or does not come up in ``timeout_s``.
    """
    deadline = time.monotonic() + timeout_s
    while not matched():
        if stop.is_set():
            raise BagError("interrupted while the sorter node was starting")
        if process.poll() is not None:
            raise BagError(
                f"the sorter node exited ({process.returncode}): {_last_error(log_path)}"
            )
        # The node says so on /diagnostics, in every state: no need to read its log.
        if reason := configure_error():
            raise BagError(f"the sorter node did not start: {reason} (node log: {log_path})")
        if time.monotonic() > deadline:
            raise BagError(
                f"the sorter node did not come up in {timeout_s:.0f} s: {_last_error(log_path)}"
            )
        time.sleep(_POLL_S)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(10.0)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def set_replay_parameter(name: str, value: Any, *, timeout_s: float = 60.0) -> tuple[bool, str]:
    """Set a parameter of the running replay's sorter node, as ``ros2 param set`` does.

    For a caller of :func:`replay_through_sorter` acting during the replay (from ``on_label``
    or another thread), e.g. ``set_replay_parameter("bundle", "/opt/models/next")`` to swap
    the model mid-stream. Returns the node's answer: whether it accepted, and its reason.

    Raises:
        BagError: No replay node answered within ``timeout_s``.
    """
    import rclpy
    from rcl_interfaces.srv import SetParameters
    from rclpy.context import Context
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.parameter import Parameter

    context = Context()
    rclpy.init(context=context)
    try:
        node = rclpy.create_node("mmsag_bag_eval_params", context=context)
        client = node.create_client(SetParameters, f"/{NODE_NAME}/set_parameters")
        if not client.wait_for_service(timeout_sec=timeout_s):
            raise BagError(f"no replay sorter node answered within {timeout_s:.0f} s")
        parameter = Parameter(name, value=value).to_parameter_msg()
        future = client.call_async(SetParameters.Request(parameters=[parameter]))
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(node)
        executor.spin_until_future_complete(future, timeout_sec=timeout_s)
        if not future.done():
            raise BagError(f"the replay sorter node did not answer within {timeout_s:.0f} s")
        result = future.result().results[0]
        return result.successful, result.reason
    finally:
        context.try_shutdown()
