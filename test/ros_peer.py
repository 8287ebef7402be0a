"""A publisher or subscriber process for transport tests (run as a script, not collected).

Both sides derive every message from its index, so the test can rebuild what should have
arrived and compare field by field:

    python ros_peer.py publish   --kind image --reliability best_effort --count 30
    python ros_peer.py subscribe --kind image --reliability best_effort --count 30

The subscriber prints one JSON document with a summary of each message it received, then exits
once it has ``--count`` messages or ``--timeout-s`` passed. The publisher waits for a
subscriber, publishes, then lingers so reliable delivery can finish, until killed.
"""

from __future__ import annotations

import argparse
import faulthandler
import hashlib
import json
import signal
import sys
import time

import numpy as np
import rclpy
from mmsag_ros.msg import AttentionPeak, InstancePeaks, MultiLabel
from rclpy.executors import ExternalShutdownException
from sensor_msgs.msg import Image
from std_msgs.msg import Header
from support import multilabel_summary

from mmsag_ros.camera.encodings import image_to_array
from mmsag_ros.ros.conversions import array_to_image
from mmsag_ros.ros.qos import image_qos, labels_qos

WIDTH, HEIGHT = 1280, 720
CLASSES = ["waste_bag", "metal", "shoe", "plastic", "bottle", "carton", "lile", "galss"]


def make_header(index: int) -> Header:
    header = Header(frame_id=f"camera_{index % 3}_optical_frame")
    header.stamp.sec = 1_700_000_000 + index
    header.stamp.nanosec = 1_000 * index + 7
    return header


def make_pixels(index: int) -> np.ndarray:
    return np.random.default_rng(index).integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)


def make_image(index: int) -> Image:
    return array_to_image(make_pixels(index), "rgb8", make_header(index))


def make_labels(index: int) -> MultiLabel:
    rng = np.random.default_rng(1000 + index)
    scores = rng.random(len(CLASSES), dtype=np.float32)
    thresholds = np.full(len(CLASSES), 0.5, dtype=np.float32)
    thresholds[index % len(CLASSES)] = 0.25
    peaks = [
        AttentionPeak(x=float(x), y=float(y), strength=float(s))
        for x, y, s in rng.random((len(CLASSES), 3), dtype=np.float32)
    ]
    return MultiLabel(
        header=make_header(index),
        model_id=f"mmsag_effl0_224@{index:012x}",
        class_names=CLASSES,
        scores=scores.tolist(),
        decisions=(scores >= thresholds).tolist(),
        thresholds=thresholds.tolist(),
        peaks=peaks,
        # 0 to 3 points per class: empty and nested sequences both cross the wire.
        instances=[
            InstancePeaks(peaks=[*peaks[c : c + 1], *peaks[: c % 3]][: c % 4])
            for c in range(len(CLASSES))
        ],
        inference_time_ms=float(index) / 4,
        latency_ms=float(index) / 2,
        image_width=320 + index,
        image_height=240,
        contract_version=MultiLabel.CONTRACT_VERSION,
    )


def summarize(msg: Image | MultiLabel) -> dict:
    """Reduce a message to JSON: every field, with image pixels as a digest."""
    if not isinstance(msg, Image):
        return multilabel_summary(msg)
    return {
        "stamp": [msg.header.stamp.sec, msg.header.stamp.nanosec],
        "frame_id": msg.header.frame_id,
        "width": msg.width,
        "height": msg.height,
        "encoding": msg.encoding,
        "step": msg.step,
        "sha256": hashlib.sha256(image_to_array(msg).tobytes()).hexdigest(),
    }


def _qos(kind: str, reliability: str):
    return image_qos(reliability) if kind == "image" else labels_qos(reliability)


def publish(node, args) -> None:
    msg_type, make = (Image, make_image) if args.kind == "image" else (MultiLabel, make_labels)
    publisher = node.create_publisher(msg_type, args.topic, _qos(args.kind, args.reliability))
    deadline = time.monotonic() + args.timeout_s
    while publisher.get_subscription_count() == 0:
        if time.monotonic() > deadline:
            sys.exit("publisher: no subscriber appeared")
        rclpy.spin_once(node, timeout_sec=0.05)
    time.sleep(0.5)  # let the subscriber's side of discovery settle too
    for index in range(args.count):
        publisher.publish(make(index))
        rclpy.spin_once(node, timeout_sec=args.period_s)
    # Linger so reliable delivery can complete: until the subscriber has gone, a condition the
    # peer sees itself (a SIGINT that a loaded machine delivers mid-wait could be lost in spin).
    while publisher.get_subscription_count() > 0:
        rclpy.spin_once(node, timeout_sec=0.1)


def subscribe(node, args) -> None:
    msg_type = Image if args.kind == "image" else MultiLabel
    received = []
    node.create_subscription(
        msg_type,
        args.topic,
        lambda m: received.append(summarize(m)),
        _qos(args.kind, args.reliability),
    )
    deadline = time.monotonic() + args.timeout_s
    while len(received) < args.count and time.monotonic() < deadline:
        rclpy.spin_once(node, timeout_sec=0.05)
    print(json.dumps({"received": received}))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("role", choices=["publish", "subscribe"])
    parser.add_argument("--kind", choices=["image", "labels"], required=True)
    parser.add_argument("--reliability", choices=["best_effort", "reliable"], required=True)
    parser.add_argument("--topic", default="frames")
    parser.add_argument("--count", type=int, default=20)
    parser.add_argument("--period-s", type=float, default=0.05)
    parser.add_argument("--timeout-s", type=float, default=30.0)
    args = parser.parse_args()
    # SIGUSR1 prints every thread's stack: the test asks for it before killing a stuck peer.
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    rclpy.init()
    node = rclpy.create_node(f"peer_{args.role}")
    try:
        (publish if args.role == "publish" else subscribe)(node, args)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    main()
