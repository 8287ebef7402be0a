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


def main() -> int:
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
    args = parser.parse_args()

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
    labels: dict[int, tuple[int, float, float]] = {}
    diagnostics: list[dict[str, str]] = []
    lock = threading.Lock()

    def on_label(msg: MultiLabel) -> None:
        receipt_ns = time.time_ns()
        index = int(msg.header.frame_id.rsplit("/", 1)[1])
        with lock:
            labels[index] = (receipt_ns, float(msg.latency_ms), float(msg.inference_time_ms))

    def on_diag(msg: DiagnosticArray) -> None:
        for status in msg.status:
            values = {kv.key: kv.value for kv in status.values}
            if "dropped" in values:
                values["t_s"] = f"{time.monotonic():.3f}"
                diagnostics.append(values)

    node.create_subscription(MultiLabel, "labels", on_label, labels_qos())
    node.create_subscription(DiagnosticArray, "/diagnostics", on_diag, 10)
    executor = SingleThreadedExecutor()
    executor.add_node(node)

    deadline = time.monotonic() + args.connect_timeout_s
    while pub.get_subscription_count() == 0 or node.count_publishers("labels") == 0:
        if time.monotonic() > deadline:
            print("peer: the node under test never connected", file=sys.stderr)
            return 2
        executor.spin_once(timeout_sec=0.05)
    settle = time.monotonic() + 1.0
    while time.monotonic() < settle:
        executor.spin_once(timeout_sec=0.05)

    msg = array_to_image(_frame(args.width, args.height), "rgb8")
    stamps_ns = np.zeros(args.count, np.int64)
    publish_ms = np.zeros(args.count, np.float64)
    done = threading.Event()
    clock_start = time.monotonic()

    def camera() -> None:
        period_s = 1.0 / args.rate_hz
        next_s = time.monotonic()
        for index in range(args.count):
            pause = next_s - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            else:
                next_s = time.monotonic()  # behind schedule: no burst to catch up
            next_s += period_s
            msg.header.frame_id = f"camera_optical/{index}"
            now_ns = time.time_ns()
            msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(now_ns, 1_000_000_000)
            pub.publish(msg)
            stamps_ns[index] = now_ns
            publish_ms[index] = (time.time_ns() - now_ns) / 1e6
        done.set()

    thread = threading.Thread(target=camera, name="camera", daemon=True)
    thread.start()
    while not done.is_set():
        executor.spin_once(timeout_sec=0.05)
    camera_s = time.monotonic() - clock_start
    drain = time.monotonic() + args.drain_s
    while time.monotonic() < drain:
        executor.spin_once(timeout_sec=0.05)
    thread.join()

    with lock:
        got = dict(labels)
    indices = np.array(sorted(got), np.int64)
    receipt = np.array([got[i][0] for i in indices], np.int64)
    e2e_ms = (receipt - stamps_ns[indices]) / 1e6 if indices.size else np.zeros(0)
    node_ms = np.array([got[i][1] for i in indices])
    infer_ms = np.array([got[i][2] for i in indices])
    result = {
        "published": args.count,
        "camera_s": camera_s,
        "camera_rate_hz": args.count / camera_s,
        "publish_call_ms_p50": float(np.percentile(publish_ms, 50)),
        "labels": int(indices.size),
        "indices": indices.tolist(),
        "stamp_ns": stamps_ns[indices].tolist(),
        "receipt_ns": receipt.tolist(),
        "e2e_ms": e2e_ms.tolist(),
        "node_latency_ms": node_ms.tolist(),
        "inference_ms": infer_ms.tolist(),
        "diagnostics": diagnostics[-3:],
    }
    if not args.records:
        for key in ("indices", "stamp_ns", "receipt_ns"):
            result.pop(key)
    with open(args.out, "w") as handle:
        json.dump(result, handle)
    node.destroy_node()
    rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
