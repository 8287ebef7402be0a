"""Replay a bag's camera topics with their recorded timing, for machines without ``ros2 bag``.

Messages are published as the raw CDR bytes stored in the bag (rclpy's ``publish`` of bytes),
so headers and payloads reach subscribers exactly as recorded, with sensor-data QoS (best
effort, keep last). Publication times follow the bag's recording times divided by ``rate``.

With ``restamp`` each frame's ``header.stamp`` becomes the time it is published (``frame_id``
and payload unchanged): a node's latency, which counts from the stamp, then measures the node
instead of the bag's age.

With ``clock_hz`` the replay's position in recorded time is published on ``/clock``, as
``ros2 bag play --clock`` does: nodes started with ``use_sim_time`` then see the frames' own
stamps as now. Before each frame and ``clock_hz`` times a second between frames; a loop starts
the clock over, so time jumps back once per pass.
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mmsag_ros._share import default_dds_profile
from mmsag_ros.bag.frames import (
    COMPRESSED_TYPE,
    IMAGE_TYPE,
    image_connections,
    open_bag,
    raw_messages,
    restamp_cdr,
)
from mmsag_ros.errors import BagError, ConfigError

__all__ = ["PlaySummary", "play_bag"]

_log = logging.getLogger(__name__)

_SETTLE_S = 0.2
CLOCK_TOPIC = "/clock"
_SINGLE_FRAME_NS = 100_000_000  # loop period of a bag with a single frame, at rate 1


@dataclass
class PlaySummary:
    """What :func:`play_bag` published.

    Attributes:
        published: Topic -> messages published.
        loops: Complete passes over the bag.
        interrupted: True when ``stop`` ended the replay early.
    """

    published: Counter[str] = field(default_factory=Counter)
    loops: int = 0
    interrupted: bool = False

    @property
    def total(self) -> int:
        """Messages published on all topics."""
        return sum(self.published.values())


def _wait_for_subscribers(
    publishers: dict[str, Any],
    timeout_s: float,
    stop: Any,
    matched: Callable[[], bool] | None,
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and not stop.is_set():
        if all(p.get_subscription_count() > 0 for p in publishers.values()):
            if matched is None:
                # Our side has matched; give the subscriber's side a moment to match us too,
                # or the first best-effort frames can still be dropped.
                stop.wait(_SETTLE_S)
                return
            if matched():
                return
        stop.wait(0.05)


class _Restamper:
    """Stamps each frame with the publishing node's clock, strictly increasing.

    Strictly, so that no two restamped frames of one replay share a stamp even when the clock
    reads the same twice: a live evaluation maps each restamped ``(stamp, frame_id)`` back to
    the recorded frame.
    """

    def __init__(self, clock: Any) -> None:
        self._clock = clock
        self._last_ns = 0

    def __call__(self, raw: bytes) -> bytes:
        self._last_ns = max(self._clock.now().nanoseconds, self._last_ns + 1)
        try:
            return restamp_cdr(raw, self._last_ns)
        except BagError:
            return raw  # no readable header: published as recorded, for the subscriber to refuse


class _Pacer:
    """Waits for each frame's due time, ticking ``/clock`` with the recorded time meanwhile."""

    def __init__(
        self,
        rate: float,
        stop: threading.Event,
        publish_clock: Callable[[int], None] | None = None,
        clock_hz: float = 0.0,
    ) -> None:
        self.rate, self.stop, self._publish_clock = rate, stop, publish_clock
        self._tick_s = 1.0 / clock_hz if clock_hz > 0 else math.inf
        self._started = time.monotonic()
        self._first_ns = 0

    def start_pass(self, first_ns: int) -> None:
        self._started, self._first_ns = time.monotonic(), first_ns

    def wait_until(self, recorded_ns: int) -> bool:
        """Wait until the replay reaches ``recorded_ns``; True when ``stop`` was set."""
        due = self._started + (recorded_ns - self._first_ns) / 1e9 / self.rate
        while (remaining := due - time.monotonic()) > 0:
            if self.stop.wait(min(remaining, self._tick_s)):
                return True
            self.tick(min(self.now_ns(), recorded_ns))  # a late wake-up must not pass the frame
        self.tick(recorded_ns)
        return self.stop.is_set()

    def now_ns(self) -> int:
        return self._first_ns + int((time.monotonic() - self._started) * self.rate * 1e9)

    def tick(self, recorded_ns: int) -> None:
        if self._publish_clock is not None:
            self._publish_clock(recorded_ns)


def _clock_publisher(node: Any) -> Callable[[int], None]:
    """A function publishing a time in nanoseconds on ``/clock`` (reliable, depth 10)."""
    from builtin_interfaces.msg import Time
    from rosgraph_msgs.msg import Clock

    publisher = node.create_publisher(Clock, CLOCK_TOPIC, 10)

    def publish(time_ns: int) -> None:
        sec, nanosec = divmod(time_ns, 1_000_000_000)
        publisher.publish(Clock(clock=Time(sec=sec, nanosec=nanosec)))

    return publish


