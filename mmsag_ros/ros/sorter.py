"""The ``sorter`` lifecycle node: camera frames in, one MultiLabel per frame out.

configure loads and checks the bundle, builds the Classifier and warms it up; activate
subscribes to the cameras and starts the inference worker; deactivate and cleanup undo that.
Frames are taken latest-first (see :mod:`mmsag_ros.ros.worker`), so latency never grows with a
backlog. ``/diagnostics`` reports rates, latency percentiles, dropped and rejected frames and
stale cameras. Thresholds and the rate cap change at run time through ``ros2 param set``.
With ``debug_image`` set, ``debug_image`` carries each frame with its scores and attention drawn
(bgr8, the source header), drawn only while that topic has a subscriber.

Run without launch: ``python -m mmsag_ros.ros.sorter --ros-args -p bundle:=<dir> -p
autostart:=true``.
"""

from __future__ import annotations

from collections.abc import Sequence

import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import SetParametersResult
from rclpy.executors import ExternalShutdownException
from rclpy.lifecycle import LifecycleNode, LifecyclePublisher, LifecycleState
from rclpy.lifecycle import TransitionCallbackReturn as Ret
from rclpy.parameter import Parameter
from rclpy.publisher import Publisher
from rclpy.subscription import Subscription
from rclpy.timer import Timer
from sensor_msgs.msg import CompressedImage, Image

from mmsag_ros.errors import MmsagError
from mmsag_ros.msg import MultiLabel
from mmsag_ros.ros.conversions import array_to_image, prediction_to_message
from mmsag_ros.ros.diagnostics import SorterStats
from mmsag_ros.ros.params import (
    DYNAMIC_PARAMETERS,
    SorterParams,
    declare_parameters,
    read_parameters,
    resolve_thresholds,
)
from mmsag_ros.ros.qos import image_qos, labels_qos
from mmsag_ros.ros.worker import Frame, FrameWorker
from mmsag_ros.runtime.classifier import Classifier, Prediction
from mmsag_ros.runtime.overlay import draw_overlay

__all__ = ["SorterNode", "main"]

_REJECT_LOG_PERIOD_S = 5.0


