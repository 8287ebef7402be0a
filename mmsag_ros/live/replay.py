"""Live replay: a bag's frames through a real ``sorter`` node process, its labels collected.

:func:`replay_through_sorter` starts the sorter as its own process, as deployed
(``python -m mmsag_ros.ros.sorter`` with the bundle, subscribed to the bag's camera topics),
replays the bag into it with :func:`~mmsag_ros.live.play.play_bag` and collects every
``MultiLabel`` it publishes, keyed to the frame it describes by header stamp and ``frame_id``.

The replay restamps every frame with the time it is published, so the node's own
``latency_ms`` (which counts from ``header.stamp``) measures the node rather than the bag's
age; each label is mapped back to the recorded frame through its restamped ``(stamp,
frame_id)``, and reported (and recorded) with the recorded stamp. Latency is also measured in
this process on one monotonic clock, from the moment the player publishes a frame to the moment
its label arrives, so it includes both DDS hops. The node's ``/diagnostics`` totals say how many
frames it received, dropped under its latest-frame policy, rejected as undecodable or failed to
classify; frames sent but never received were lost in transport.

The replay publishes the bag's camera topics in the current ROS domain: give it a
``ROS_DOMAIN_ID`` of its own when a real cell runs on the same network.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mmsag_ros._share import default_dds_profile
from mmsag_ros.bag.frames import (
    COMPRESSED_TYPE,
    MULTILABEL_TYPE,
    cdr_header,
    image_connections,
    open_bag,
    restamp_cdr,
    stamp_to_ns,
)
from mmsag_ros.errors import BagError, ConfigError
from mmsag_ros.live.play import play_bag

__all__ = [
    "LiveLabel",
    "LiveRun",
    "NodeCounts",
    "format_live_label",
    "replay_through_sorter",
    "set_replay_parameter",
]

_log = logging.getLogger(__name__)

NODE_NAME = "mmsag_bag_eval_sorter"
OUTPUT_TOPIC = "/mmsag_bag_eval/labels"
_DIAGNOSTICS_PERIOD_S = 0.5
# A /diagnostics report counts a frame only once the frame has crossed DDS. A frame the node has
# not received by the end of the replay may be crossing still or lost for good (overwritten in
# its keep-last-1 queue, dropped in transport), which look the same from outside: unless every
# frame arrived, take the totals from a report made at least this long after the replay.
_TRANSPORT_MARGIN_NS = 250_000_000
_POLL_S = 0.05


@dataclass(frozen=True)
class LiveLabel:
    """One ``MultiLabel`` the sorter published during the replay.

    Attributes:
        stamp_ns: The recorded ``header.stamp`` of the frame it describes, integer nanoseconds
            (the node saw the frame restamped).
        frame_id: ``header.frame_id``.
        scores: (C,) float64 scores in model order.
        decisions: (C,) bool decisions at the node's thresholds.
        thresholds: (C,) the thresholds the node decided with.
        latency_ms: Frame published by the player -> label received here.
        inference_ms: The node's ``inference_time_ms`` for the batch holding the frame.
        node_latency_ms: The node's ``latency_ms``: restamped frame -> label published.
        peaks: (C, 3) the message's attention peaks ``(x, y, strength)``; (0, 3) without.
        instances: Per class, (k, 3) instance points of ``MultiLabel.instances``; empty
            without.
        model_id: The ``model_id`` the label names (it changes at a model swap).
    """

    stamp_ns: int
    frame_id: str
    scores: np.ndarray
    decisions: np.ndarray
    thresholds: np.ndarray
    latency_ms: float
    inference_ms: float
    node_latency_ms: float
    peaks: np.ndarray = field(default_factory=lambda: np.zeros((0, 3), np.float32))
    instances: tuple[np.ndarray, ...] = ()
    model_id: str = ""


def _points(peaks: Any) -> np.ndarray:
    """AttentionPeak messages as a (k, 3) float32 array of ``(x, y, strength)``."""
    return np.array([(p.x, p.y, p.strength) for p in peaks], np.float32).reshape(-1, 3)


@dataclass
class NodeCounts:
    """The sorter's own totals, from one ``/diagnostics`` report.

    The node reads them under one lock, so ``received == published + dropped + rejected +
    failed + in_flight`` holds in every report.

    Attributes:
        received: Frames that reached its subscription callbacks.
        published: Labels it published.
        dropped: Frames overwritten by a newer one before inference (latest-frame policy).
        rejected: Frames it could not decode.
        failed: Frames whose inference or publication raised.
        in_flight: Frames received and not yet published, dropped, rejected or failed.
        last_failure: Why the last failed frame failed ("" if none did).
    """

    received: int = 0
    published: int = 0
    dropped: int = 0
    rejected: int = 0
    failed: int = 0
    in_flight: int = 0
    last_failure: str = ""

    @classmethod
    def from_values(cls, values: dict[str, str]) -> NodeCounts:
        """Parse a sorter status's key/values.

        A node that predates the ``failed`` and ``in_flight`` keys counts no failures, and
        what its totals leave unaccounted is in flight.

        Raises:
            KeyError: A total is missing.
            ValueError: A total is not an integer.
        """
        received, published, dropped, rejected = (
            int(values[key]) for key in ("received", "published", "dropped", "rejected")
        )
        failed = int(values.get("failed", 0))
        unaccounted = received - published - dropped - rejected - failed
        return cls(
            received=received,
            published=published,
            dropped=dropped,
            rejected=rejected,
            failed=failed,
            in_flight=int(values.get("in_flight", unaccounted)),
            last_failure=values.get("last_failure", ""),
        )


@dataclass
class LiveRun:
    """What :func:`replay_through_sorter` saw.

    Attributes:
        sent: Frames the player published.
        labels: Labels that matched a sent frame, in arrival order.
        node: The node's totals in the report the replay settled on (else its last one).
        stray_labels: Labels whose stamp and frame_id match no sent frame.
        model_id: The bundle's model id, as the node reported it.
        backend: The backend the node ran.
        replay_s: Wall time of the replay.
        complete: After the replay the node reported nothing in flight and every label it
            had published had arrived here, before it was stopped.
        interrupted: The replay was stopped early.
        recorded: The bag the labels were written to, or None.
        diagnostics: The key/values of the node's last ``/diagnostics`` report (its drift
            watch, capture counts, ...), and ``level`` and ``message``.
    """

    sent: int
    labels: list[LiveLabel]
    node: NodeCounts
    stray_labels: int
    model_id: str
    backend: str
    replay_s: float
    complete: bool
    interrupted: bool
    recorded: Path | None = None
    diagnostics: dict[str, str] = field(default_factory=dict)

    @property
    def not_received(self) -> int:
        """Frames sent that never reached the node's callback.

        Its camera subscription keeps only the newest frame (keep-last 1), so frames sent
        faster than its executor takes them are overwritten in the DDS queue; over a network
        some are lost in transport; a message whose bytes do not deserialize is discarded by
        the middleware. These cannot be told apart from outside.
        """
        return max(0, self.sent - self.node.received)

    @property
    def latencies_ms(self) -> np.ndarray:
        """Per-label latencies (player publish -> label received), milliseconds."""
        return np.array([label.latency_ms for label in self.labels], dtype=np.float64)

    @property
    def node_latencies_ms(self) -> np.ndarray:
        """Per-label ``latency_ms`` of the node (restamped frame -> label published)."""
        return np.array([label.node_latency_ms for label in self.labels], dtype=np.float64)

    def summary(self) -> dict[str, Any]:
        """JSON-ready counts and latency percentiles."""
        inference = np.array([label.inference_ms for label in self.labels], dtype=np.float64)

        def percentiles(values: np.ndarray) -> dict[str, float | None]:
            keys = ("p50", "p95", "p99")
            if values.size == 0:
                return dict.fromkeys((*keys, "max"))
            found = np.percentile(values, (50, 95, 99))
            return {**dict(zip(keys, map(float, found), strict=True)), "max": float(values.max())}

        return {
            "sent": self.sent,
            "labelled": len(self.labels),
            "received_by_node": self.node.received,
            "dropped_in_node": self.node.dropped,
            "not_received_by_node": self.not_received,
            "rejected_by_node": self.node.rejected,
            "failed_in_node": self.node.failed,
            "last_failure_in_node": self.node.last_failure,
            "stray_labels": self.stray_labels,
            "complete": self.complete,
            "interrupted": self.interrupted,
            "replay_s": round(self.replay_s, 3),
            "backend": self.backend,
            "latency_ms": percentiles(self.latencies_ms),
            "node_latency_ms": percentiles(self.node_latencies_ms),
            "inference_ms": percentiles(inference),
        }

    def report_lines(self) -> list[str]:
        """The replay's lines of the text report."""
        summary = self.summary()
        latency, node, inference = (
            summary[key] for key in ("latency_ms", "node_latency_ms", "inference_ms")
        )
        lines = [
            f"live, through a sorter node ({self.backend or 'backend unknown'}): {self.sent} "
            f"frames sent in {self.replay_s:.1f} s, {len(self.labels)} labelled, "
            f"{self.node.rejected} rejected as undecodable, {self.node.failed} failed in the node",
            f"  dropped in the node under its latest-frame policy: {self.node.dropped}; never "
            f"reached it: {self.not_received} (overwritten in its keep-last-1 DDS queue, lost in "
            f"transport or not deserializable)",
        ]
        if self.node.last_failure:
            lines.append(f"  last failure in the node: {self.node.last_failure}")
        if latency["p50"] is not None:
            lines += [
                f"  latency, frame published -> label received: p50 {latency['p50']:.1f}, "
                f"p95 {latency['p95']:.1f}, p99 {latency['p99']:.1f}, max {latency['max']:.1f} ms; "
                f"inference p50 {inference['p50']:.1f} ms",
                f"  the node's latency_ms, frame stamped at publication -> label published: "
                f"p50 {node['p50']:.1f}, p95 {node['p95']:.1f}, p99 {node['p99']:.1f}, "
                f"max {node['max']:.1f} ms",
            ]
        if self.stray_labels:
            lines.append(f"  {self.stray_labels} labels matched no frame sent in this replay")
        if not self.complete and not self.interrupted:
            lines.append("  the node did not account for every frame in time: counts may be short")
        if self.interrupted:
            lines.append("  interrupted: the report covers the frames replayed so far")
        return lines


