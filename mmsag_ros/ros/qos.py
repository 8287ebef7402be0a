"""Quality-of-service profiles for camera input and label output.

Cameras: best effort, keep last 1 by default (the sorter only wants the newest frame; a deeper
queue would only add latency). Labels: reliable, so picking controllers never miss a decision.
"""

from __future__ import annotations

from rclpy.qos import (
    DurabilityPolicy,
    HistoryPolicy,
    QoSProfile,
    ReliabilityPolicy,
)

__all__ = ["RELIABILITY_CHOICES", "image_qos", "labels_qos"]

_RELIABILITY = {
    "best_effort": ReliabilityPolicy.BEST_EFFORT,
    "reliable": ReliabilityPolicy.RELIABLE,
}
RELIABILITY_CHOICES = tuple(_RELIABILITY)


def _profile(reliability: str, depth: int) -> QoSProfile:
    if reliability not in _RELIABILITY:
        raise ValueError(
            f"reliability must be one of {', '.join(RELIABILITY_CHOICES)}, got {reliability!r}"
        )
    if depth < 1:
        raise ValueError(f"QoS depth must be at least 1, got {depth}")
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=depth,
        reliability=_RELIABILITY[reliability],
        durability=DurabilityPolicy.VOLATILE,
    )


def image_qos(reliability: str = "best_effort", depth: int = 1) -> QoSProfile:
    """QoS for camera topics: sensor-data style, keep the newest ``depth`` frames."""
    return _profile(reliability, depth)


def labels_qos(reliability: str = "reliable", depth: int = 10) -> QoSProfile:
    """QoS for the MultiLabel output topic."""
    return _profile(reliability, depth)
