"""A camera-and-controller peer for the sorter node tests (run as a script, not collected).

    python sorter_peer.py scenario --cameras cam_a,cam_b --count 6
    python sorter_peer.py lifecycle --expect ok|fail

``scenario`` publishes synthetic frames (derived from their index, see :func:`make_frame`) to
each camera, waits for each frame's MultiLabel, sends bad frames, changes thresholds through the
parameter service, waits for a /diagnostics report counting the rejected frames and prints one
JSON document. ``lifecycle`` drives the node through its lifecycle services and prints what each
transition returned and which labels arrived. ``debug`` sends frames first without, then with a
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
import sys
import time

import cv2
import numpy as np
from support import multilabel_summary

from mmsag_ros.data.synth_scene import render_scene

ENCODINGS = ("rgb8", "bgr8", "mono8", "rgba8", "bgra8")
# How long any wait may take before the peer gives up: only reached when something is broken,
# so generous enough for a loaded CI machine.
WAIT_S = 60.0
GOOD_AFTER_BAD = 100  # index of the good frame sent after the bad ones
THRESHOLD_INDICES = (101, 102)  # frames sent after setting threshold=0, then restoring it


def make_frame(index: int) -> tuple[np.ndarray, str]:
    """The frame with this index: a synthetic conveyor scene, its size and encoding cycling."""
    size = (96 + 16 * (index % 4), 72 + 8 * (index % 3))
    rgb = render_scene(np.random.default_rng(index), image_size=size)[0]
    encoding = ENCODINGS[index % len(ENCODINGS)]
    if encoding == "bgr8":
        return np.ascontiguousarray(rgb[:, :, ::-1]), encoding
    if encoding == "mono8":
        return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), encoding
    if encoding in ("rgba8", "bgra8"):
        base = rgb if encoding == "rgba8" else rgb[:, :, ::-1]
        alpha = np.full((*rgb.shape[:2], 1), 255, np.uint8)
        return np.ascontiguousarray(np.concatenate([base, alpha], axis=2)), encoding
    return rgb, encoding


def compressed_frames(bag_dir: str | None) -> list[tuple[int, str, bytes]]:
    """``(index, format, data)`` of the compressed frames: the bag's JPEGs, then synthetic ones."""
    frames = []
    if bag_dir:
        from pathlib import Path

        from rosbags.highlevel import AnyReader

        with AnyReader([Path(bag_dir)]) as reader:
            connections = [c for c in reader.connections if c.msgtype.endswith("CompressedImage")]
            for connection, _, raw in reader.messages(connections=connections):
                msg = reader.deserialize(raw, connection.msgtype)
                frames.append((len(frames), msg.format, bytes(msg.data)))
    for index in range(len(frames), len(frames) + 3):
        bgr = np.ascontiguousarray(make_frame(5 * index)[0][..., :3])  # index % 5 == 0: rgb8
        fmt = "png" if index % 2 else "jpeg"
        frames.append((index, fmt, cv2.imencode(f".{fmt}", bgr[:, :, ::-1])[1].tobytes()))
    return frames


# Bad compressed frames: truncated JPEG, garbage, empty data, an unsupported format, and a
# small PNG announcing more pixels than the test's max_input_pixels (OVERSIZED_MAX_PIXELS).
BAD_COMPRESSED = (
    (900, "jpeg", "truncated"),
    (901, "jpeg", "garbage"),
    (902, "png", "empty"),
    (903, "tiff", "valid"),
    (904, "png", "oversized"),
)
OVERSIZED_MAX_PIXELS = 1_000_000


def oversized_png() -> bytes:
    """2000 x 1000 black pixels: a few kB of PNG, 2 MP decoded, twice the test's limit."""
    return cv2.imencode(".png", np.zeros((1000, 2000), np.uint8))[1].tobytes()


def jpeg_scans(data: bytes) -> list[tuple[int, int]]:
    """(start, end) of each SOS segment of a JPEG with its entropy-coded data."""
    spans, offset = [], 2
    while data[offset + 1] != 0xD9:
        end = offset + 2 + int.from_bytes(data[offset + 2 : offset + 4], "big")
        if data[offset + 1] == 0xDA:
            while not (data[end] == 0xFF and data[end + 1] not in (0, *range(0xD0, 0xD8))):
                end += 1
            spans.append((offset, end))
        offset = end
    return spans