@dataclass
class _Collected:
    # Published (restamped) (stamp, frame_id) -> (monotonic send time, recorded stamp).
    sent: dict[tuple[int, str], tuple[int, int]] = field(default_factory=dict)
    labels: list[LiveLabel] = field(default_factory=list)
    raw_labels: list[tuple[int, bytes]] = field(default_factory=list)
    stray: int = 0
    counts: NodeCounts | None = None
    counts_stamp_ns: int = 0
    camera_publishers: int = 0
    # The node's last report: key/values, level and message.
    diagnostics: dict[str, str] = field(default_factory=dict)


class _Collector:
    """The evaluator's own node: keys sent frames, receives labels and diagnostics."""

    def __init__(self, on_label: Callable[[LiveLabel], None] | None) -> None:
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.context import Context
        from rclpy.executors import SingleThreadedExecutor

        from mmsag_ros.ros.qos import labels_qos

        self._on_label = on_label
        self.lock = threading.Lock()
        self.data = _Collected()
        self.context = Context()
        rclpy.init(context=self.context)
        self.node = rclpy.create_node("mmsag_bag_eval", context=self.context)
        self._label_type = _multilabel_class()
        self.labels_sub = self.node.create_subscription(
            self._label_type, OUTPUT_TOPIC, self._on_raw_label, labels_qos(depth=1000), raw=True
        )
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 10)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.thread = threading.Thread(target=self._spin, name="bag-eval-spin", daemon=True)
        self.thread.start()

    def _spin(self) -> None:
        from rclpy.executors import ExternalShutdownException

        try:
            while self.context.ok():
                self.executor.spin_once(timeout_sec=_POLL_S)
        except ExternalShutdownException:
            pass

    def frame_sent(self, topic: str, published: bytes, recorded: bytes) -> None:
        try:
            key, (recorded_ns, _) = cdr_header(published), cdr_header(recorded)
        except BagError:
            return  # the node will reject it too; it stays counted as sent
        with self.lock:
            self.data.sent.setdefault(key, (time.monotonic_ns(), recorded_ns))

    def _on_raw_label(self, raw: bytes) -> None:
        from rclpy.serialization import deserialize_message

        arrived_ns = time.monotonic_ns()
        msg = deserialize_message(raw, self._label_type)
        key = (stamp_to_ns(msg.header.stamp), msg.header.frame_id)
        with self.lock:
            sent = self.data.sent.get(key)
            if sent is None:
                self.data.raw_labels.append((time.time_ns(), raw))
                self.data.stray += 1
                return
            sent_ns, recorded_ns = sent
            # Recorded with the frame's own stamp, so the labels line up with the source bag.
            self.data.raw_labels.append((time.time_ns(), restamp_cdr(raw, recorded_ns)))
            label = LiveLabel(
                stamp_ns=recorded_ns,
                frame_id=key[1],
                scores=np.asarray(msg.scores, dtype=np.float64),
                decisions=np.asarray(msg.decisions, dtype=bool),
                thresholds=np.asarray(msg.thresholds, dtype=np.float32),
                latency_ms=(arrived_ns - sent_ns) / 1e6,
                inference_ms=float(msg.inference_time_ms),
                node_latency_ms=float(msg.latency_ms),
                peaks=_points(msg.peaks),
                instances=tuple(_points(group.peaks) for group in msg.instances),
                model_id=msg.model_id,
            )
            self.data.labels.append(label)
        if self._on_label is not None:
            self._on_label(label)

    def _on_diagnostics(self, msg: Any) -> None:
        for status in msg.status:
            if NODE_NAME not in status.name:
                continue
            values = {item.key: item.value for item in status.values}
            try:
                counts = NodeCounts.from_values(values)
                camera_publishers = int(values.get("camera_publishers") or 0)
            except (KeyError, ValueError):
                continue
            with self.lock:
                self.data.counts = counts
                self.data.counts_stamp_ns = stamp_to_ns(msg.header.stamp)
                self.data.camera_publishers = camera_publishers
                level = status.level if isinstance(status.level, int) else ord(status.level)
                self.data.diagnostics = {**values, "level": str(level), "message": status.message}

    def configure_error(self) -> str:
        """Why the node's configure failed, from its last /diagnostics report ("" if it did not)."""
        with self.lock:
            return self.data.diagnostics.get("configure_error", "")

    def cameras_matched(self) -> bool:
        """Whether the node's last report has a matched publisher on every camera topic."""
        with self.lock:
            return self.data.camera_publishers > 0

    def close(self) -> None:
        self.context.try_shutdown()
        self.thread.join(2.0)
        self.node.destroy_node()


