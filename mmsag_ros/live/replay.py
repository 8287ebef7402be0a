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

import logging
import os
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mmsag_ros.bag.frames import (
    COMPRESSED_TYPE,
    MULTILABEL_TYPE,
    cdr_header,
    image_connections,
    open_bag,
    restamp_cdr,
    stamp_to_ns,
)
from mmsag_ros.bag.writer import STORAGES
from mmsag_ros.errors import BagError, ConfigError
from mmsag_ros.live.play import play_bag
from mmsag_ros.live.results import LiveLabel, LiveRun, NodeCounts, peak_points
from mmsag_ros.live.sorter_process import NODE_NAME, OUTPUT_TOPIC, SorterProcess, replay_sorter

__all__ = ["replay_through_sorter"]

_log = logging.getLogger(__name__)

# A /diagnostics report counts a frame only once the frame has crossed DDS. A frame the node has
# not received by the end of the replay may be crossing still or lost for good (overwritten in
# its keep-last-1 queue, dropped in transport), which look the same from outside: unless every
# frame arrived, take the totals from a report made at least this long after the replay.
_TRANSPORT_MARGIN_NS = 250_000_000
_POLL_S = 0.05


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
                peaks=peak_points(msg.peaks),
                instances=tuple(peak_points(group.peaks) for group in msg.instances),
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
    sorter: SorterProcess,
    collector: _Collector,
    sent: int,
    replay_end_ns: int,
    timeout_s: float,
) -> NodeCounts | None:
    """The node's totals once the replay has settled (see :func:`_settled`); None on timeout."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and sorter.poll() is None:
        with collector.lock:
            data = collector.data
            counts, stamp_ns = data.counts, data.counts_stamp_ns
            arrived = len(data.labels) + data.stray
        if counts is not None and _settled(counts, stamp_ns, arrived, sent, replay_end_ns):
            return counts
        time.sleep(_POLL_S)
    return None


def _record(path: Path, storage: str, raw_labels: list[tuple[int, bytes]]) -> None:
    from mmsag_ros.bag.typestore import mmsag_typestore
    from mmsag_ros.bag.writer import writing_bag

    with writing_bag(path, storage, what="recorded labels bag") as writer:
        connection = writer.add_connection(
            "/waste/labels", MULTILABEL_TYPE, typestore=mmsag_typestore()
        )
        for arrived_ns, raw in raw_labels:
            writer.write(connection, arrived_ns, raw)


def _check_options(
    rate: float, record: Path | None, record_storage: str, params_file: Path | None
) -> None:
    if not rate > 0:
        raise ConfigError(f"rate must be positive, got {rate}")
    if record is not None and (record_storage not in STORAGES or record.exists()):
        raise ConfigError(
            f"cannot record into {record}: it must be a new path and the storage mcap or sqlite3"
        )
    if params_file is not None and not Path(params_file).is_file():
        raise ConfigError(f"sorter parameter file {params_file} does not exist")


def _temporary_log() -> Path:
    handle, name = tempfile.mkstemp(prefix="mmsag_sorter_", suffix=".log")
    os.close(handle)
    return Path(name)


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
    _check_options(rate, record, record_storage, params_file)
    camera_topics, input_type = _bag_topics(bag, topics)
    stop = stop or threading.Event()
    keep_log = log_path is not None
    log_path = log_path if log_path is not None else _temporary_log()
    sorter = replay_sorter(
        bundle,
        camera_topics,
        input_type,
        backend=backend,
        device=device,
        precision=precision,
        params_file=params_file,
        log=log_path,
    )
    collector = _Collector(on_label)
    succeeded = False
    try:
        sorter.start()
        try:
            sorter.wait_until_ready(
                lambda: collector.labels_sub.get_publisher_count() > 0,
                collector.configure_error,
                startup_timeout_s,
                stop,
            )
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
                sorter, collector, summary.total, time.time_ns(), settle_timeout_s
            )
        finally:
            sorter.stop(timeout_s=10.0)
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
