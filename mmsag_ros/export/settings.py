"""The exporter's defaults, importable without numpy, OpenCV or ONNX (``mmsag --help`` shows them).

:mod:`mmsag_ros.export.precision` applies them; this module only names them.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["CALIBRATION_METHODS", "DEFAULT_BARS", "DEFAULT_CALIBRATION_IMAGES"]

#: Largest accepted mAP drop of a variant against fp32, in points (1.0 = 0.01 mAP).
DEFAULT_BARS: Mapping[str, float] = {"fp16": 0.5, "int8": 1.0}
#: How int8 activation ranges are estimated from the calibration images.
CALIBRATION_METHODS = ("minmax", "percentile", "entropy")
#: Training images the int8 variant is calibrated on (spread evenly over the split).
DEFAULT_CALIBRATION_IMAGES = 300
