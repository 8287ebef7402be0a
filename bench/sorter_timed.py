"""The shipped sorter node plus per-stage timestamps, for the breakdown in bench/node_latency.py.

    python bench/sorter_timed.py --out timing.json --ros-args -p bundle:=<dir> ...

Runs :class:`mmsag_ros.ros.sorter_node.SorterNode` unchanged apart from thin wrappers (installed
here, not in the package) that note, per frame, the wall-clock time of the subscription
callback, of the worker taking the batch, the decode (conversion) duration, the classifier's
stage timings and the time around ``_publish``. The wrappers cost a few microseconds per frame.
Whatever hook point the node no longer has is skipped with a note in the output.
"""

from __future__ import annotations

import functools
import json
import sys
import time
from typing import Any

__all__ = ["main"]


def _index(msg: Any) -> int | None:
    try:
        return int(msg.header.frame_id.rsplit("/", 1)[1])
    except (AttributeError, ValueError, IndexError):
        return None


def install(records: dict[int, dict[str, float]], notes: list[str]) -> None:
    """Wrap the node's hook points so each frame's times land in ``records``."""
    from mmsag_ros.ros import camera_input, sorter_node, worker

    def rec(msg: Any) -> dict[str, float]:
        index = _index(msg)
        return records.setdefault(-1 if index is None else index, {})

    input_cls, node_cls = camera_input.CameraInput, sorter_node.SorterNode
    if hasattr(input_cls, "_on_frame"):
        original_on_frame = input_cls._on_frame

        @functools.wraps(original_on_frame)
        def on_frame(self: Any, camera: str, msg: Any, *rest: Any, **kw: Any) -> Any:
            rec(msg)["callback_ns"] = time.time_ns()
            return original_on_frame(self, camera, msg, *rest, **kw)

        input_cls._on_frame = on_frame
    else:
        notes.append("CameraInput._on_frame missing: no callback times")

    if hasattr(worker.FrameWorker, "_process"):
        original_process = worker.FrameWorker._process

        @functools.wraps(original_process)
        def process(self: Any, frames: list[Any], *rest: Any, **kw: Any) -> Any:
            now = time.time_ns()
            for frame in frames:
                entry = rec(frame.msg)
                entry["taken_ns"] = now
                entry["batch"] = len(frames)
            return original_process(self, frames, *rest, **kw)

        worker.FrameWorker._process = process
    else:
        notes.append("FrameWorker._process missing: no worker pick-up times")

    if hasattr(worker, "decode_frame"):
        original_decode = worker.decode_frame

        @functools.wraps(original_decode)
        def decode(msg: Any, *rest: Any, **kw: Any) -> Any:
            started = time.perf_counter()
            try:
                return original_decode(msg, *rest, **kw)
            finally:
                rec(msg)["decode_ms"] = 1000.0 * (time.perf_counter() - started)

        worker.decode_frame = decode
    else:
        notes.append("worker.decode_frame missing: no conversion times")

    if hasattr(node_cls, "_publish"):
        original_publish = node_cls._publish

        @functools.wraps(original_publish)
        def publish(self: Any, frame: Any, prediction: Any, *rest: Any, **kw: Any) -> Any:
            entry = rec(frame.msg)
            entry["publish_in_ns"] = time.time_ns()
            timings = getattr(prediction, "timings", None)
            if timings is not None:
                entry["preprocess_ms"] = timings.preprocess_ms
                entry["inference_ms"] = timings.inference_ms
                entry["postprocess_ms"] = timings.postprocess_ms
            try:
                return original_publish(self, frame, prediction, *rest, **kw)
            finally:
                entry["publish_out_ns"] = time.time_ns()

        node_cls._publish = publish
    else:
        notes.append("SorterNode._publish missing: no publish times")


def main() -> int:
    args = sys.argv[1:]
    if len(args) < 2 or args[0] != "--out":
        print("usage: sorter_timed.py --out FILE --ros-args ...", file=sys.stderr)
        return 2
    out_path, ros_args = args[1], args[2:]
    records: dict[int, dict[str, float]] = {}
    notes: list[str] = []
    install(records, notes)

    from mmsag_ros.ros.sorter import main as run_sorter

    try:
        run_sorter([sys.argv[0], *ros_args])  # the shipped main(), with the timers installed
    finally:
        with open(out_path, "w") as handle:
            json.dump({"notes": notes, "frames": {str(k): v for k, v in records.items()}}, handle)
    return 0


if __name__ == "__main__":
    sys.exit(main())
