"""The sorter tests' peer node: camera publishers, the labels and /diagnostics subscriptions,
and the parameter and lifecycle service calls (used by ``sorter_peer.py``'s scenarios)."""

from __future__ import annotations

import sys
import time

from peer_frames import make_frame

# How long any wait may take before the peer gives up: only reached when something is broken,
# so generous enough for a loaded CI machine.
WAIT_S = 60.0


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
