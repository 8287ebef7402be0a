"""The sorter's input: a subscription per camera, feeding one inference worker.

:class:`CameraInput` opens on activate and closes on deactivate. Cameras go by their full
names everywhere (diagnostics, logs, capture bags), so that the cells of one plant can be told
apart. A frame whose callback races the close is counted as dropped: the ledger loses nothing.

It also checks that each camera publishes the type the node subscribes to: a camera sending
``CompressedImage`` to a sorter that takes ``Image`` (or the other way round) never delivers a
frame, since DDS does not match the two, and nothing fails. Each mismatch is named once in the
log, with the fix, and on ``/diagnostics`` for as long as it lasts.
"""

from __future__ import annotations

from collections.abc import Callable

from rclpy.node import Node
from rclpy.subscription import Subscription
from sensor_msgs.msg import CompressedImage, Image

from mmsag_ros.ros.diagnostics import SorterStats
from mmsag_ros.ros.params import SorterParams
from mmsag_ros.ros.qos import image_qos
from mmsag_ros.ros.worker import Frame, FrameWorker
from mmsag_ros.runtime.classifier import Classifier, Prediction

__all__ = ["MESSAGE_TYPES", "CameraInput"]

#: ``input_type`` parameter value -> (message class, its type name on the graph).
MESSAGE_TYPES = {
    "image": (Image, "sensor_msgs/msg/Image"),
    "compressed": (CompressedImage, "sensor_msgs/msg/CompressedImage"),
}
_REJECT_LOG_PERIOD_S = 5.0


class CameraInput:
    """The camera subscriptions and the worker that labels their frames, while active."""

    def __init__(self, node: Node, stats: SorterStats) -> None:
        self._node, self._stats = node, stats
        self.worker: FrameWorker | None = None
        self._subscriptions: list[Subscription] = []
        self._params: SorterParams | None = None
        self._mismatches: dict[str, tuple[str, ...]] = {}

    def open(
        self,
        params: SorterParams,
        classifier: Classifier,
        *,
        publish: Callable[[Frame, Prediction], float],
        generation: int,
    ) -> None:
        """Start a worker labelling with ``classifier``, then subscribe to the cameras."""
        self._params = params
        self.worker = FrameWorker(
            classifier,
            stats=self._stats,
            publish=publish,
            on_reject=self._log_reject,
            max_rate_hz=params.max_rate_hz,
            max_input_pixels=params.max_input_pixels,
            generation=generation,
        )
        self.worker.start()
        cameras = [self._node.resolve_topic_name(t) for t in params.camera_topics]
        self._stats.watch(cameras)
        msg_type = MESSAGE_TYPES[params.input_type][0]
        qos = image_qos(params.image_reliability, params.image_depth)
        for topic in cameras:
            self._subscriptions.append(
                self._node.create_subscription(
                    msg_type, topic, lambda msg, cam=topic: self._on_frame(cam, msg), qos
                )
            )

    def close(self, timeout_s: float) -> FrameWorker | None:
        """Unsubscribe and stop the worker; returns it if its batch did not end in time."""
        for subscription in self._subscriptions:
            self._node.destroy_subscription(subscription)
        self._subscriptions.clear()
        self._mismatches.clear()
        self._params = None
        worker, self.worker = self.worker, None
        if worker is None or worker.stop(timeout_s):
            return None
        return worker

    def publisher_count(self) -> int:
        """Publishers of the camera with the fewest (0 when closed)."""
        return min((s.get_publisher_count() for s in self._subscriptions), default=0)

    def check_types(self) -> tuple[str, ...]:
        """Full names of the open camera topics whose publishers send another type.

        A topic with no publisher, or with one of the expected type, is fine. A new mismatch,
        or one whose types changed, is logged once with the fix.
        """
        params = self._params
        if params is None:
            return ()
        _, expected = MESSAGE_TYPES[params.input_type]
        for topic in params.camera_topics:
            resolved = self._node.resolve_topic_name(topic)
            publishers = self._node.get_publishers_info_by_topic(resolved)
            types = tuple(sorted({info.topic_type for info in publishers}))
            if not types or expected in types:
                self._mismatches.pop(resolved, None)
            elif self._mismatches.get(resolved) != types:
                self._mismatches[resolved] = types
                self._log_mismatch(resolved, types, params.input_type)
        return tuple(sorted(self._mismatches))

    def _on_frame(self, camera: str, msg: Image | CompressedImage) -> None:
        worker = self.worker
        if worker is None:  # a callback racing close: counted, not lost
            self._stats.frame_dropped(self._stats.frame_received(camera))
            return
        worker.offer(camera, msg)

    def _log_reject(self, camera: str, reason: str) -> None:
        self._node.get_logger().warning(
            f"rejected a frame from {camera}: {reason}",
            throttle_duration_sec=_REJECT_LOG_PERIOD_S,
        )

    def _log_mismatch(self, topic: str, types: tuple[str, ...], input_type: str) -> None:
        other = "image" if input_type == "compressed" else "compressed"
        launch_flag = "true" if other == "compressed" else "false"
        self._node.get_logger().error(
            f"camera topic {topic} carries {', '.join(types)}, but input_type is "
            f"{input_type} ({MESSAGE_TYPES[input_type][1]}): no frame will arrive; set "
            f"input_type to {other} (launch: compressed:={launch_flag})"
        )