def hostile_frames() -> list[tuple[str, str, bytes]]:
    """``(what, format, data)`` of compressed frames an attacker or a broken camera could send.

    Each is refused by the node, cheaply, from what its header says (see the issue's proofs):
    a small progressive JPEG that repeats its last scan 3000 times (seconds of decoding), a
    PNG announcing more pixels than allowed, data that is no image, nothing at all, a TIFF.
    """
    # A flat 1280 x 720 frame: 42 kB with its last scan (12 bytes) repeated, 2.3 s to decode.
    flat = np.full((720, 1280, 3), 90, np.uint8)
    progressive = cv2.imencode(".jpg", flat, [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])[1].tobytes()
    start, end = jpeg_scans(progressive)[-1]
    scans = progressive[:end] + progressive[start:end] * 3000 + progressive[end:]
    image = np.random.default_rng(0).integers(0, 256, (48, 64, 3), np.uint8)
    return [
        ("3000 progressive scans", "jpeg", scans),
        ("announces 2 MP", "png", oversized_png()),
        ("garbage", "jpeg", b"\xff\xd8" + b"garbage" * 50),
        ("no data", "jpeg", b""),
        ("a tiff", "tiff", cv2.imencode(".png", image)[1].tobytes()),
    ]


def large_icc_jpeg() -> bytes:
    """A valid JPEG with 240 kB of ICC profile before its frame header: must be labelled."""
    data = _jpeg_of(3)
    icc = b"".join(b"\xff\xe2" + (60_002).to_bytes(2, "big") + bytes(60_000) for _ in range(4))
    return data[:2] + icc + data[2:]


def hostile_raw_frames() -> list[tuple[str, dict]]:
    """``(what, Image fields)`` of raw frames a broken driver or an attacker could send.

    Each is refused from its fields alone, before any pixel is touched: a depth encoding, a 1x1
    frame padding its row to 4 MB, data shorter than its rows, an odd width in YUYV, a frame of
    2.2 MP against the test's 1 MP limit.
    """
    return [
        ("a 32FC1 depth frame", dict(width=4, height=4, encoding="32FC1", step=16, data=bytes(64))),
        (
            "1x1 with a 4 MB step",
            dict(width=1, height=1, encoding="rgb8", step=4_000_000, data=bytes(4_000_000)),
        ),
        (
            "data shorter than its rows",
            dict(width=64, height=48, encoding="rgb8", step=192, data=bytes(10)),
        ),
        ("yuyv of odd width", dict(width=3, height=2, encoding="yuyv", step=6, data=bytes(12))),
        (
            "2.2 MP",
            dict(width=2000, height=1100, encoding="mono8", step=2000, data=bytes(2_200_000)),
        ),
    ]


