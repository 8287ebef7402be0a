"""The node's outgoing messages: arrays as images (the debug overlay), predictions as MultiLabel.

Incoming frames are read by :mod:`mmsag_ros.camera`, which needs no ROS.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import cv2
import numpy as np
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

from mmsag_ros.camera.encodings import CHANNELS
from mmsag_ros.errors import ImageConversionError
from mmsag_ros.msg import AttentionPeak, InstancePeaks, MultiLabel

if TYPE_CHECKING:
    from mmsag_ros.runtime.classifier import Prediction

__all__ = ["array_to_image", "jpeg_image", "prediction_to_message"]


def array_to_image(array: np.ndarray, encoding: str, header: Header | None = None) -> Image:
    """Build a ``sensor_msgs/Image`` from an ``(H, W)`` or ``(H, W, C)`` uint8 array."""
    channels = CHANNELS.get(encoding)
    if channels is None:
        raise ImageConversionError(
            f"unsupported image encoding {encoding!r}; expected one of {', '.join(CHANNELS)}"
        )
    if array.dtype != np.uint8:
        raise ImageConversionError(f"image array must be uint8, got {array.dtype}")
    shape_channels = 1 if array.ndim == 2 else array.shape[2] if array.ndim == 3 else -1
    if shape_channels != channels:
        raise ImageConversionError(
            f"array of shape {array.shape} does not match encoding {encoding!r}"
            f" ({channels} channel(s))"
        )
    height, width = array.shape[:2]
    msg = Image(
        height=height,
        width=width,
        encoding=encoding,
        is_bigendian=0,
        step=width * channels,
    )
    if header is not None:
        msg.header = header
    msg.data = np.ascontiguousarray(array).tobytes()
    return msg


def jpeg_image(bgr: np.ndarray, header: Header | None = None, quality: int = 90) -> CompressedImage:
    """A ``sensor_msgs/CompressedImage`` (``jpeg``) of a bgr8 ``(H, W, 3)`` array."""
    ok, data = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ImageConversionError(f"could not encode a {bgr.shape} array as JPEG")
    msg = CompressedImage(format="jpeg", data=data.tobytes())
    if header is not None:
        msg.header = header
    return msg


def prediction_to_message(
    prediction: Prediction, *, header: Header, model_id: str, class_names: Sequence[str]
) -> MultiLabel:
    """The MultiLabel for one classified frame; ``latency_ms`` is left for the publisher."""
    message = MultiLabel(
        header=header,
        model_id=model_id,
        class_names=list(class_names),
        scores=prediction.scores.tolist(),
        decisions=prediction.decisions.tolist(),
        thresholds=prediction.thresholds.tolist(),
        inference_time_ms=prediction.timings.inference_ms,
        image_width=prediction.source_size[0],
        image_height=prediction.source_size[1],
        contract_version=MultiLabel.CONTRACT_VERSION,
    )
    if prediction.peaks is not None:
        message.peaks = [
            AttentionPeak(x=float(x), y=float(y), strength=float(s)) for x, y, s in prediction.peaks
        ]
    if prediction.instances is not None:
        message.instances = [
            InstancePeaks(
                peaks=[
                    AttentionPeak(x=float(x), y=float(y), strength=float(s)) for x, y, s in points
                ]
            )
            for points in prediction.instances
        ]
    return message
