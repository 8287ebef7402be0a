"""The ``sorter`` lifecycle node: camera frames in, one MultiLabel per frame out.

configure loads and checks the bundle, builds the Classifier and warms it up; activate
subscribes to the cameras and starts the inference worker; deactivate and cleanup undo that,
and shutdown ends the process. Frames are taken latest-first (see :mod:`mmsag_ros.ros.worker`),
so latency never grows with a backlog, and every frame is accounted for (see
:mod:`mmsag_ros.ros.diagnostics`). ``/diagnostics`` reports the lifecycle state in every state,
with rates, latency percentiles, the frame ledger and stale cameras. Thresholds and the rate cap
change at run time through ``ros2 param set``; every other parameter is refused while the node
is configured, since it only takes effect at configure, except ``bundle``: setting it on a
configured node swaps the model without stopping the belt (see :meth:`SorterNode.swap_bundle`).
With ``debug_image`` set,
``debug_image`` carries each frame with its scores and attention drawn (bgr8, the source
header), drawn only while that topic has a subscriber.

Run without launch: ``python -m mmsag_ros.ros.sorter --ros-args -p bundle:=<dir> -p
autostart:=true``.
"""

from __future__ import annotations

import threading
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rcl_interfaces.msg import SetParametersResult
from rclpy.clock import Clock, ClockType
from rclpy.exceptions import ParameterException
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.lifecycle import LifecycleNode, LifecyclePublisher, LifecycleState
from rclpy.lifecycle import TransitionCallbackReturn as Ret
from rclpy.logging import get_logger
from rclpy.parameter import Parameter
from rclpy.publisher import Publisher
from rclpy.subscription import Subscription
from rclpy.timer import Timer
from sensor_msgs.msg import CompressedImage, Image

from mmsag_ros.bundle.manifest import load_bundle
from mmsag_ros.errors import MmsagError
from mmsag_ros.msg import MultiLabel
from mmsag_ros.ros.capture import CaptureRules, FrameCapture
from mmsag_ros.ros.conversions import array_to_image, jpeg_image, prediction_to_message
from mmsag_ros.ros.declarations import STATIC_PARAMETERS, declare_parameters, read_parameters
from mmsag_ros.ros.diagnostics import NodeState, SorterStats, diagnostic_array, sorter_status
from mmsag_ros.ros.params import (
    DYNAMIC_PARAMETERS,
    SorterParams,
    backend_options,
    resolve_thresholds,
)
from mmsag_ros.ros.qos import image_qos, labels_qos
from mmsag_ros.ros.worker import Frame, FrameWorker
from mmsag_ros.runtime.classifier import Classifier, Prediction
from mmsag_ros.runtime.drift import DriftWatch
from mmsag_ros.runtime.overlay import draw_overlay

__all__ = ["SorterNode", "main"]

_REJECT_LOG_PERIOD_S = 5.0
# A batch is one inference; one that takes longer than this is stuck, not slow.
_WORKER_STOP_TIMEOUT_S = 30.0
# After the shutdown transition, keep spinning briefly so its service response goes out.
_SHUTDOWN_LINGER_S = 0.5
_MSG_TYPES = {
    "image": (Image, "sensor_msgs/msg/Image"),
    "compressed": (CompressedImage, "sensor_msgs/msg/CompressedImage"),
}


def _reason(err: BaseException) -> str:
    return str(err) if isinstance(err, MmsagError) else f"{type(err).__name__}: {err}"


def _build_classifier(params: SorterParams) -> Classifier:
    """Load, check and warm up the classifier ``params`` describe (slow: seconds)."""
    classifier = Classifier(
        params.bundle,
        backend=params.backend,
        device=params.device,
        precision=params.precision,
        max_batch=params.max_batch,
        backend_options=backend_options(params),
        max_instances=params.max_instances,
        instance_min_relative=params.instance_min_relative,
    )
    try:
        classifier.set_thresholds(resolve_thresholds(params, classifier.bundle.thresholds))
        classifier.warmup(min(len(params.camera_topics), params.max_batch))
    except BaseException:
        classifier.close()
        raise
    return classifier