def format_live_label(
    number: int, label: LiveLabel, target: np.ndarray | None, names: Sequence[str]
) -> str:
    """One line for a label as it arrives: decided classes with scores, truth, latency.

    Args:
        number: Arrival count, shown first.
        label: The label.
        target: Its ground truth (1 positive, 0 negative, -1 ignore), or None.
        names: Class names to show, in model order.
    """
    decided = [f"{names[i]} {label.scores[i]:.2f}" for i in np.flatnonzero(label.decisions)]
    line = (
        f"{number:>5} {label.frame_id} {label.stamp_ns / 1e9:.3f}: "
        f"{', '.join(decided) or '(nothing)'}"
    )
    if target is not None:
        truth = [names[i] for i in np.flatnonzero(target == 1)]
        known = target >= 0  # a class marked ignore (-1) is right either way
        hit = np.array_equal(label.decisions[known], target[known] == 1)
        line += f"  | truth: {', '.join(truth) or '(nothing)'} {'ok' if hit else 'MISS'}"
    return f"{line}  [{label.latency_ms:.1f} ms]"


def _multilabel_class() -> type:
    from mmsag_ros.msg import MultiLabel

    return MultiLabel


def _bag_topics(bag: Path, topics: Sequence[str] | None) -> tuple[list[str], str]:
    """The camera topics to replay and the sorter's ``input_type`` for them."""
    with open_bag(bag) as reader:
        connections = image_connections(reader, bag, topics)
    kinds = {c.msgtype for c in connections}
    if len(kinds) > 1:
        raise BagError(
            f"bag {bag} mixes Image and CompressedImage topics; one sorter takes one kind: "
            f"choose with --topics ({', '.join(sorted({c.topic for c in connections}))})"
        )
    input_type = "compressed" if kinds == {COMPRESSED_TYPE} else "image"
    return sorted({c.topic for c in connections}), input_type


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


