"""Camera-and-receiver peer for bench/node_latency.py (run as a script in its own process).

    python bench/node_peers.py --rate-hz 30 --count 600 --out peer.json

One rclpy node publishes 1280x720 rgb8 ``sensor_msgs/Image`` frames on ``image`` from a pacing
thread (the header stamp is set to the wall clock right before ``publish``, the frame index
travels in ``header.frame_id``), and receives the ``MultiLabel`` answers on ``labels`` and
``/diagnostics`` in the main thread. Both ends live in one process, so publish stamp and
receipt time come from one clock. Writes one JSON document with per-frame records.

The camera publisher uses the plain ``create_publisher(Image, topic, 10)`` profile (reliable,
keep last 10), as a camera driver without special QoS would; it matches both the sorter's
best-effort subscription and the baseline's reliable one.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = ["main"]


def _frame(width: int, height: int) -> np.ndarray:
    """A deterministic non-trivial 1280x720-like rgb frame (gradients plus noise)."""
    rng = np.random.default_rng(0)
    ys, xs = np.mgrid[0:height, 0:width]
    base = np.stack(
        [xs * 255 // max(width - 1, 1), ys * 255 // max(height - 1, 1), (xs + ys) % 256]
    )
    noise = rng.integers(0, 32, (3, height, width))
    return np.ascontiguousarray(((base + noise) % 256).astype(np.uint8).transpose(1, 2, 0))


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate-hz", type=float, default=30.0)
    parser.add_argument("--count", type=int, default=300, help="camera frames to publish")
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=720)
    parser.add_argument("--connect-timeout-s", type=float, default=30.0)
    parser.add_argument(
        "--drain-s", type=float, default=3.0, help="wait for labels after the last frame"
    )
    parser.add_argument("--records", action="store_true", help="keep per-frame records in the JSON")
    parser.add_argument("--out", required=True)
    return parser.parse_args()


class _Receiver:
    """The answers: (receipt ns, node latency ms, inference ms) per frame index, diagnostics."""

    def __init__(self) -> None:
        self.labels: dict[int, tuple[int, float, float]] = {}
        self.diagnostics: list[dict[str, str]] = []
        self._lock = threading.Lock()

    def on_label(self, msg: Any) -> None:
        receipt_ns = time.time_ns()
        index = int(msg.header.frame_id.rsplit("/", 1)[1])
        with self._lock:
            self.labels[index] = (receipt_ns, float(msg.latency_ms), float(msg.inference_time_ms))

    def on_diag(self, msg: Any) -> None:
        for status in msg.status:
            values = {kv.key: kv.value for kv in status.values}
            if "dropped" in values:
                values["t_s"] = f"{time.monotonic():.3f}"
                self.diagnostics.append(values)

    def snapshot(self) -> dict[int, tuple[int, float, float]]:
        with self._lock:
            return dict(self.labels)


class _Camera(threading.Thread):
    """Publishes ``count`` copies of one frame at ``rate_hz``, each stamped right before."""

    def __init__(self, pub: Any, msg: Any, count: int, rate_hz: float) -> None:
        super().__init__(name="camera", daemon=True)
        self.pub, self.msg, self.count, self.period_s = pub, msg, count, 1.0 / rate_hz
        self.stamps_ns = np.zeros(count, np.int64)
        self.publish_ms = np.zeros(count, np.float64)
        self.done = threading.Event()

    def run(self) -> None:
        next_s = time.monotonic()
        for index in range(self.count):
            pause = next_s - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            else:
                next_s = time.monotonic()  # behind schedule: no burst to catch up
            next_s += self.period_s
            self.msg.header.frame_id = f"camera_optical/{index}"
            now_ns = time.time_ns()
            self.msg.header.stamp.sec, self.msg.header.stamp.nanosec = divmod(now_ns, 1_000_000_000)
            self.pub.publish(self.msg)
            self.stamps_ns[index] = now_ns
            self.publish_ms[index] = (time.time_ns() - now_ns) / 1e6
        self.done.set()


def _spin_until(executor: Any, condition: Callable[[], bool], deadline: float) -> bool:
    """Spin until ``condition()`` holds (True) or the monotonic ``deadline`` passes (False)."""
    while not condition():
        if time.monotonic() > deadline:
            return False
        executor.spin_once(timeout_sec=0.05)
    return True


def _result(
    args: argparse.Namespace, receiver: _Receiver, camera: _Camera, camera_s: float
) -> dict[str, Any]:
    got = receiver.snapshot()
    indices = np.array(sorted(got), np.int64)
    receipt = np.array([got[i][0] for i in indices], np.int64)
    e2e_ms = (receipt - camera.stamps_ns[indices]) / 1e6 if indices.size else np.zeros(0)
    result = {
        "published": args.count,
        "camera_s": camera_s,
        "camera_rate_hz": args.count / camera_s,
        "publish_call_ms_p50": float(np.percentile(camera.publish_ms, 50)),
        "labels": int(indices.size),
        "indices": indices.tolist(),
        "stamp_ns": camera.stamps_ns[indices].tolist(),
        "receipt_ns": receipt.tolist(),
        "e2e_ms": e2e_ms.tolist(),
        "node_latency_ms": [got[i][1] for i in indices.tolist()],
        "inference_ms": [got[i][2] for i in indices.tolist()],
        "diagnostics": receiver.diagnostics[-3:],
    }
    if not args.records:
        for key in ("indices", "stamp_ns", "receipt_ns"):
            result.pop(key)
    return result


def main() -> int:
    args = _parse_args()

    import rclpy
    from diagnostic_msgs.msg import DiagnosticArray
    from mmsag_ros.msg import MultiLabel
    from rclpy.executors import SingleThreadedExecutor
    from sensor_msgs.msg import Image

    from mmsag_ros.ros.conversions import array_to_image
    from mmsag_ros.ros.qos import labels_qos

    rclpy.init()
    node = rclpy.create_node("bench_camera")
    pub = node.create_publisher(Image, "image", 10)
    receiver = _Receiver()
    node.create_subscription(MultiLabel, "labels", receiver.on_label, labels_qos())
    node.create_subscription(DiagnosticArray, "/diagnostics", receiver.on_diag, 10)
    executor = SingleThreadedExecutor()
    executor.add_node(node)

    def connected() -> bool:
        return pub.get_subscription_count() > 0 and node.count_publishers("labels") > 0

    if not _spin_until(executor, connected, time.monotonic() + args.connect_timeout_s):
        print("peer: the node under test never connected", file=sys.stderr)
        return 2
    _spin_until(executor, lambda: False, time.monotonic() + 1.0)  # let discovery settle

    msg = array_to_image(_frame(args.width, args.height), "rgb8")
    camera = _Camera(pub, msg, args.count, args.rate_hz)
    clock_start = time.monotonic()
    camera.start()
    _spin_until(executor, camera.done.is_set, float("inf"))
    camera_s = time.monotonic() - clock_start
    _spin_until(executor, lambda: False, time.monotonic() + args.drain_s)
    camera.join()

    with open(args.out, "w") as handle:
        json.dump(_result(args, receiver, camera, camera_s), handle)
    node.destroy_node()
    rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