def _drift_watch(params: SorterParams, classifier: Classifier) -> DriftWatch | None:
    """The drift watch of ``classifier``'s model; None when off or without reference."""
    reference = classifier.bundle.reference
    if params.drift_factor == 0.0 or reference is None:
        return None
    return DriftWatch(
        reference,
        classifier.labels.display_names,
        model_id=classifier.model_id,
        window=params.drift_window,
        factor=params.drift_factor,
    )


@dataclass
class _Swap:
    """A model swap under way: the bundle being loaded in the background, and its outcome."""

    bundle: str
    previous: str
    started_s: float
    classifier: Classifier | None = None
    error: str = ""
    cancelled: bool = False


class SorterNode(LifecycleNode):
    """Managed node classifying camera frames with an exported MM-SAG bundle."""

    def __init__(self, node_name: str = "sorter", **kwargs: object) -> None:
        super().__init__(node_name, **kwargs)
        declare_parameters(self)
        self.finalized = False
        self._state = "unconfigured"
        self._configure_error = ""
        self._stats = SorterStats()
        self._params: SorterParams | None = None
        self._classifier: Classifier | None = None
        self._worker: FrameWorker | None = None
        self._labels_pub: LifecyclePublisher | None = None
        self._debug_pub: Publisher | None = None
        self._subscriptions: list[Subscription] = []
        # Held while publishing and while the output is torn down: the worker thread never
        # publishes through an output that a transition is closing.
        self._output_lock = threading.Lock()
        self._generation = 0
        self.worker_stop_timeout_s = _WORKER_STOP_TIMEOUT_S
        self._type_mismatches: dict[str, tuple[str, ...]] = {}
        self._swap: _Swap | None = None
        self._swap_error = ""
        self._swaps = 0
        self._callback_errors = 0
        self._callback_error = ""
        self._reverting_bundle = False
        # The loading thread triggers it; the swap itself is finished on the executor thread,
        # where every lifecycle transition runs too.
        self._swap_done = self.create_guard_condition(self._finish_swap)
        self._drift: DriftWatch | None = None
        self._capture: FrameCapture | None = None
        self._capture_rules: CaptureRules | None = None
        # Diagnostics run in every state: a monitor should see an unconfigured sorter too.
        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._steady_clock = Clock(clock_type=ClockType.STEADY_TIME)
        self._diag_timer: Timer = self._start_diagnostics(
            self.get_parameter("diagnostics_period_s").value
        )
        self.add_on_set_parameters_callback(self._on_set_parameters)

    # Lifecycle transitions ---------------------------------------------------------------

    def on_configure(self, state: LifecycleState) -> Ret:
        """Validate parameters, load the bundle, build and warm up the classifier."""
        self._configure_error = ""
        try:
            self._params = params = read_parameters(self)
            self._classifier = classifier = _build_classifier(params)
            self._drift = _drift_watch(params, classifier)
            if params.capture_dir:
                self._capture_rules = params.capture_rules()
                self._capture = FrameCapture(
                    Path(params.capture_dir),
                    image_type=_MSG_TYPES[params.input_type][1],
                    max_rate_hz=params.capture_max_rate_hz,
                    max_bytes=params.capture_max_mb * 1_000_000,
                    frames_per_bag=params.capture_frames_per_bag,
                )
            self._labels_pub = self.create_lifecycle_publisher(
                MultiLabel, params.output_topic, labels_qos(depth=params.output_depth)
            )
            if params.diagnostics_period_s != self._diag_timer.timer_period_ns / 1e9:
                self.destroy_timer(self._diag_timer)
                self._diag_timer = self._start_diagnostics(params.diagnostics_period_s)
        except Exception as err:  # a failed configure leaves the node up and unconfigured
            self._configure_error = _reason(err)
            self.get_logger().error(f"configure failed: {self._configure_error}")
            self.release()
            return Ret.FAILURE
        self._state = "inactive"
        self._swap_error = ""  # a failed swap concerned the model that configure replaced
        self.get_logger().info(
            f"configured {classifier.model_id} on {classifier.backend.name} "
            f"({len(classifier.labels)} classes) for {', '.join(params.camera_topics)}"
        )
        return Ret.SUCCESS

    def on_activate(self, state: LifecycleState) -> Ret:
        """Start the inference worker, subscribe to the cameras (and the debug image)."""
        try:
            result = super().on_activate(state)  # the labels publisher
            if result != Ret.SUCCESS:
                return result
            self._start_input()
        except Exception as err:
            self.get_logger().error(f"activate failed: {_reason(err)}")
            self._stop_input()
            super().on_deactivate(state)
            return Ret.FAILURE
        self._state = "active"
        params = self._params
        self.get_logger().info(
            f"active: {params.input_type} frames from "
            f"{', '.join(self.resolve_topic_name(t) for t in params.camera_topics)} -> "
            f"{self.resolve_topic_name(params.output_topic)}"
        )
        self._check_camera_types()
        return Ret.SUCCESS

    def on_deactivate(self, state: LifecycleState) -> Ret:
        """Stop taking frames and wait for the worker's last batch."""
        if not self._stop_input():
            return Ret.ERROR  # on_error releases the model once the stuck batch ends
        result = super().on_deactivate(state)
        self._state = "inactive"
        self.get_logger().info("inactive: camera subscriptions closed, worker stopped")
        return result

    def on_cleanup(self, state: LifecycleState) -> Ret:
        """Release the classifier and the labels publisher."""
        self.release()
        self.get_logger().info("unconfigured: model released")
        return Ret.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> Ret:
        """Release everything, whatever the state; :func:`main` then ends the process."""
        self.release()
        self._state = "finalized"
        self.finalized = True
        self.get_logger().info(f"shut down from {state.label}; exiting")
        return Ret.SUCCESS

    def on_error(self, state: LifecycleState) -> Ret:
        """A transition raised or the worker got stuck: release everything, go unconfigured."""
        self.get_logger().error(f"error while leaving {state.label}: releasing the model")
        self.release()
        return Ret.SUCCESS

    def _start_input(self) -> None:
        params, classifier = self._params, self._classifier
        if params is None or classifier is None:
            raise RuntimeError("activate before a successful configure")
        if params.debug_image:
            # Reliable, so image viewers (reliable by default) match; depth 1: newest only.
            qos = image_qos("reliable", 1)
            if params.debug_image_format == "jpeg":
                self._debug_pub = self.create_publisher(
                    CompressedImage, "debug_image/compressed", qos
                )
            else:
                self._debug_pub = self.create_publisher(Image, "debug_image", qos)
        # _stop_input moves the generation on, so each worker's generation is its own.
        self._worker = FrameWorker(
            classifier,
            stats=self._stats,
            publish=self._publish,
            on_reject=self._log_reject,
            max_rate_hz=params.max_rate_hz,
            max_input_pixels=params.max_input_pixels,
            generation=self._generation,
        )
        self._worker.start()
        # Cameras go by their full names everywhere (diagnostics, logs, capture bags), so that
        # the cells of one plant can be told apart.
        cameras = [self.resolve_topic_name(t) for t in params.camera_topics]
        self._stats.watch(cameras)
        msg_type = _MSG_TYPES[params.input_type][0]
        qos = image_qos(params.image_reliability, params.image_depth)
        for topic in cameras:
            self._subscriptions.append(
                self.create_subscription(
                    msg_type, topic, lambda msg, cam=topic: self._on_frame(cam, msg), qos
                )
            )

    def _stop_input(self) -> bool:
        """Close the camera input and stop the worker; False if its batch did not end in time."""
        for subscription in self._subscriptions:
            self.destroy_subscription(subscription)
        self._subscriptions.clear()
        self._type_mismatches.clear()
        stopped = True
        worker, self._worker = self._worker, None
        if worker is not None:
            stopped = worker.stop(self.worker_stop_timeout_s)
            if not stopped:
                self.get_logger().error(
                    f"the inference worker is still inside one batch after "
                    f"{self.worker_stop_timeout_s:g} s; its frames will count as failed"
                )
                # It must not share the classifier with a later worker: hand it over.
                self._classifier = None
                worker.close_classifier_when_done()
        with self._output_lock:
            self._generation += 1  # whatever the old worker still finishes is not published
            if self._debug_pub is not None:
                self.destroy_publisher(self._debug_pub)
                self._debug_pub = None
        return stopped

    def release(self) -> None:
        """Stop the worker and free every resource configure created (idempotent)."""
        if self._swap is not None:
            self._swap.cancelled = True  # its model is closed when its loading ends
        self._stop_input()
        with self._output_lock:
            if self._labels_pub is not None:
                self.destroy_lifecycle_publisher(self._labels_pub)
                self._labels_pub = None
        if self._classifier is not None:
            self._classifier.close()
            self._classifier = None
        self._params = None
        self._drift = None
        capture, self._capture = self._capture, None
        if capture is not None:
            capture.close()
        if self._state != "finalized":
            self._state = "unconfigured"

    def autostart(self) -> bool:
        """Configure and activate when the ``autostart`` parameter asks for it."""
        if not self.get_parameter("autostart").value:
            return False
        if self.trigger_configure() != Ret.SUCCESS:
            return False
        return self.trigger_activate() == Ret.SUCCESS

    # Frames ------------------------------------------------------------------------------

    def _on_frame(self, camera: str, msg: Image | CompressedImage) -> None:
        worker = self._worker
        if worker is None:  # a callback racing deactivate: counted, not lost
            self._stats.frame_dropped(self._stats.frame_received(camera))
            return
        worker.offer(camera, msg)

    def _log_reject(self, camera: str, reason: str) -> None:
        self.get_logger().warning(
            f"rejected a frame from {camera}: {reason}",
            throttle_duration_sec=_REJECT_LOG_PERIOD_S,
        )

    def _publish(self, frame: Frame, prediction: Prediction) -> float:
        """Publish the frame's MultiLabel; returns its latency, raises if it cannot go out."""
        with self._output_lock:
            publisher, classifier = self._labels_pub, frame.classifier or self._classifier
            if frame.generation != self._generation:
                raise RuntimeError("the frame's worker was stopped before its label went out")
            if publisher is None or classifier is None or not publisher.is_activated:
                raise RuntimeError("the labels publisher is not active")
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
            self._publish_debug(frame, prediction, classifier)
        self._capture_frame(frame, prediction, message)
        drift = self._drift
        if drift is not None and drift.model_id == classifier.model_id and frame.image is not None:
            drift.add(frame.image, frame.color_order, prediction.scores, prediction.decisions)
        return message.latency_ms

    def _capture_frame(self, frame: Frame, prediction: Prediction, message: MultiLabel) -> None:
        capture, rules = self._capture, self._capture_rules
        if capture is None or rules is None:
            return
        reasons = rules.reasons(prediction.scores, prediction.thresholds, capture.draw())
        if reasons:
            capture.offer(frame.camera, frame.msg, message, reasons)

    def _publish_debug(self, frame: Frame, prediction: Prediction, classifier: Classifier) -> None:
        publisher = self._debug_pub
        # Drawing costs milliseconds per frame: pay only while someone is looking.
        if publisher is None or publisher.get_subscription_count() == 0 or frame.image is None:
            return
        try:
            overlay = draw_overlay(
                frame.image,
                prediction,
                names=classifier.labels.display_names,
                spec=classifier.spec,
                color_order=frame.color_order,
            )
            if publisher.msg_type is CompressedImage:  # debug_image_format: jpeg
                publisher.publish(jpeg_image(overlay, header=frame.msg.header))
            else:
                publisher.publish(array_to_image(overlay, "bgr8", header=frame.msg.header))
        except Exception as err:
            # A debugging aid must never cost this frame or the next ones their labels.
            self.get_logger().warning(
                f"debug image of a frame from {frame.camera} failed: {err}",
                throttle_duration_sec=_REJECT_LOG_PERIOD_S,
            )
            return
        self._stats.debug_image_published()

    # Diagnostics -------------------------------------------------------------------------

    def _start_diagnostics(self, period_s: float) -> Timer:
        period_s = period_s if isinstance(period_s, float) and period_s > 0.0 else 1.0
        # A steady clock: with use_sim_time and no /clock yet, ROS time stands still, and a
        # monitor must still hear from the node.
        return self.create_timer(period_s, self._report, clock=self._steady_clock)

    def _check_camera_types(self) -> tuple[str, ...]:
        """Camera topics whose publishers send another type than the node subscribes to."""
        params = self._params
        if params is None or self._state != "active":
            return ()
        _, expected = _MSG_TYPES[params.input_type]
        for topic in params.camera_topics:
            resolved = self.resolve_topic_name(topic)
            publishers = self.get_publishers_info_by_topic(resolved)
            types = tuple(sorted({info.topic_type for info in publishers}))
            if not types or expected in types:
                self._type_mismatches.pop(resolved, None)
            elif self._type_mismatches.get(resolved) != types:
                self._type_mismatches[resolved] = types
                other = "image" if params.input_type == "compressed" else "compressed"
                launch_flag = "true" if other == "compressed" else "false"
                self.get_logger().error(
                    f"camera topic {resolved} carries {', '.join(types)}, but input_type is "
                    f"{params.input_type} ({expected}): no frame will arrive; set "
                    f"input_type to {other} (launch: compressed:={launch_flag})"
                )
        return tuple(sorted(self._type_mismatches))

    @staticmethod
    def _subscriber_count(publisher: Publisher | None) -> int:
        return 0 if publisher is None else publisher.get_subscription_count()

    def _drift_status(
        self, params: SorterParams | None, classifier: Classifier | None
    ) -> tuple[str, str]:
        """``(window, findings)`` for diagnostics: how full the window is, what moved."""
        if params is None or classifier is None:
            return "", ""
        if params.drift_factor == 0.0:
            return "off (drift_factor 0)", ""
        drift = self._drift
        if drift is None:
            return "off: the bundle has no reference statistics (export it with --val-data)", ""
        report = drift.report()
        return f"{report.frames}/{report.window} frames", report.describe()

    def _capture_status(self) -> tuple[str, str]:
        """``(counts, last write error)`` of the frame capture; ("off", "") without one."""
        capture = self._capture
        if capture is None:
            return "off", ""
        counts = capture.counts()
        text = ", ".join(f"{key} {value}" for key, value in sorted(counts.items()))
        return f"{capture.directory}: {text or 'nothing yet'}", capture.error

    def _swap_loading(self) -> str:
        swap = self._swap
        if swap is None:
            return ""
        return f"loading {swap.bundle} for {time.monotonic() - swap.started_s:.1f} s"

    def status(self) -> DiagnosticStatus:
        """The node's diagnostics status now, as the ``/diagnostics`` timer publishes it."""
        params, classifier = self._params, self._classifier
        stale_after_s = (
            params.stale_after_s if params else float(self.get_parameter("stale_after_s").value)
        )
        mismatches = self._check_camera_types()
        fqn = self.get_fully_qualified_name()
        rate_check = (
            {"expected_rate_hz": params.expected_rate_hz, "rate_tolerance": params.rate_tolerance}
            if params
            else {}
        )
        node_state = NodeState(
            name=f"{fqn}: sorter",
            hardware_id=fqn,
            lifecycle_state=self._state,
            configure_error=self._configure_error,
            backend=classifier.backend.name if classifier else "",
            model_id=classifier.model_id if classifier else "",
            drift=self._drift_status(params, classifier),
            capture=self._capture_status(),
            model_swap=self._swap_loading(),
            swap_error=self._swap_error,
            swaps=self._swaps,
            callback_errors=self._callback_errors,
            callback_error=self._callback_error,
            **rate_check,
            type_mismatches=mismatches,
            labels_subscribers=self._subscriber_count(self._labels_pub),
            debug_image_subscribers=self._subscriber_count(self._debug_pub),
            camera_publishers=min(
                (s.get_publisher_count() for s in self._subscriptions), default=0
            ),
        )
        snapshot = self._stats.snapshot(stale_after_s=stale_after_s)
        return sorter_status(node_state, snapshot, stale_after_s)

    def _report(self) -> None:
        self._diag_pub.publish(diagnostic_array(self.status(), self.get_clock().now().to_msg()))

    def callback_failed(self, err: Exception) -> None:
        """Count and log an exception a callback raised into the executor, which spins on."""
        self._callback_errors += 1
        self._callback_error = _reason(err)
        self.get_logger().error(
            f"a callback raised {self._callback_error}; the node keeps running\n"
            + "".join(traceback.format_exception(err)),
            throttle_duration_sec=5.0,
        )

    # Parameters --------------------------------------------------------------------------

    def _on_set_parameters(self, changes: Sequence[Parameter]) -> SetParametersResult:
        names = {change.name for change in changes}
        static = set(names & STATIC_PARAMETERS)
        swap_to = next((str(c.value) for c in changes if c.name == "bundle"), None)
        if swap_to is not None and self._state in ("inactive", "active"):
            static -= {"bundle"}  # a swap, unless a failed one is being undone
            swap_to = None if self._reverting_bundle else swap_to
        else:
            swap_to = None
        if static and self._state != "unconfigured":
            return SetParametersResult(
                successful=False,
                reason=(
                    f"{', '.join(sorted(static))} only take(s) effect at configure and the "
                    f"sorter is {self._state}: deactivate and clean it up, set the value, "
                    "configure again"
                ),
            )
        try:
            params = read_parameters(self, changes)
            thresholds = None
            if self._classifier is not None:
                thresholds = resolve_thresholds(params, self._classifier.bundle.thresholds)
            if swap_to is not None and not self._check_swap(swap_to):
                swap_to = None
        except MmsagError as err:
            return SetParametersResult(successful=False, reason=str(err))
        except Exception as err:  # a hostile manifest must not reach the executor and stop it
            return SetParametersResult(successful=False, reason=_reason(err))
        if swap_to is not None:
            self._start_swap(params)
        if self._params is not None:
            self._params = params
            if thresholds is not None:
                if self._worker is not None:
                    self._worker.set_thresholds(thresholds)
                elif self._classifier is not None:
                    self._classifier.set_thresholds(thresholds)
            if self._worker is not None:
                self._worker.set_max_rate_hz(params.max_rate_hz)
        for change in changes:
            if change.name in STATIC_PARAMETERS | DYNAMIC_PARAMETERS:
                self.get_logger().info(f"parameter {change.name} set to {change.value!r}")
        return SetParametersResult(successful=True)

    # Model swap ----------------------------------------------------------------------------

    def swap_bundle(self, bundle: str) -> SetParametersResult:
        """Swap the running model for ``bundle``, as ``ros2 param set <node> bundle <dir>`` does.

        The call returns at once: the bundle's manifest is read and its classes are checked
        here (the new model must label the same classes in the same order, since thresholds
        and picking controllers index them by position), and a refusal names the reason. The
        new model is then loaded, checked and warmed up in the background while the current
        one keeps labelling; it takes over between two batches, so every frame is labelled by
        exactly one of them and its MultiLabel names that one's ``model_id``. Threshold
        parameters set at run time carry over; those at -1 follow the new bundle's own. If
        the background load fails, the old model stays, ``bundle`` returns to its previous
        value and ``/diagnostics`` warns with the reason (``model_swap_error``).
        """
        return self.set_parameters([Parameter("bundle", Parameter.Type.STRING, bundle)])[0]

    def _check_swap(self, bundle: str) -> bool:
        """Whether to load ``bundle`` (not the running one); MmsagError if the swap cannot work.

        Quick, since the executor waits on it: a swap that is refused is refused here.
        """
        if self._swap is not None:
            raise MmsagError(
                f"a model swap to {self._swap.bundle} is still loading; set bundle again "
                "once /diagnostics reports it done"
            )
        classifier = self._classifier
        if classifier is None:
            raise MmsagError("the sorter has no model to swap (a stuck batch released it)")
        # No hashing here: reading the model files is the background load's work.
        candidate = load_bundle(Path(bundle), verify=False)
        running, offered = list(classifier.labels.names), list(candidate.labels.names)
        if offered != running:
            raise MmsagError(
                f"bundle {bundle} labels {offered}, the running model {running}: a swap keeps "
                "the classes and their order; for other classes deactivate, clean up, set "
                "bundle and configure"
            )
        running_here = Path(bundle).resolve() == Path(classifier.bundle.root).resolve()
        return not (running_here and candidate.model_id == classifier.bundle.model_id)

    def _start_swap(self, params: SorterParams) -> None:
        assert self._params is not None
        swap = _Swap(bundle=params.bundle, previous=self._params.bundle, started_s=time.monotonic())
        self._swap = swap
        self.get_logger().info(f"model swap: loading {swap.bundle} in the background")
        threading.Thread(
            target=self._load_swap, args=(swap, params), name="sorter-swap", daemon=True
        ).start()

    def _load_swap(self, swap: _Swap, params: SorterParams) -> None:
        """The swap thread: build the new classifier while the old one keeps labelling."""
        try:
            swap.classifier = _build_classifier(params)
        except Exception as err:
            swap.error = _reason(err)
        try:
            self._swap_done.trigger()
        except Exception:  # the node went away meanwhile; so did everything to swap
            if swap.classifier is not None:
                swap.classifier.close()

    def _finish_swap(self) -> None:
        """On the executor thread: hand the loaded model over, or keep the old one and say why."""
        swap = self._swap
        if swap is None or (swap.classifier is None and not swap.error):
            return
        self._swap = None
        new = swap.classifier
        if swap.cancelled or self._params is None:
            if new is not None:
                new.close()
            return
        if new is None:
            self._swap_error = f"swap to {swap.bundle} failed: {swap.error}"
            self.get_logger().error(f"model swap: {self._swap_error}; the old model keeps running")
            self._reverting_bundle = True
            try:
                self.set_parameters([Parameter("bundle", Parameter.Type.STRING, swap.previous)])
            finally:
                self._reverting_bundle = False
            return
        # Thresholds may have changed while it loaded: the parameters in force now decide.
        new.set_thresholds(resolve_thresholds(self._params, new.bundle.thresholds))
        old, self._classifier = self._classifier, new
        self._drift = _drift_watch(self._params, new)  # the new model's window starts empty
        if self._worker is not None:
            self._worker.replace_classifier(new)  # the worker closes the old one
        elif old is not None:
            old.close()
        self._swap_error = ""
        self._swaps += 1
        self.get_logger().info(
            f"model swap: {new.model_id} takes over from "
            f"{old.model_id if old else 'none'} after {time.monotonic() - swap.started_s:.1f} s"
        )