class SorterNode(LifecycleNode):
    """Managed node classifying camera frames with an exported MM-SAG bundle."""

    def __init__(self, node_name: str = "sorter", **kwargs: object) -> None:
        super().__init__(node_name, **kwargs)
        declare_parameters(self)
        self._params: SorterParams | None = None
        self._classifier: Classifier | None = None
        self._stats: SorterStats | None = None
        self._worker: FrameWorker | None = None
        self._labels_pub: LifecyclePublisher | None = None
        self._debug_pub: Publisher | None = None
        self._subscriptions: list[Subscription] = []
        self._diag_timer: Timer | None = None
        self._active = False
        # Diagnostics stay up in every state: a monitor should see an inactive sorter too.
        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.add_on_set_parameters_callback(self._on_set_parameters)

    # Lifecycle transitions ---------------------------------------------------------------

    def on_configure(self, state: LifecycleState) -> Ret:
        """Validate parameters, load the bundle, build and warm up the classifier."""
        classifier = None
        try:
            params = read_parameters(self)
            classifier = Classifier(
                params.bundle,
                backend=params.backend,
                device=params.device,
                max_batch=params.max_batch,
            )
            classifier.set_thresholds(resolve_thresholds(params, classifier.bundle.thresholds))
            classifier.warmup(min(len(params.camera_topics), params.max_batch))
        except Exception as err:  # a failed configure must leave the node up and unconfigured
            reason = str(err) if isinstance(err, MmsagError) else f"{type(err).__name__}: {err}"
            self.get_logger().error(f"configure failed: {reason}")
            if classifier is not None:
                classifier.close()
            return Ret.FAILURE
        self._params, self._classifier = params, classifier
        self._stats = SorterStats(params.camera_topics)
        self._labels_pub = self.create_lifecycle_publisher(
            MultiLabel, params.output_topic, labels_qos(depth=params.output_depth)
        )
        self._diag_timer = self.create_timer(params.diagnostics_period_s, self._report)
        self.get_logger().info(
            f"configured {classifier.model_id} on {classifier.backend.name} "
            f"({len(classifier.labels)} classes) for {', '.join(params.camera_topics)}"
        )
        return Ret.SUCCESS

    def on_activate(self, state: LifecycleState) -> Ret:
        """Subscribe to the cameras and start the inference worker (and the debug image)."""
        params, stats = self._params, self._stats
        if params is None or self._classifier is None or stats is None:
            return Ret.FAILURE
        if params.debug_image:
            # Reliable, so image viewers (reliable by default) match; depth 1: newest only.
            self._debug_pub = self.create_publisher(Image, "debug_image", image_qos("reliable", 1))
        self._worker = FrameWorker(
            self._classifier,
            publish=self._publish,
            on_drop=stats.frame_dropped,
            on_reject=self._reject,
            max_rate_hz=params.max_rate_hz,
        )
        self._worker.start()
        msg_type = CompressedImage if params.input_type == "compressed" else Image
        qos = image_qos(params.image_reliability, params.image_depth)
        for topic in params.camera_topics:
            self._subscriptions.append(
                self.create_subscription(
                    msg_type, topic, lambda msg, cam=topic: self._on_frame(cam, msg), qos
                )
            )
        self._active = True
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> Ret:
        """Stop taking frames and stop the worker."""
        self._stop_input()
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> Ret:
        """Release the classifier, the publisher and the diagnostics timer."""
        self.release()
        return Ret.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> Ret:
        """Release everything, whatever the state."""
        self.release()
        return Ret.SUCCESS

    def _stop_input(self) -> None:
        self._active = False
        for subscription in self._subscriptions:
            self.destroy_subscription(subscription)
        self._subscriptions.clear()
        if self._worker is not None:
            self._worker.stop()
            self._worker = None
        if self._debug_pub is not None:
            self.destroy_publisher(self._debug_pub)
            self._debug_pub = None

    def release(self) -> None:
        """Stop the worker and free every resource configure created (idempotent)."""
        self._stop_input()
        if self._labels_pub is not None:
            self.destroy_lifecycle_publisher(self._labels_pub)
            self._labels_pub = None
        if self._diag_timer is not None:
            self.destroy_timer(self._diag_timer)
            self._diag_timer = None
        if self._classifier is not None:
            self._classifier.close()
            self._classifier = None
        self._params = None

    def autostart(self) -> bool:
        """Configure and activate when the ``autostart`` parameter asks for it."""
        if not self.get_parameter("autostart").value:
            return False
        if self.trigger_configure() != Ret.SUCCESS:
            return False
        return self.trigger_activate() == Ret.SUCCESS

    # Frames ------------------------------------------------------------------------------

    def _on_frame(self, camera: str, msg: Image | CompressedImage) -> None:
        worker, stats = self._worker, self._stats
        if worker is None or stats is None:
            return
        stats.frame_received(camera)
        worker.offer(camera, msg)

    def _reject(self, camera: str, reason: str) -> None:
        if self._stats is not None:
            self._stats.frame_rejected(camera)
        self.get_logger().warning(
            f"rejected a frame from {camera}: {reason}",
            throttle_duration_sec=_REJECT_LOG_PERIOD_S,
        )

    def _publish(self, frame: Frame, prediction: Prediction) -> None:
        publisher, classifier = self._labels_pub, self._classifier
        if publisher is None or classifier is None:
            return
        header = frame.msg.header
        message = prediction_to_message(
            prediction,
            header=header,
            model_id=classifier.model_id,
            class_names=classifier.labels.names,
        )
        stamp_ns = header.stamp.sec * 1_000_000_000 + header.stamp.nanosec
        if stamp_ns > 0:
            message.latency_ms = (self.get_clock().now().nanoseconds - stamp_ns) / 1e6
        publisher.publish(message)
        if self._stats is not None:
            self._stats.label_published(message.latency_ms)
        self._publish_debug(frame, prediction)

    def _publish_debug(self, frame: Frame, prediction: Prediction) -> None:
        publisher, classifier, stats = self._debug_pub, self._classifier, self._stats
        # Drawing costs milliseconds per frame: pay only while someone is looking.
        if publisher is None or publisher.get_subscription_count() == 0:
            return
        if classifier is None or stats is None or frame.image is None:
            return
        try:
            overlay = draw_overlay(
                frame.image,
                prediction,
                names=classifier.labels.display_names,
                spec=classifier.spec,
                color_order=frame.color_order,
            )
        except Exception as err:
            # A debugging aid must never cost the frames after this one their labels.
            self.get_logger().warning(
                f"debug image of a frame from {frame.camera} failed: {err}",
                throttle_duration_sec=_REJECT_LOG_PERIOD_S,
            )
            return
        publisher.publish(array_to_image(overlay, "bgr8", header=frame.msg.header))
        stats.debug_image_published()

    def _report(self) -> None:
        stats, classifier, params = self._stats, self._classifier, self._params
        if stats is None or classifier is None or params is None:
            return
        status = stats.report(
            name=f"{self.get_fully_qualified_name()}: sorter",
            backend=classifier.backend.name,
            model_id=classifier.model_id,
            stale_after_s=params.stale_after_s,
            active=self._active,
        )
        self._diag_pub.publish(SorterStats.array(status, self.get_clock().now().to_msg()))

    # Parameters --------------------------------------------------------------------------

    def _on_set_parameters(self, changes: Sequence[Parameter]) -> SetParametersResult:
        try:
            params = read_parameters(self, changes)
            thresholds = None
            if self._classifier is not None:
                thresholds = resolve_thresholds(params, self._classifier.bundle.thresholds)
        except MmsagError as err:
            return SetParametersResult(successful=False, reason=str(err))
        if self._params is None:
            return SetParametersResult(successful=True)
        names = {change.name for change in changes}
        if names - DYNAMIC_PARAMETERS:
            self.get_logger().info(
                f"{', '.join(sorted(names - DYNAMIC_PARAMETERS))} take effect at the next configure"
            )
        if thresholds is not None:
            if self._worker is not None:
                self._worker.set_thresholds(thresholds)
            elif self._classifier is not None:
                self._classifier.set_thresholds(thresholds)
        if self._worker is not None:
            self._worker.set_max_rate_hz(params.max_rate_hz)
        return SetParametersResult(successful=True)


def main(args: list[str] | None = None) -> None:
    """Run one sorter node until Ctrl-C or an external shutdown."""
    rclpy.init(args=args)
    node = None
    try:
        node = SorterNode()
        node.autostart()
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            node.release()
            node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    main()
