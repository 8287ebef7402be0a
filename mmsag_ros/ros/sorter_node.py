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

:mod:`mmsag_ros.ros.sorter` runs it as a process.
"""

from __future__ import annotations

import threading
import time
import traceback
from collections.abc import Sequence

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rcl_interfaces.msg import SetParametersResult
from rclpy.clock import Clock, ClockType
from rclpy.lifecycle import LifecycleNode, LifecyclePublisher, LifecycleState
from rclpy.lifecycle import TransitionCallbackReturn as Ret
from rclpy.parameter import Parameter
from rclpy.publisher import Publisher
from rclpy.timer import Timer

from mmsag_ros.errors import MmsagError
from mmsag_ros.msg import MultiLabel
from mmsag_ros.ros.camera_input import MESSAGE_TYPES, CameraInput
from mmsag_ros.ros.capture import CaptureRules, FrameCapture
from mmsag_ros.ros.conversions import prediction_to_message
from mmsag_ros.ros.debug_image import DebugImage
from mmsag_ros.ros.declarations import (
    STATIC_PARAMETERS,
    declare_parameters,
    read_parameters,
    static_change_refusal,
)
from mmsag_ros.ros.diagnostics import NodeState, SorterStats, diagnostic_array, sorter_status
from mmsag_ros.ros.model_swap import (
    ModelSwap,
    build_classifier,
    drift_status,
    drift_watch,
    failure_reason,
)
from mmsag_ros.ros.params import (
    DYNAMIC_PARAMETERS,
    SorterParams,
    resolve_thresholds,
)
from mmsag_ros.ros.qos import labels_qos
from mmsag_ros.ros.worker import Frame
from mmsag_ros.runtime.classifier import Classifier, Prediction
from mmsag_ros.runtime.drift import DriftWatch

__all__ = ["SorterNode"]

# A batch is one inference; one that takes longer than this is stuck, not slow.
_WORKER_STOP_TIMEOUT_S = 30.0


class SorterNode(LifecycleNode):
    """Managed node classifying camera frames with an exported MM-SAG bundle."""

    def __init__(self, node_name: str = "sorter", **kwargs: object) -> None:
        super().__init__(node_name, **kwargs)
        declare_parameters(self)
        self.finalized = False
        self._state = "unconfigured"
        self._configure_error = ""
        self._stats = SorterStats()
        self._input = CameraInput(self, self._stats)
        self._params: SorterParams | None = None
        self._classifier: Classifier | None = None
        self._labels_pub: LifecyclePublisher | None = None
        self._debug: DebugImage | None = None
        # Held while publishing and while the output is torn down: the worker thread never
        # publishes through an output that a transition is closing.
        self._output_lock = threading.Lock()
        self._generation = 0
        self.worker_stop_timeout_s = _WORKER_STOP_TIMEOUT_S
        self._callback_errors = 0
        self._callback_error = ""
        self._reverting_bundle = False
        # The loading thread triggers the guard condition; the new model takes over on the
        # executor thread, where every lifecycle transition runs too.
        self._swap_done = self.create_guard_condition(self._finish_swap)
        self.model_swap = ModelSwap(loaded=self._swap_done.trigger)
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
            self._classifier = classifier = build_classifier(params)
            self._drift = drift_watch(params, classifier)
            self._capture = params.frame_capture(MESSAGE_TYPES[params.input_type][1])
            self._capture_rules = params.capture_rules() if self._capture else None
            self._labels_pub = self.create_lifecycle_publisher(
                MultiLabel, params.output_topic, labels_qos(depth=params.output_depth)
            )
            if params.diagnostics_period_s != self._diag_timer.timer_period_ns / 1e9:
                self.destroy_timer(self._diag_timer)
                self._diag_timer = self._start_diagnostics(params.diagnostics_period_s)
        except Exception as err:  # a failed configure leaves the node up and unconfigured
            self._configure_error = failure_reason(err)
            self.get_logger().error(f"configure failed: {self._configure_error}")
            self.release()
            return Ret.FAILURE
        self._state = "inactive"
        self.model_swap.error = ""  # a failed swap concerned the model configure replaced
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
            self.get_logger().error(f"activate failed: {failure_reason(err)}")
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
        self._input.check_types()
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
            self._debug = DebugImage(self, params.debug_image_format)
        # _stop_input moves the generation on, so each worker's generation is its own.
        self._input.open(params, classifier, publish=self._publish, generation=self._generation)

    def _stop_input(self) -> bool:
        """Close the camera input and stop the worker; False if its batch did not end in time."""
        stuck = self._input.close(self.worker_stop_timeout_s)
        if stuck is not None:
            self.get_logger().error(
                f"the inference worker is still inside one batch after "
                f"{self.worker_stop_timeout_s:g} s; its frames will count as failed"
            )
            # It must not share the classifier with a later worker: hand it over.
            self._classifier = None
            stuck.close_classifier_when_done()
        with self._output_lock:
            self._generation += 1  # whatever the old worker still finishes is not published
            if self._debug is not None:
                self._debug.close()
                self._debug = None
        return stuck is None

    def release(self) -> None:
        """Stop the worker and free every resource configure created (idempotent)."""
        self.model_swap.cancel()  # its model is closed when its loading ends
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
            if self._debug is not None and self._debug.publish(frame, prediction, classifier):
                self._stats.debug_image_published()
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

    # Diagnostics -------------------------------------------------------------------------

    def _start_diagnostics(self, period_s: float) -> Timer:
        period_s = period_s if isinstance(period_s, float) and period_s > 0.0 else 1.0
        # A steady clock: with use_sim_time and no /clock yet, ROS time stands still, and a
        # monitor must still hear from the node.
        return self.create_timer(period_s, self._report, clock=self._steady_clock)

    @staticmethod
    def _subscriber_count(publisher: Publisher | None) -> int:
        return 0 if publisher is None else publisher.get_subscription_count()

    def status(self) -> DiagnosticStatus:
        """The node's diagnostics status now, as the ``/diagnostics`` timer publishes it."""
        params, classifier, capture = self._params, self._classifier, self._capture
        stale_after_s = (
            params.stale_after_s if params else float(self.get_parameter("stale_after_s").value)
        )
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
            drift=drift_status(params, classifier, self._drift),
            capture=(capture.describe(), capture.error) if capture else ("off", ""),
            model_swap=self.model_swap.describe(),
            swap_error=self.model_swap.error,
            swaps=self.model_swap.swaps,
            callback_errors=self._callback_errors,
            callback_error=self._callback_error,
            **rate_check,
            type_mismatches=self._input.check_types(),
            labels_subscribers=self._subscriber_count(self._labels_pub),
            debug_image_subscribers=self._debug.subscribers if self._debug else 0,
            camera_publishers=self._input.publisher_count(),
        )
        snapshot = self._stats.snapshot(stale_after_s=stale_after_s)
        return sorter_status(node_state, snapshot, stale_after_s)

    def _report(self) -> None:
        self._diag_pub.publish(diagnostic_array(self.status(), self.get_clock().now().to_msg()))

    def callback_failed(self, err: Exception) -> None:
        """Count and log an exception a callback raised into the executor, which spins on."""
        self._callback_errors += 1
        self._callback_error = failure_reason(err)
        self.get_logger().error(
            f"a callback raised {self._callback_error}; the node keeps running\n"
            + "".join(traceback.format_exception(err)),
            throttle_duration_sec=5.0,
        )

    # Parameters --------------------------------------------------------------------------

    def _on_set_parameters(self, changes: Sequence[Parameter]) -> SetParametersResult:
        refusal = static_change_refusal([change.name for change in changes], self._state)
        if refusal:
            return SetParametersResult(successful=False, reason=refusal)
        swap_to = next((str(c.value) for c in changes if c.name == "bundle"), None)
        if self._state not in ("inactive", "active") or self._reverting_bundle:
            swap_to = None  # bundle is read at the next configure, or a failed swap is undone
        try:
            params = read_parameters(self, changes)
            thresholds = None
            if self._classifier is not None:
                thresholds = resolve_thresholds(params, self._classifier.bundle.thresholds)
            if swap_to is not None and not self.model_swap.check(swap_to, self._classifier):
                swap_to = None
        except MmsagError as err:
            return SetParametersResult(successful=False, reason=str(err))
        except Exception as err:  # a hostile manifest must not reach the executor and stop it
            return SetParametersResult(successful=False, reason=failure_reason(err))
        if swap_to is not None and self._params is not None:
            self.model_swap.start(params, previous=self._params.bundle)
            self.get_logger().info(f"model swap: loading {params.bundle} in the background")
        if self._params is not None:
            self._apply_parameters(params, thresholds)
        for change in changes:
            if change.name in STATIC_PARAMETERS | DYNAMIC_PARAMETERS:
                self.get_logger().info(f"parameter {change.name} set to {change.value!r}")
        return SetParametersResult(successful=True)

    def _apply_parameters(self, params: SorterParams, thresholds: np.ndarray | None) -> None:
        """Put the values that change at run time (thresholds, rate cap) into force."""
        self._params = params
        worker = self._input.worker
        if thresholds is not None:
            if worker is not None:
                worker.set_thresholds(thresholds)
            elif self._classifier is not None:
                self._classifier.set_thresholds(thresholds)
        if worker is not None:
            worker.set_max_rate_hz(params.max_rate_hz)

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

    def _finish_swap(self) -> None:
        """On the executor thread: hand the loaded model over, or keep the old one and say why."""
        loading = self.model_swap.take_finished()
        if loading is None:
            return
        new = self.model_swap.settle(loading, self._params)
        if new is None:
            if self._params is not None:  # the load failed: bundle names the old model again
                self.get_logger().error(
                    f"model swap: {self.model_swap.error}; the old model keeps running"
                )
                self._revert_bundle(loading.previous)
            return
        old, self._classifier = self._classifier, new
        self._drift = drift_watch(self._params, new)  # the new model's window starts empty
        if self._input.worker is not None:
            self._input.worker.replace_classifier(new)  # the worker closes the old one
        elif old is not None:
            old.close()
        self.get_logger().info(
            f"model swap: {new.model_id} takes over from "
            f"{old.model_id if old else 'none'} after {time.monotonic() - loading.started_s:.1f} s"
        )

    def _revert_bundle(self, previous: str) -> None:
        self._reverting_bundle = True  # _on_set_parameters: not another swap
        try:
            self.set_parameters([Parameter("bundle", Parameter.Type.STRING, previous)])
        finally:
            self._reverting_bundle = False
