"""What a live replay found: each label as it arrived, the node's own counts, the run's totals.

Plain data (numpy, no ROS), read by the live evaluation and its report.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["LiveLabel", "LiveRun", "NodeCounts", "format_live_label", "peak_points"]


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


def peak_points(peaks: Any) -> np.ndarray:
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
