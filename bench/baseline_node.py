"""The baseline to beat: a plain per-callback classifier node (run as a script).

    python bench/baseline_node.py --bundle <dir> [--timing-out timing.json]

What a first ROS node usually looks like: a subscription with the default QoS (reliable, keep
last 10), the image copied out of the message into a freshly allocated array every frame,
``Classifier.classify_one`` inside the callback and the MultiLabel published from there. Frames
that arrive while a callback runs wait in the reader's queue (up to 10), so a model slower than
the camera builds a backlog. Same classifier, backend and message fields as the sorter, so the
difference is only the node's structure.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

__all__ = ["main"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", required=True)
    parser.add_argument("--backend", default="onnxruntime")
    parser.add_argument("--timing-out", help="write per-frame callback timings here at exit")
    args, ros_args = parser.parse_known_args()

    import rclpy
    from mmsag_ros.msg import MultiLabel
    from rclpy.executors import ExternalShutdownException
    from sensor_msgs.msg import Image

    from mmsag_ros.ros.conversions import prediction_to_message
    from mmsag_ros.runtime.classifier import Classifier

    rclpy.init(args=[sys.argv[0], *ros_args])
    node = rclpy.create_node("baseline_sorter")
    classifier = Classifier(args.bundle, backend=args.backend, device="cpu", max_batch=1)
    classifier.warmup(1)
    pub = node.create_publisher(MultiLabel, "labels", 10)
    records: dict[str, dict[str, float]] = {}

    def on_image(msg: Image) -> None:
        callback_ns = time.time_ns()
        started = time.perf_counter()
        # Per-frame allocation: a fresh array copied out of the message every time.
        image = np.array(msg.data, dtype=np.uint8).reshape(msg.height, msg.width, 3)
        converted = time.perf_counter()
        prediction = classifier.classify_one(image, "rgb")
        classified = time.perf_counter()
        out = prediction_to_message(
            prediction,
            header=msg.header,
            model_id=classifier.model_id,
            class_names=classifier.labels.names,
        )
        stamp_ns = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
        publish_in_ns = time.time_ns()
        out.latency_ms = (publish_in_ns - stamp_ns) / 1e6
        pub.publish(out)
        if args.timing_out:
            timings = prediction.timings
            records[msg.header.frame_id.rsplit("/", 1)[1]] = {
                "callback_ns": callback_ns,
                "decode_ms": 1000.0 * (converted - started),
                "preprocess_ms": timings.preprocess_ms,
                "inference_ms": timings.inference_ms,
                "postprocess_ms": timings.postprocess_ms,
                "classify_ms": 1000.0 * (classified - converted),
                "publish_in_ns": publish_in_ns,
                "publish_out_ns": time.time_ns(),
            }

    node.create_subscription(Image, "image", on_image, 10)
    try:
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        # The timings first: a shutdown step that hangs (the bench kills the node after 30 s;
        # it happened once in 2 runs) must not lose them.
        if args.timing_out:
            with open(args.timing_out, "w") as handle:
                json.dump({"notes": [], "frames": records}, handle)
        classifier.close()
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