def bayer_rggb8_fields(rgb: np.ndarray) -> dict:
    """Image fields of ``rgb`` as a machine-vision camera's RGGB Bayer mosaic (valid)."""
    height, width = (rgb.shape[0] // 2) * 2, (rgb.shape[1] // 2) * 2
    mosaic = np.empty((height, width), np.uint8)
    mosaic[0::2, 0::2] = rgb[0:height:2, 0:width:2, 0]
    mosaic[0::2, 1::2] = rgb[0:height:2, 1:width:2, 1]
    mosaic[1::2, 0::2] = rgb[1:height:2, 0:width:2, 1]
    mosaic[1::2, 1::2] = rgb[1:height:2, 1:width:2, 2]
    return dict(
        width=width, height=height, encoding="bayer_rggb8", step=width, data=mosaic.tobytes()
    )


def frame_index(frame_id: str) -> int:
    return int(frame_id.rsplit("/", 1)[1])


class Peer:
    """One rclpy node holding camera publishers, the labels and diagnostics subscriptions."""

    def __init__(self, cameras: list[str], *, compressed: bool = False) -> None:
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from mmsag_ros.msg import MultiLabel
        from sensor_msgs.msg import CompressedImage, Image

        from mmsag_ros.ros.qos import image_qos, labels_qos

        self.rclpy = rclpy
        self.node = rclpy.create_node("sorter_peer")
        self.cameras = cameras
        msg_type = CompressedImage if compressed else Image
        self.pubs = {
            c: self.node.create_publisher(msg_type, c, image_qos("reliable")) for c in cameras
        }
        self.labels: dict[int, object] = {}
        self.diagnostics: list[dict[str, str]] = []
        self.node.create_subscription(MultiLabel, "labels", self._on_label, labels_qos())
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 10)

    def _on_label(self, msg) -> None:
        self.labels[frame_index(msg.header.frame_id)] = msg

    def _on_diagnostics(self, msg) -> None:
        for status in msg.status:
            report = {kv.key: kv.value for kv in status.values}
            report.update(
                level=status.level[0] if isinstance(status.level, bytes) else int(status.level),
                message=status.message,
                hardware_id=status.hardware_id,
            )
            self.diagnostics.append(report)

    def report_after(self, done, *, start: int | None = None, timeout_s: float = WAIT_S) -> dict:
        """The first /diagnostics report (received after index ``start``) for which ``done``
        holds; {} if none came in ``timeout_s``."""
        first = len(self.diagnostics) if start is None else start
        found: list[dict] = []

        def check() -> bool:
            found.extend(d for d in self.diagnostics[first:] if done(d))
            return bool(found)

        self.spin_until(check, timeout_s)
        return found[0] if found else {}

    def settled_report(self, **at_least: int) -> dict:
        """A report with nothing in flight and counters at least ``at_least``."""
        return self.report_after(
            lambda d: (
                d.get("in_flight") == "0"
                and all(int(d.get(key, 0)) >= value for key, value in at_least.items())
            ),
            start=0,
        )

    def spin_until(self, done, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while not done():
            if time.monotonic() > deadline:
                return False
            self.rclpy.spin_once(self.node, timeout_sec=0.02)
        return True

    def wait_connected(self, timeout_s: float = WAIT_S) -> None:
        ok = self.spin_until(
            lambda: (
                all(p.get_subscription_count() > 0 for p in self.pubs.values())
                and self.node.count_publishers("labels") > 0
            ),
            timeout_s,
        )
        # The node's own side of discovery: it reports when its labels publisher sees us.
        if not ok or not self.report_after(lambda d: int(d.get("labels_subscribers", 0)) > 0):
            sys.exit("peer: the sorter never connected")

    def image(self, camera: str, index: int, *, array=None, encoding=None, data=None):
        from mmsag_ros.ros.conversions import array_to_image

        frame, enc = make_frame(index) if array is None else (array, "rgb8")
        msg = array_to_image(frame, enc)
        if encoding is not None:
            msg.encoding = encoding
        if data is not None:
            msg.data = data
        msg.header.frame_id = f"{camera}_optical/{index}"
        msg.header.stamp = self.node.get_clock().now().to_msg()
        return msg

    def send(self, camera: str, index: int, **kwargs) -> None:
        self.pubs[camera].publish(self.image(camera, index, **kwargs))

    def set_parameter(self, name: str, value) -> dict:
        from rcl_interfaces.srv import SetParameters
        from rclpy.parameter import Parameter

        client = self.node.create_client(SetParameters, "/sorter/set_parameters")
        client.wait_for_service(timeout_sec=WAIT_S)
        future = client.call_async(
            SetParameters.Request(parameters=[Parameter(name, value=value).to_parameter_msg()])
        )
        self.rclpy.spin_until_future_complete(self.node, future, timeout_sec=WAIT_S)
        result = future.result().results[0]
        return {"successful": result.successful, "reason": result.reason}

    def change_state(self, transition_id: int) -> bool:
        from lifecycle_msgs.msg import Transition
        from lifecycle_msgs.srv import ChangeState

        client = self.node.create_client(ChangeState, "/sorter/change_state")
        client.wait_for_service(timeout_sec=WAIT_S)
        request = ChangeState.Request(transition=Transition(id=transition_id))
        future = client.call_async(request)
        self.rclpy.spin_until_future_complete(self.node, future, timeout_sec=WAIT_S)
        return bool(future.result().success)

    def state(self) -> str:
        from lifecycle_msgs.srv import GetState

        client = self.node.create_client(GetState, "/sorter/get_state")
        client.wait_for_service(timeout_sec=WAIT_S)
        future = client.call_async(GetState.Request())
        self.rclpy.spin_until_future_complete(self.node, future, timeout_sec=WAIT_S)
        return future.result().current_state.label


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


_TO_BGR = {"rgb8": cv2.COLOR_RGB2BGR, "rgba8": cv2.COLOR_RGBA2BGR, "bgra8": cv2.COLOR_BGRA2BGR}


def _jpeg_of(index: int) -> bytes:
    frame, encoding = make_frame(index)
    if encoding in _TO_BGR:
        frame = cv2.cvtColor(frame, _TO_BGR[encoding])
    return cv2.imencode(".jpg", frame)[1].tobytes()


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
            send_compressed(camera, index, _jpeg_of(index))
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