def _wait_until_ready(
    process: subprocess.Popen[bytes],
    collector: _Collector,
    log_path: Path,
    timeout_s: float,
    stop: threading.Event,
) -> None:
    """Block until the sorter's label publisher has matched us; BagError when it cannot."""
    deadline = time.monotonic() + timeout_s
    while collector.labels_sub.get_publisher_count() == 0:
        if stop.is_set():
            raise BagError("interrupted while the sorter node was starting")
        if process.poll() is not None:
            raise BagError(
                f"the sorter node exited ({process.returncode}): {_last_error(log_path)}"
            )
        # The node says so on /diagnostics, in every state: no need to read its log.
        if reason := collector.configure_error():
            raise BagError(f"the sorter node did not start: {reason} (node log: {log_path})")
        if time.monotonic() > deadline:
            raise BagError(
                f"the sorter node did not come up in {timeout_s:.0f} s: {_last_error(log_path)}"
            )
        time.sleep(_POLL_S)


def _settled(counts: NodeCounts, report_ns: int, arrived: int, sent: int, end_ns: int) -> bool:
    """Whether a /diagnostics report ends the replay.

    It must be made after the replay, with nothing in flight in the node and every label it
    counts arrived here; unless the node received every frame sent, also late enough for
    frames still crossing DDS to have arrived (``_TRANSPORT_MARGIN_NS``).
    """
    if report_ns < end_ns or counts.in_flight != 0 or arrived < counts.published:
        return False
    return counts.received >= sent or report_ns >= end_ns + _TRANSPORT_MARGIN_NS


