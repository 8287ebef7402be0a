"""mmsag bag play: a subscriber receives the real camera bags' frames with their headers."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import rclpy
from rclpy.context import Context
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.qos import QoSProfile
from rclpy.serialization import deserialize_message
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import CompressedImage
from support import REPO, SHARED_DATA

from mmsag_ros.bag.frames import open_bag, raw_messages
from mmsag_ros.bag.make import make_bag
from mmsag_ros.bag.typestore import mmsag_typestore
from mmsag_ros.bag.writer import bag_writer
from mmsag_ros.data.synth import generate_dataset
from mmsag_ros.errors import BagError, ConfigError
from mmsag_ros.live.play import play_bag
from mmsag_ros.ros.qos import image_qos

TOPIC = "/raspicam_node/image/compressed"
REAL_BAGS = sorted((SHARED_DATA / "bags").glob("*_mcap"))
pytestmark = pytest.mark.skipif(not REAL_BAGS, reason="shared camera bags not present")


def _ns(stamp) -> int:
    return stamp.sec * 1_000_000_000 + stamp.nanosec


def _fields(msg: CompressedImage) -> tuple:
    stamp = msg.header.stamp
    return (stamp.sec, stamp.nanosec, msg.header.frame_id, msg.format, bytes(msg.data))


def _recorded(bag: Path) -> list[bytes]:
    with open_bag(bag) as reader:
        connections = [c for c in reader.connections if c.topic == TOPIC]
        return [bytes(raw) for _, _, raw in raw_messages(reader, connections, bag)]


class _Subscriber:
    """A subscription in its own context and domain, spun on a background thread."""

    def __init__(self, domain_id: int, topic: str = TOPIC) -> None:
        self.context = Context()
        rclpy.init(context=self.context, domain_id=domain_id)
        self.node = rclpy.create_node("bag_play_test", context=self.context)
        self.received: list[CompressedImage] = []
        self.subscription = self.node.create_subscription(
            CompressedImage, topic, self.received.append, image_qos(depth=10)
        )
        self.clock: list[int] = []
        self.node.create_subscription(
            Clock, "/clock", lambda m: self.clock.append(_ns(m.clock)), QoSProfile(depth=1000)
        )
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.thread = threading.Thread(target=self._spin, daemon=True)
        self.thread.start()

    def _spin(self) -> None:
        try:
            while self.context.ok():
                self.executor.spin_once(timeout_sec=0.05)
        except ExternalShutdownException:
            pass  # close() shut the context down while we waited

    def wait_for(self, count: int, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while len(self.received) < count and time.monotonic() < deadline:
            time.sleep(0.02)

    def close(self) -> None:
        self.context.try_shutdown()
        self.thread.join(2.0)
        self.node.destroy_node()


def _play(bag: Path, *extra: str, env: dict[str, str]) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "mmsag_ros.cli", "bag", "play", str(bag), *extra]
    return subprocess.Popen(
        command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def test_play_loops_real_bag_with_headers_intact_and_stops_on_sigint(ros_env):
    bag = REAL_BAGS[-1]
    recorded = _recorded(bag)
    subscriber = _Subscriber(int(ros_env["ROS_DOMAIN_ID"]))
    try:
        process = _play(bag, "--loop", "--rate", "5", "--wait-for-subscribers", "20", env=ros_env)
        try:
            subscriber.wait_for(3 * len(recorded), timeout_s=120.0)
            process.send_signal(signal.SIGINT)
            stdout, stderr = process.communicate(timeout=120)  # a loaded machine winds down slowly
        finally:
            if process.poll() is None:
                process.kill()
                process.communicate()
    finally:
        subscriber.close()
    assert process.returncode == 0, stderr
    assert stdout.startswith("interrupted: published")
    assert len(subscriber.received) >= 3 * len(recorded)
    # Every received message is one of the recorded ones, header and payload alike.
    assert {_fields(m) for m in subscriber.received} == {
        _fields(deserialize_message(raw, CompressedImage)) for raw in recorded
    }
    assert {m.header.frame_id for m in subscriber.received} == {"raspicam"}


def test_play_once_publishes_every_frame_and_returns(ros_env):
    bag = REAL_BAGS[0]
    recorded = _recorded(bag)
    subscriber = _Subscriber(int(ros_env["ROS_DOMAIN_ID"]))
    try:
        process = _play(bag, "--wait-for-subscribers", "20", env=ros_env)
        stdout, stderr = process.communicate(timeout=120)
        # Returns as soon as all arrived; the bound only ends a run in which some never do.
        subscriber.wait_for(len(recorded), timeout_s=30.0)
    finally:
        subscriber.close()
    assert process.returncode == 0, stderr
    assert stdout.strip() == f"done: published {len(recorded)} messages ({TOPIC}: {len(recorded)})"
    assert [_fields(m) for m in subscriber.received] == [
        _fields(deserialize_message(raw, CompressedImage)) for raw in recorded
    ]


def test_play_waits_for_the_subscribers_own_match_before_the_first_frame(ros_env, monkeypatch):
    monkeypatch.setenv("ROS_DOMAIN_ID", ros_env["ROS_DOMAIN_ID"])  # play_bag runs in-process
    bag = REAL_BAGS[0]
    recorded = _recorded(bag)
    subscriber = _Subscriber(int(ros_env["ROS_DOMAIN_ID"]))
    answers: list[bool] = []
    published_after: list[int] = []

    def matched() -> bool:  # the subscriber's side of the match, as a node would report it
        answers.append(subscriber.subscription.get_publisher_count() > 0)
        return answers[-1]

    try:
        summary = play_bag(
            bag,
            rate=10.0,
            topics=[TOPIC],
            wait_for_subscribers_s=120.0,
            subscribers_matched=matched,
            on_publish=lambda *_: published_after.append(len(answers)),
        )
        subscriber.wait_for(len(recorded), timeout_s=60.0)
    finally:
        subscriber.close()
    assert answers and answers[-1] is True and answers.count(True) == 1
    assert published_after and min(published_after) == len(answers)  # only after the match
    assert summary.total == len(recorded) == len(subscriber.received)


def test_play_restamp_stamps_frames_at_publication_and_keeps_the_rest(ros_env):
    bag = REAL_BAGS[0]
    recorded = [deserialize_message(raw, CompressedImage) for raw in _recorded(bag)]
    subscriber = _Subscriber(int(ros_env["ROS_DOMAIN_ID"]))
    try:
        before_ns = time.time_ns()
        process = _play(bag, "--restamp", "--wait-for-subscribers", "20", env=ros_env)
        stdout, stderr = process.communicate(timeout=120)
        after_ns = time.time_ns()
        subscriber.wait_for(len(recorded), timeout_s=30.0)
    finally:
        subscriber.close()
    assert process.returncode == 0, stderr
    assert stdout.startswith("done: published")
    received = subscriber.received
    assert len(received) == len(recorded)
    # frame_id and payload as recorded; the stamps are the replay's own, strictly increasing.
    assert [_fields(m)[2:] for m in received] == [_fields(m)[2:] for m in recorded]
    stamps = [m.header.stamp.sec * 1_000_000_000 + m.header.stamp.nanosec for m in received]
    assert stamps == sorted(set(stamps))
    assert before_ns <= stamps[0] and stamps[-1] <= after_ns


def test_play_clock_publishes_the_recorded_time_for_use_sim_time(ros_env, tmp_path):
    data = tmp_path / "data"
    generate_dataset(data, num_trainval=1, num_test=8, image_size=(64, 48), seed=3)
    bag, start_ns, fps = tmp_path / "clocked", 1_700_000_000_000_000_000, 5.0
    make_bag(data, bag, compressed=True, fps=fps, start_ns=start_ns, topic=TOPIC)
    stamps = [_ns(deserialize_message(raw, CompressedImage).header.stamp) for raw in _recorded(bag)]
    subscriber = _Subscriber(int(ros_env["ROS_DOMAIN_ID"]))
    try:
        command = ["--clock", "50", "--rate", "2", "--wait-for-subscribers", "20"]
        process = _play(bag, *command, env=ros_env)
        _, stderr = process.communicate(timeout=120)
        subscriber.wait_for(len(stamps), timeout_s=30.0)
    finally:
        subscriber.close()
    assert process.returncode == 0, stderr
    assert len(subscriber.received) == len(stamps) == 8
    clock, period_ns = subscriber.clock, int(1e9 / fps)
    # Recorded time, never going back within a pass, from the first frame to one period
    # past the last; ticks between frames too (a frame every 100 ms, a tick every 20 ms).
    assert clock == sorted(clock) and len(clock) > 2 * len(stamps)
    assert stamps[0] <= clock[0] and clock[-1] <= stamps[-1] + period_ns
    assert clock[-1] >= stamps[-1]
    # Each frame's stamp was "now" when it went out.
    assert set(stamps) <= set(clock)


def test_play_rejects_bad_options_before_starting_ros(tmp_path):
    with pytest.raises(ConfigError, match="rate must be positive"):
        play_bag(REAL_BAGS[0], rate=0)
    with pytest.raises(ConfigError, match="clock rate must be >= 0 Hz"):
        play_bag(REAL_BAGS[0], clock_hz=-1)
    with pytest.raises(ConfigError, match="choose one"):
        play_bag(REAL_BAGS[0], clock_hz=40, restamp=True)
    with pytest.raises(BagError, match="among /nope"):
        play_bag(REAL_BAGS[0], topics=["/nope"])
    with pytest.raises(BagError, match="does not exist"):
        play_bag(tmp_path / "missing")


def test_a_loop_over_image_topics_without_messages_ends_after_one_empty_pass(
    ros_env, monkeypatch, tmp_path
):
    # It used to start over at once, forever, as fast as the CPU allowed.
    monkeypatch.setenv("ROS_DOMAIN_ID", ros_env["ROS_DOMAIN_ID"])  # play_bag runs in-process
    bag = tmp_path / "empty"
    with bag_writer(bag) as writer:
        writer.add_connection(TOPIC, "sensor_msgs/msg/CompressedImage", typestore=mmsag_typestore())
    stop, result = threading.Event(), {}
    player = threading.Thread(
        target=lambda: result.update(summary=play_bag(bag, loop=True, stop=stop)), daemon=True
    )
    player.start()
    player.join(timeout=120.0)  # a hang guard: the pass itself takes milliseconds
    stop.set()
    player.join()
    summary = result["summary"]
    assert (summary.total, summary.loops, summary.interrupted) == (0, 1, False)
