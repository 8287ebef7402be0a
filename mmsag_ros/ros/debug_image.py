"""The sorter's optional debug image: each frame with its scores and attention drawn.

Drawn only while the topic has a subscriber (drawing costs milliseconds per frame), raw bgr8 on
``debug_image`` or JPEG on ``debug_image/compressed``, with the source frame's header. A frame
whose overlay fails keeps its label: a debugging aid never costs the belt anything.
"""

from __future__ import annotations

from rclpy.lifecycle import LifecycleNode
from sensor_msgs.msg import CompressedImage, Image

from mmsag_ros.ros.conversions import array_to_image, jpeg_image
from mmsag_ros.ros.qos import image_qos
from mmsag_ros.ros.worker import Frame
from mmsag_ros.runtime.classifier import Classifier, Prediction
from mmsag_ros.runtime.overlay import draw_overlay

__all__ = ["DebugImage"]

_FAILURE_LOG_PERIOD_S = 5.0


class DebugImage:
    """The debug image publisher of one activation (``debug_image_format``: raw or jpeg)."""

    def __init__(self, node: LifecycleNode, image_format: str) -> None:
        self._node = node
        # Reliable, so image viewers (reliable by default) match; depth 1: newest only.
        qos = image_qos("reliable", 1)
        if image_format == "jpeg":
            self._publisher = node.create_publisher(CompressedImage, "debug_image/compressed", qos)
        else:
            self._publisher = node.create_publisher(Image, "debug_image", qos)

    @property
    def subscribers(self) -> int:
        """How many subscriptions the topic has."""
        return self._publisher.get_subscription_count()

    def publish(self, frame: Frame, prediction: Prediction, classifier: Classifier) -> bool:
        """Draw and publish ``frame``'s overlay if anyone is watching; True if it went out."""
        if self.subscribers == 0 or frame.image is None:
            return False
        try:
            overlay = draw_overlay(
                frame.image,
                prediction,
                names=classifier.labels.display_names,
                spec=classifier.spec,
                color_order=frame.color_order,
            )
            if self._publisher.msg_type is CompressedImage:
                self._publisher.publish(jpeg_image(overlay, header=frame.msg.header))
            else:
                self._publisher.publish(array_to_image(overlay, "bgr8", header=frame.msg.header))
        except Exception as err:
            self._node.get_logger().warning(
                f"debug image of a frame from {frame.camera} failed: {err}",
                throttle_duration_sec=_FAILURE_LOG_PERIOD_S,
            )
            return False
        return True

    def close(self) -> None:
        """Destroy the publisher (at deactivate)."""
        self._node.destroy_publisher(self._publisher)