def _wait_until_settled(
    process: subprocess.Popen[bytes],
    collector: _Collector,
    sent: int,
    replay_end_ns: int,
    timeout_s: float,
) -> NodeCounts | None:
    """The node's totals once the replay has settled (see :func:`_settled`); None on timeout."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and process.poll() is None:
        with collector.lock:
            data = collector.data
            counts, stamp_ns = data.counts, data.counts_stamp_ns
            arrived = len(data.labels) + data.stray
        if counts is not None and _settled(counts, stamp_ns, arrived, sent, replay_end_ns):
            return counts
        time.sleep(_POLL_S)
    return None


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(10.0)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _record(path: Path, storage: str, raw_labels: list[tuple[int, bytes]]) -> None:
    from rosbags.rosbag2 import StoragePlugin, Writer

    from mmsag_ros.bag.typestore import mmsag_typestore

    plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
    try:
        with Writer(path, version=9, storage_plugin=plugin) as writer:
            connection = writer.add_connection(
                "/waste/labels", MULTILABEL_TYPE, typestore=mmsag_typestore()
            )
            for arrived_ns, raw in raw_labels:
                writer.write(connection, arrived_ns, raw)
    except Exception as err:  # rosbags' writer errors, full disks, unwritable folders
        shutil.rmtree(path, ignore_errors=True)
        raise BagError(f"cannot write the recorded labels to {path}: {err}") from err


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


def replay_through_sorter(
    bag: Path,
    bundle: Path,
    *,
    topics: Sequence[str] | None = None,
    rate: float = 1.0,
    loop: bool = False,
    backend: str | None = None,
    device: str | None = None,
    precision: str | None = None,
    params_file: Path | None = None,
    record: Path | None = None,
    record_storage: str = "mcap",
    log_path: Path | None = None,
    on_label: Callable[[LiveLabel], None] | None = None,
    stop: threading.Event | None = None,
    startup_timeout_s: float = 120.0,
    settle_timeout_s: float = 60.0,
) -> LiveRun:
    """Start a sorter node, replay ``bag`` into it and collect its labels.

    Args:
        bag: rosbag2 folder or storage file with Image or CompressedImage frames.
        bundle: Exported bundle directory the node loads.
        topics: Camera topics to replay; None replays all (they must share one message type).
        rate: Replay speed factor.
        loop: Start the bag over at its end until ``stop`` is set (every pass restamped, so
            each frame sent is a frame of its own).
        backend: The node's ``backend`` parameter; None keeps the parameter file's or the
            node's default (``auto``).
        device: The node's ``device`` parameter; None keeps the file's or ``cpu``.
        precision: The node's ``precision`` parameter (bundle variant); None keeps the
            file's or ``fp32``.
        params_file: The cell's sorter parameter file (``config/sorter.yaml`` layout), so the
            replay runs with its thresholds, batch size, QoS and rate cap. The bundle, the
            camera topics, the input type and the output topic are always the replay's.
        record: Write the node's labels (as received, on ``/waste/labels``) to this new bag.
        record_storage: ``mcap`` or ``sqlite3`` for ``record``.
        log_path: Where the node's output goes; None uses a temporary file, kept on failure.
        on_label: Called from a background thread with each label as it arrives.
        stop: Set it to end the replay early; what arrived until then is returned.
        startup_timeout_s: How long the node may take to load the bundle and subscribe.
        settle_timeout_s: How long to wait after the replay for the node to finish the frames
            it holds; only a node stuck on a frame (or a silent one) waits it out.

    Raises:
        BagError: Unreadable bag, no or mixed image topics, a sorter that fails to start.
        ConfigError: Bad rate or storage, ``record`` exists.
    """
    bag, bundle = Path(bag), Path(bundle).resolve()
    if not rate > 0:
        raise ConfigError(f"rate must be positive, got {rate}")
    if record is not None and (record_storage not in ("mcap", "sqlite3") or record.exists()):
        raise ConfigError(
            f"cannot record into {record}: it must be a new path and the storage mcap or sqlite3"
        )
    if params_file is not None and not Path(params_file).is_file():
        raise ConfigError(f"sorter parameter file {params_file} does not exist")
    camera_topics, input_type = _bag_topics(bag, topics)
    stop = stop or threading.Event()
    keep_log = log_path is not None
    if log_path is None:
        handle, name = tempfile.mkstemp(prefix="mmsag_sorter_", suffix=".log")
        os.close(handle)
        log_path = Path(name)
    env = _child_environment()
    command = _sorter_command(
        bundle,
        camera_topics,
        input_type,
        backend=backend,
        device=device,
        precision=precision,
        params_file=params_file,
    )
    collector = _Collector(on_label)
    succeeded = False
    try:
        with log_path.open("wb") as log:
            process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            _wait_until_ready(process, collector, log_path, startup_timeout_s, stop)
            started = time.monotonic()
            summary = play_bag(
                bag,
                rate=rate,
                loop=loop,
                topics=camera_topics,
                wait_for_subscribers_s=startup_timeout_s,
                stop=stop,
                node_name="mmsag_bag_eval_play",
                on_publish=collector.frame_sent,
                restamp=True,
                # Best-effort frames sent before the node's subscription has matched the
                # player are lost: wait for the node to report the match.
                subscribers_matched=collector.cameras_matched,
            )
            replay_s = time.monotonic() - started
            settled = _wait_until_settled(
                process, collector, summary.total, time.time_ns(), settle_timeout_s
            )
        finally:
            _stop(process)
        succeeded = True
    finally:
        collector.close()
        if succeeded and not keep_log:  # a failed run's log is named in its error
            log_path.unlink(missing_ok=True)
    data = collector.data
    last = data.counts or NodeCounts()
    if settled is None and not stop.is_set():
        _log.warning(
            "the sorter did not account for every frame within %.0f s (%d still in flight); "
            "counts may be short",
            settle_timeout_s,
            last.in_flight,
        )
    if record is not None:
        _record(record, record_storage, data.raw_labels)
    return LiveRun(
        sent=summary.total,
        labels=data.labels,
        node=last if settled is None else settled,
        stray_labels=data.stray,
        model_id=data.diagnostics.get("model_id", ""),
        backend=data.diagnostics.get("backend", ""),
        replay_s=replay_s,
        complete=settled is not None,
        interrupted=summary.interrupted,
        recorded=record,
        diagnostics=data.diagnostics,
    )