def _spin_once(executor: SingleThreadedExecutor, node: SorterNode, timeout_s: float) -> None:
    try:
        executor.spin_once(timeout_sec=timeout_s)
    except ExternalShutdownException:
        raise
    except Exception as err:  # one callback's bug must not stop the cell's labels
        node.callback_failed(err)


def main(args: list[str] | None = None) -> None:
    """Run one sorter node until Ctrl-C, an external shutdown or its shutdown transition."""
    rclpy.init(args=args)
    node = None
    try:
        try:
            node = SorterNode()
        except ParameterException as err:  # a start-up value rclpy refuses: type or range
            get_logger("sorter").fatal(f"bad parameter: {err}")
            raise SystemExit(2) from None
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        node.autostart()
        while rclpy.ok() and not node.finalized:
            _spin_once(executor, node, 0.1)
        linger_until = time.monotonic() + _SHUTDOWN_LINGER_S
        while rclpy.ok() and time.monotonic() < linger_until:
            _spin_once(executor, node, 0.05)
        if node is not None and not node.finalized:
            node.get_logger().info("ROS shut down (Ctrl-C or an external shutdown); exiting")
    except (KeyboardInterrupt, ExternalShutdownException):
        if node is not None:
            node.get_logger().info("interrupted (Ctrl-C or an external shutdown); exiting")
    finally:
        if node is not None:
            node.release()
            node.destroy_node()
        rclpy.try_shutdown()


if __name__ == "__main__":
    main()
