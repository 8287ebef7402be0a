"""A camera-and-controller peer for the sorter node tests (run as a script, not collected).

    python sorter_peer.py scenario --cameras cam_a,cam_b --count 6
    python sorter_peer.py lifecycle --expect ok|fail

``scenario`` publishes synthetic frames (derived from their index, see
:func:`peer_frames.make_frame`, where every frame the peer sends is made) to each camera, waits
for each frame's MultiLabel, sends bad frames, changes thresholds through the parameter service,
waits for a /diagnostics report counting the rejected frames and prints one JSON document.
``lifecycle`` drives the node through its lifecycle services and prints what each transition
returned and which labels arrived. ``debug`` sends frames first without, then with a
``debug_image`` subscriber, saves each overlay it receives as ``<out-dir>/<index>.npy`` and
reports the /diagnostics counts of both phases. ``mismatch`` publishes raw Images where the
node expects compressed ones and prints the report that names the topic. ``hostile`` sends
hostile frames and a hostile bundle on one camera while another keeps sending. Every wait is for a
condition (a label, a /diagnostics report saying so), never a fixed pause. The frame index
travels in ``header.frame_id`` (``<camera>_optical/<index>``) so the test can rebuild every
frame offline.
"""

from __future__ import annotations

import argparse
import json
import time

import cv2
import numpy as np
from peer_frames import (
    BAD_COMPRESSED,
    bayer_rggb8_fields,
    compressed_frames,
    hostile_frames,
    hostile_raw_frames,
    jpeg_of,
    large_icc_jpeg,
    make_frame,
    oversized_png,
)
from peer_frames import OVERSIZED_MAX_PIXELS as OVERSIZED_MAX_PIXELS  # read by the tests
from peer_node import WAIT_S, Peer, frame_index
from support import multilabel_summary

GOOD_AFTER_BAD = 100  # index of the good frame sent after the bad ones
THRESHOLD_INDICES = (101, 102)  # frames sent after setting threshold=0, then restoring it


def scenario(peer: Peer, count: int) -> dict:
    peer.wait_connected()
    sent = []
    for start in range(0, count, len(peer.cameras)):
        # One frame on every camera back to back: they wait together and share a batch.
        batch = [(cam, start + k) for k, cam in enumerate(peer.cameras) if start + k < count]
        for cam, index in batch:
            peer.send(cam, index)
            sent.append(index)
        peer.spin_until(lambda b=batch: all(i in peer.labels for _, i in b), WAIT_S)
    cam = peer.cameras[0]
    frame, _ = make_frame(0)
    bad = [
        peer.image(cam, 900, array=frame, encoding="32FC1"),
        peer.image(cam, 901, array=frame, encoding="rgb8", data=bytes(10)),
    ]
    for count, msg in enumerate(bad, start=1):
        peer.pubs[cam].publish(msg)
        # Its own batch, not overwritten by the next: wait until the node has rejected it.
        peer.report_after(lambda d, n=count: int(d.get("rejected", 0)) >= n, start=0)
    peer.send(cam, GOOD_AFTER_BAD)
    peer.spin_until(lambda: GOOD_AFTER_BAD in peer.labels, WAIT_S)
    params = {"zero": peer.set_parameter("threshold", 0.0)}
    peer.send(cam, THRESHOLD_INDICES[0])
    peer.spin_until(lambda: THRESHOLD_INDICES[0] in peer.labels, WAIT_S)
    params["too_high"] = peer.set_parameter("threshold", 1.5)
    params["wrong_length"] = peer.set_parameter("class_thresholds", [0.5, 0.5, 0.5])
    params["restore"] = peer.set_parameter("threshold", -1.0)
    peer.send(cam, THRESHOLD_INDICES[1])
    peer.spin_until(lambda: THRESHOLD_INDICES[1] in peer.labels, WAIT_S)
    settled = peer.settled_report(rejected=2, published=len(peer.labels))
    # A camera that never sent a frame turns stale once stale_after_s has passed.
    stale = peer.report_after(lambda d: "cam_idle" in d.get("stale_cameras", ""), start=0)
    return {
        "sent": sent,
        "labels": {str(i): multilabel_summary(m) for i, m in peer.labels.items()},
        "params": params,
        "diagnostics": peer.diagnostics,
        "settled": settled,
        "stale": stale,
    }