def _one_pass(
    bag: Path,
    topics: Sequence[str] | None,
    publishers: dict[str, Any],
    pacer: _Pacer,
    summary: PlaySummary,
    on_publish: Callable[[str, bytes, bytes], None] | None,
    restamp: Callable[[bytes], bytes] | None,
) -> bool:
    """Publish the bag once, then wait one mean frame period; False when ``stop`` was set."""
    with open_bag(bag) as reader:
        connections = image_connections(reader, bag, topics)
        first_ns: int | None = None
        last_ns = 0
        count = 0
        for connection, log_time_ns, raw in raw_messages(reader, connections, bag):
            if first_ns is None:
                first_ns = log_time_ns
                pacer.start_pass(first_ns)
            last_ns, count = log_time_ns, count + 1
            if pacer.wait_until(log_time_ns):
                return False
            recorded = bytes(raw)
            published = recorded if restamp is None else restamp(recorded)
            if on_publish is not None:
                on_publish(connection.topic, published, recorded)
            publishers[connection.topic].publish(published)
            summary.published[connection.topic] += 1
    if count == 0:
        return True  # a complete pass with nothing to pace
    # Without this gap a loop would republish the last frame and the first at once (and a
    # one-frame bag as fast as the CPU allows).
    period_ns = (last_ns - (first_ns or 0)) // (count - 1) if count > 1 else _SINGLE_FRAME_NS
    return not pacer.wait_until(last_ns + period_ns)


def play_bag(
    bag: Path,
    *,
    rate: float = 1.0,
    loop: bool = False,
    topics: Sequence[str] | None = None,
    wait_for_subscribers_s: float = 0.0,
    stop: threading.Event | None = None,
    node_name: str = "mmsag_bag_play",
    on_publish: Callable[[str, bytes, bytes], None] | None = None,
    restamp: bool = False,
    subscribers_matched: Callable[[], bool] | None = None,
    clock_hz: float = 0.0,
) -> PlaySummary:
    """Publish a bag's Image/CompressedImage topics with the recorded timing.

    Creates its own rclpy context, node and publishers and tears them down on return. A
    process without ``FASTDDS_DEFAULT_PROFILES_FILE`` gets the shipped shared-memory profile
    (camera frames need it), unless a participant created earlier already fixed its profile.

    Args:
        bag: rosbag2 folder or storage file.
        rate: Speed factor (2.0 plays twice as fast).
        loop: Start over at the end until ``stop`` is set (after one pass if it published
            nothing: the topics hold no messages).
        topics: Image topics to publish; None publishes all of them.
        wait_for_subscribers_s: Wait up to this long for every topic to have a subscriber
            before the first message (best-effort messages sent earlier are lost).
        stop: Set it (e.g. from a SIGINT handler or another thread) to end the replay.
        node_name: Name of the publishing node.
        on_publish: Called with ``(topic, CDR bytes as published, as recorded)`` just before
            each message is published (a live evaluation takes its send time there).
        restamp: Replace each message's ``header.stamp`` with the current time of the
            publishing node's clock (strictly increasing within the replay).
        subscribers_matched: Within ``wait_for_subscribers_s``, also wait until this returns
            True: the subscribers' own word that they have matched our publishers (e.g. from
            their diagnostics). Without it, a short pause after our side matches stands in
            for theirs, which a loaded machine can outlast.
        clock_hz: Publish the recorded time on ``/clock`` this often (0: no clock), for nodes
            with ``use_sim_time``; not with ``restamp``, whose stamps are the wall clock's.

    Raises:
        ConfigError: A non-positive rate, a negative wait or clock rate, or a clock with
            ``restamp``.
        BagError: The bag cannot be read or has no (selected) image topic.
    """
    import rclpy
    from rclpy.context import Context

    from mmsag_ros.ros.qos import image_qos

    if not rate > 0:
        raise ConfigError(f"rate must be positive, got {rate}")
    if wait_for_subscribers_s < 0:
        raise ConfigError(f"wait_for_subscribers_s must be >= 0, got {wait_for_subscribers_s}")
    if not (math.isfinite(clock_hz) and clock_hz >= 0):
        raise ConfigError(f"clock rate must be >= 0 Hz, got {clock_hz}")
    if clock_hz and restamp:
        raise ConfigError(
            "restamp stamps frames with the wall clock and the clock publishes the recorded "
            "time: choose one"
        )
    bag = Path(bag)
    stop = stop or threading.Event()
    with open_bag(bag) as reader:
        types = {c.topic: c.msgtype for c in image_connections(reader, bag, topics)}
    from sensor_msgs.msg import CompressedImage, Image

    classes = {IMAGE_TYPE: Image, COMPRESSED_TYPE: CompressedImage}
    summary = PlaySummary()
    default_dds_profile(os.environ)
    context = Context()
    rclpy.init(context=context)
    try:
        node = rclpy.create_node(node_name, context=context)
        try:
            # A reliable writer serves best-effort readers (a sorter's default) and reliable
            # ones (image viewers, a sorter set to image_reliability reliable) alike.
            qos = image_qos("reliable", depth=10)
            publishers = {
                topic: node.create_publisher(classes[msgtype], topic, qos)
                for topic, msgtype in types.items()
            }
            # Before the wait, so that sim-time subscribers discover /clock meanwhile too.
            clock = _clock_publisher(node) if clock_hz else None
            _wait_for_subscribers(publishers, wait_for_subscribers_s, stop, subscribers_matched)
            _log.info("playing %s at %.2fx: %s", bag, rate, ", ".join(sorted(types)))
            stamper = _Restamper(node.get_clock()) if restamp else None
            pacer = _Pacer(rate, stop, clock, clock_hz)
            while _one_pass(bag, topics, publishers, pacer, summary, on_publish, stamper):
                summary.loops += 1
                if not loop:
                    break
                if summary.total == 0:  # starting over would spin, publishing nothing
                    _log.warning("%s: the image topics hold no messages; nothing to loop", bag)
                    break
            summary.interrupted = stop.is_set()
        finally:
            node.destroy_node()
    finally:
        context.try_shutdown()
    return summary