def _compressed_msg(peer: Peer, index: int, fmt: str, data: bytes):
    from sensor_msgs.msg import CompressedImage

    msg = CompressedImage(format=fmt, data=data)
    msg.header.frame_id = f"{peer.cameras[0]}_optical/{index}"
    msg.header.stamp = peer.node.get_clock().now().to_msg()
    return msg


def compressed(peer: Peer, bag_dir: str | None, flood_count: int) -> dict:
    peer.wait_connected()
    pub = peer.pubs[peer.cameras[0]]
    frames = compressed_frames(bag_dir)
    good = frames[-1][2]
    for index, fmt, data in frames:
        pub.publish(_compressed_msg(peer, index, fmt, data))
        peer.spin_until(lambda i=index: i in peer.labels, WAIT_S)
    bad_data = {
        "truncated": good[: len(good) // 2],
        "garbage": b"garbage" * 20,
        "empty": b"",
        "oversized": oversized_png(),
    }
    for count, (index, fmt, kind) in enumerate(BAD_COMPRESSED, start=1):
        pub.publish(_compressed_msg(peer, index, fmt, bad_data.get(kind, good)))
        peer.report_after(lambda d, n=count: int(d.get("rejected", 0)) >= n, start=0)
    good_labels = {str(i): multilabel_summary(m) for i, m in peer.labels.items()}
    before_flood = peer.settled_report(rejected=len(BAD_COMPRESSED))
    # Under load: cap inference at 2 Hz and flood; stale frames must be dropped, not queued.
    rate = peer.set_parameter("max_rate_hz", 2.0)
    peer.labels.clear()
    start = 1000
    flood_started = time.monotonic()
    for index in range(start, start + flood_count):
        pub.publish(_compressed_msg(peer, index, frames[-1][1], good))
        peer.spin_until(lambda: False, 0.01)
    last = start + flood_count - 1
    peer.spin_until(lambda: last in peer.labels, 60.0)
    flood_s = time.monotonic() - flood_started
    # Once the last frame's label is here, the node has seen all the frames it ever will.
    after_flood = peer.report_after(lambda d: d.get("in_flight") == "0")
    return {
        "labels": good_labels,
        "flood_labels": sorted(peer.labels),
        "flood_s": flood_s,
        "rate": rate,
        "before_flood": before_flood,
        "after_flood": after_flood,
        "diagnostics": peer.diagnostics,
    }


def hostile(peer: Peer, hostile_bundle: str | None, *, raw: bool = False) -> dict:
    """Hostile frames on the first camera while the second keeps sending; ledger and latency.

    Compressed (``raw`` False): the frames of :func:`hostile_frames`, then a valid JPEG with a
    large ICC profile, then ``hostile_bundle`` as the bundle. Raw: the frames of
    :func:`hostile_raw_frames`, then a valid Bayer frame. Frame indices: 0.. the good camera's
    baseline, 200.. its frames between hostile ones, 300.. the hostile frames, 400 the valid one.
    """
    bad_cam, good_cam = peer.cameras
    peer.wait_connected()

    def send_compressed(camera: str, index: int, data: bytes, fmt: str = "jpeg") -> None:
        msg = _compressed_msg(peer, index, fmt, data)
        msg.header.frame_id = f"{camera}_optical/{index}"
        peer.pubs[camera].publish(msg)

    def send_raw(camera: str, index: int, fields: dict) -> None:
        from sensor_msgs.msg import Image

        msg = Image(**fields)
        msg.header.stamp = peer.node.get_clock().now().to_msg()
        msg.header.frame_id = f"{camera}_optical/{index}"
        peer.pubs[camera].publish(msg)

    def labelled(camera: str, index: int) -> float:
        if raw:
            peer.send(camera, index)
        else:
            send_compressed(camera, index, jpeg_of(index))
        peer.spin_until(lambda: index in peer.labels, WAIT_S)
        return float(peer.labels[index].latency_ms) if index in peer.labels else -1.0

    frames = hostile_raw_frames() if raw else [(w, (f, d)) for w, f, d in hostile_frames()]
    baseline = [labelled(good_cam, i) for i in range(6)]
    during, refused = [], []
    for count, (what, frame) in enumerate(frames, start=1):
        if raw:
            send_raw(bad_cam, 300 + count, frame)
        else:
            send_compressed(bad_cam, 300 + count, frame[1], frame[0])
        during.append(labelled(good_cam, 200 + count))
        report = peer.report_after(lambda d, n=count: int(d.get("rejected", 0)) >= n, start=0)
        refused.append([what, report.get("last_rejection", "")])
    if raw:
        send_raw(bad_cam, 400, bayer_rggb8_fields(make_frame(0)[0]))
    else:
        send_compressed(bad_cam, 400, large_icc_jpeg())
    peer.spin_until(lambda: 400 in peer.labels, WAIT_S)
    # A manifest no parser survives, given as the bundle while frames flow: refused.
    swap = peer.set_parameter("bundle", hostile_bundle) if hostile_bundle else {}
    during.append(labelled(good_cam, 210))
    settled = peer.settled_report(published=len(peer.labels))
    return {
        "labels": sorted(peer.labels),
        "baseline_ms": baseline,
        "during_ms": during,
        "refused": refused,
        "swap": swap,
        "settled": settled,
        "diagnostics": peer.diagnostics,
    }


def _report_covering(peer: Peer, published: int, debug_images: int = 0) -> dict[str, str]:
    """The first /diagnostics report counting ``published`` labels and ``debug_images``."""

    def covering() -> list[dict[str, str]]:
        return [
            d
            for d in peer.diagnostics
            if int(d.get("published", 0)) >= published
            and int(d.get("debug_images_published", 0)) >= debug_images
        ]

    peer.spin_until(lambda: bool(covering()), WAIT_S)
    found = covering()
    return found[0] if found else {}


def debug(peer: Peer, count: int, out_dir: str, jpeg: bool = False) -> dict:
    from pathlib import Path

    from sensor_msgs.msg import CompressedImage, Image

    from mmsag_ros.camera.encodings import image_to_array
    from mmsag_ros.ros.qos import image_qos

    msg_type, topic = (
        (CompressedImage, "debug_image/compressed") if jpeg else (Image, "debug_image")
    )

    def pixels(msg) -> np.ndarray:
        if jpeg:
            return cv2.imdecode(np.frombuffer(bytes(msg.data), np.uint8), cv2.IMREAD_COLOR)
        return np.array(image_to_array(msg))

    peer.wait_connected()
    peer.spin_until(lambda: peer.node.count_publishers(topic) > 0, WAIT_S)
    cam = peer.cameras[0]
    for index in range(count):
        peer.send(cam, index)
        peer.spin_until(lambda i=index: i in peer.labels, WAIT_S)
    unwatched = _report_covering(peer, count)
    images: dict[int, object] = {}
    subscription = peer.node.create_subscription(
        msg_type,
        topic,
        lambda m: images.__setitem__(frame_index(m.header.frame_id), m),
        image_qos("reliable", 10),
    )
    peer.spin_until(lambda: subscription.get_publisher_count() > 0, WAIT_S)
    # The node draws only for a subscriber it has matched: wait until it reports one.
    peer.report_after(lambda d: int(d.get("debug_image_subscribers", 0)) > 0)
    for index in range(count, 2 * count):
        peer.send(cam, index)
        peer.spin_until(lambda i=index: i in peer.labels and i in images, WAIT_S)
    watched = _report_covering(peer, 2 * count, len(images))
    received = {}
    for index, msg in images.items():
        array = pixels(msg)
        np.save(Path(out_dir) / f"{index}.npy", array)
        received[str(index)] = {
            "frame_id": msg.header.frame_id,
            "stamp": [msg.header.stamp.sec, msg.header.stamp.nanosec],
            "size": [array.shape[1], array.shape[0]],
            "encoding": msg.format if jpeg else msg.encoding,
        }
    return {
        "labels": {str(i): multilabel_summary(m) for i, m in peer.labels.items()},
        "images": received,
        "unwatched": unwatched,
        "watched": watched,
    }


def _state_report(peer: Peer, state: str) -> dict:
    report = peer.report_after(lambda d: d.get("lifecycle_state") == state)
    return {k: report.get(k) for k in ("level", "message", "configure_error", "received")}


def lifecycle(peer: Peer, expect: str, retry_topics: str | None) -> dict:
    from lifecycle_msgs.msg import Transition

    result = {"before_configure": _state_report(peer, "unconfigured")}
    result["configure"] = peer.change_state(Transition.TRANSITION_CONFIGURE)
    result["after_configure"] = peer.state()
    if expect == "fail":
        result["failed_report"] = _state_report(peer, "unconfigured")
        if retry_topics is not None:
            # Unconfigured, the node takes any parameter; a configure with it then succeeds.
            result["fix"] = peer.set_parameter("camera_topics", retry_topics.split(","))
            result["retry"] = peer.change_state(Transition.TRANSITION_CONFIGURE)
            result["after_retry"] = _state_report(peer, "inactive")
        return result
    result["inactive_report"] = _state_report(peer, "inactive")
    result["activate"] = peer.change_state(Transition.TRANSITION_ACTIVATE)
    peer.wait_connected()
    cam = peer.cameras[0]
    peer.send(cam, 0)
    result["label_while_active"] = peer.spin_until(lambda: 0 in peer.labels, WAIT_S)
    result["static_while_active"] = peer.set_parameter("camera_topics", ["other"])
    result["dynamic_while_active"] = peer.set_parameter("threshold", 0.25)
    result["deactivate"] = peer.change_state(Transition.TRANSITION_DEACTIVATE)
    # The gate itself: an inactive sorter has no camera subscription at all.
    result["unsubscribed_while_inactive"] = peer.spin_until(
        lambda: peer.pubs[cam].get_subscription_count() == 0, WAIT_S
    )
    peer.send(cam, 1)
    result["reactivate"] = peer.change_state(Transition.TRANSITION_ACTIVATE)
    peer.wait_connected()
    peer.send(cam, 2)
    result["label_after_reactivate"] = peer.spin_until(lambda: 2 in peer.labels, WAIT_S)
    result["labels"] = sorted(peer.labels)
    result["deactivate_again"] = peer.change_state(Transition.TRANSITION_DEACTIVATE)
    result["cleanup"] = peer.change_state(Transition.TRANSITION_CLEANUP)
    result["after_cleanup"] = peer.state()
    result["cleanup_report"] = _state_report(peer, "unconfigured")
    result["static_while_unconfigured"] = peer.set_parameter("camera_topics", [cam])
    result["shutdown"] = peer.change_state(Transition.TRANSITION_UNCONFIGURED_SHUTDOWN)
    return result


def mismatch(peer: Peer) -> dict:
    """Offer raw Images where the node expects CompressedImage; return its ERROR report.

    The two never match, so no frame could flow: the node must tell from the ROS graph.
    """
    assert peer.pubs  # the publishers exist: that alone puts their type in the graph
    return peer.report_after(lambda d: d.get("type_mismatches", "") != "")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "role",
        choices=[
            "scenario",
            "lifecycle",
            "compressed",
            "debug",
            "mismatch",
            "hostile",
            "hostile_raw",
        ],
    )
    parser.add_argument("--bag", default=None)
    parser.add_argument("--cameras", default="image")
    parser.add_argument("--count", type=int, default=6)
    parser.add_argument("--expect", choices=["ok", "fail"], default="ok")
    parser.add_argument("--out-dir", default=".")
    parser.add_argument("--retry-topics", default=None)
    parser.add_argument("--hostile-bundle", default=None)
    parser.add_argument("--jpeg", action="store_true", help="debug: the compressed overlay")
    args = parser.parse_args()
    import rclpy

    rclpy.init()
    peer = Peer(args.cameras.split(","), compressed=args.role in ("compressed", "hostile"))
    try:
        if args.role == "scenario":
            out = scenario(peer, args.count)
        elif args.role == "compressed":
            out = compressed(peer, args.bag, args.count)
        elif args.role == "debug":
            out = debug(peer, args.count, args.out_dir, jpeg=args.jpeg)
        elif args.role == "mismatch":
            out = mismatch(peer)
        elif args.role in ("hostile", "hostile_raw"):
            out = hostile(peer, args.hostile_bundle, raw=args.role == "hostile_raw")
        else:
            out = lifecycle(peer, args.expect, args.retry_topics)
        print(json.dumps(out))
    finally:
        peer.node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    main()
