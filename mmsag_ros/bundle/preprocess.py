"""The one preprocessing function: camera or dataset image -> normalised model input.

Training (after its random crop and flip), evaluation, export checks and the sorter node all
call :func:`preprocess`, so a score measured offline is the score the robot sees. Pure numpy and
OpenCV: no torch, no ROS.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass

import cv2
import numpy as np

from mmsag_ros.errors import ConfigError, ImageConversionError

__all__ = [
    "COLOR_ORDERS",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "NORMALIZATIONS",
    "RESIZE_POLICIES",
    "PreprocessSpec",
    "input_to_source",
    "normalize_into",
    "preprocess",
    "resize_to_input",
    "source_to_input",
    "to_rgb",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: The input normalisations pretrained weights are published with, by name: (mean, std) of
#: RGB in [0, 1]. ``imagenet`` is torchvision's; ``inception`` is TensorFlow's (x - 127.5) /
#: 127.5, which its EfficientNet-Lite checkpoints were trained with (timm's
#: IMAGENET_INCEPTION_MEAN/STD).
NORMALIZATIONS: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
    "imagenet": (IMAGENET_MEAN, IMAGENET_STD),
    "inception": ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)),
}
RESIZE_POLICIES = ("stretch", "letterbox")
COLOR_ORDERS = ("rgb", "bgr", "rgba", "bgra", "mono")


@dataclass(frozen=True)
class PreprocessSpec:
    """How a model wants its input; saved in checkpoints and bundle manifests.

    Attributes:
        input_size: Side S of the square S x S model input, in pixels.
        mean: Per-channel mean of RGB values scaled to [0, 1].
        std: Per-channel standard deviation, same scale.
        resize: ``stretch`` resizes to S x S ignoring the aspect ratio (the recipe of ML-GCN and
            MM-SAG); ``letterbox`` keeps the aspect ratio and pads with the mean colour.
    """

    input_size: int
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    resize: str = "stretch"

    def __post_init__(self) -> None:
        if self.input_size < 16:
            raise ConfigError(f"input_size must be at least 16 pixels, got {self.input_size}")
        if self.resize not in RESIZE_POLICIES:
            raise ConfigError(
                f"resize must be one of {', '.join(RESIZE_POLICIES)}, got {self.resize!r}"
            )
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ConfigError(f"mean and std need 3 values, std > 0; got {self.mean}, {self.std}")

    def to_dict(self) -> dict[str, object]:
        """Plain data for JSON and checkpoints."""
        return {**asdict(self), "mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> PreprocessSpec:
        """Inverse of :meth:`to_dict`; ConfigError naming a missing field."""
        try:
            return cls(
                input_size=int(data["input_size"]),
                mean=tuple(float(v) for v in data["mean"]),
                std=tuple(float(v) for v in data["std"]),
                resize=str(data["resize"]),
            )
        except KeyError as err:
            raise ConfigError(f"preprocessing spec is missing the field {err}") from None


def _check_image(image: np.ndarray, color_order: str) -> None:
    """ImageConversionError unless ``image`` is a non-empty uint8 frame of ``color_order``."""
    if image.dtype != np.uint8:
        raise ImageConversionError(f"expected a uint8 image, got {image.dtype}", kind="layout")
    if color_order not in COLOR_ORDERS:
        raise ImageConversionError(
            f"unknown colour order {color_order!r}; expected one of {', '.join(COLOR_ORDERS)}",
            kind="layout",
        )
    channels = 1 if image.ndim == 2 else image.shape[2] if image.ndim == 3 else 0
    expected = {"mono": 1, "rgb": 3, "bgr": 3, "rgba": 4, "bgra": 4}[color_order]
    if channels != expected or image.shape[0] == 0 or image.shape[1] == 0:
        raise ImageConversionError(
            f"image of shape {image.shape} does not match colour order {color_order!r}",
            kind="layout",
        )


def to_rgb(image: np.ndarray, color_order: str) -> np.ndarray:
    """Return an H x W x 3 uint8 RGB image (a view when it already is one)."""
    _check_image(image, color_order)
    if color_order == "rgb":
        return image
    code = {
        "bgr": cv2.COLOR_BGR2RGB,
        "rgba": cv2.COLOR_RGBA2RGB,
        "bgra": cv2.COLOR_BGRA2RGB,
        "mono": cv2.COLOR_GRAY2RGB,
    }[color_order]
    return cv2.cvtColor(np.ascontiguousarray(image), code)


def _letterbox_geometry(width: int, height: int, size: int) -> tuple[int, int, int, int]:
    """Resized content width/height and its top-left offset inside the S x S input."""
    scale = size / max(width, height)
    new_w, new_h = max(1, round(width * scale)), max(1, round(height * scale))
    return new_w, new_h, (size - new_w) // 2, (size - new_h) // 2


def _resize_content(image: np.ndarray, spec: PreprocessSpec) -> tuple[np.ndarray, int, int]:
    """Resize to the content area of the model input; return it with its left/top offset."""
    size = spec.input_size
    height, width = image.shape[:2]
    if spec.resize == "stretch":
        new_w, new_h, left, top = size, size, 0, 0
    else:
        new_w, new_h, left, top = _letterbox_geometry(width, height, size)
    if (width, height) == (new_w, new_h):
        return image, left, top
    if max(width, height) <= size:
        return cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR), left, top
    # Shrinking: INTER_AREA averages (no aliasing on 1080p -> 224). Exact halvings first take
    # OpenCV's fast 2x2 path, which makes a 1280x720 frame about 2.5x cheaper than one
    # arbitrary-ratio area resize, with the same averaging.
    while image.shape[1] >= 2 * new_w and image.shape[0] >= 2 * new_h:
        half = (image.shape[1] // 2, image.shape[0] // 2)
        image = cv2.resize(image, half, interpolation=cv2.INTER_AREA)
    return cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_AREA), left, top


def _pad_rgb(content: np.ndarray, spec: PreprocessSpec, left: int, top: int) -> np.ndarray:
    size = spec.input_size
    if content.shape[:2] == (size, size):
        return content
    canvas = np.empty((size, size, 3), np.uint8)
    # Pad with the mean colour, which normalises to zero: padding carries no signal.
    canvas[...] = [round(255 * m) for m in spec.mean]
    canvas[top : top + content.shape[0], left : left + content.shape[1]] = content
    return canvas


def resize_to_input(
    image: np.ndarray, spec: PreprocessSpec, color_order: str = "rgb"
) -> np.ndarray:
    """Resize a uint8 image to the S x S x 3 RGB model input by the spec's resize policy."""
    # Check first: a bad frame must fail with our message before a full-size resize.
    _check_image(image, color_order)
    if color_order == "mono" and image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    # Resize first: colour conversion then touches S x S pixels, not H x W.
    content, left, top = _resize_content(image, spec)
    return _pad_rgb(to_rgb(content, color_order), spec, left, top)


def normalize_into(image: np.ndarray, spec: PreprocessSpec, out: np.ndarray) -> np.ndarray:
    """Write ``(image / 255 - mean) / std`` of an S x S x 3 RGB image into ``out`` (3 x S x S)."""
    scale = np.asarray([1.0 / (255.0 * s) for s in spec.std], np.float32)[:, None, None]
    bias = np.asarray([m / s for m, s in zip(spec.mean, spec.std, strict=True)], np.float32)
    np.multiply(image.transpose(2, 0, 1), scale, out=out)
    out -= bias[:, None, None]
    return out


def preprocess(
    image: np.ndarray,
    spec: PreprocessSpec,
    *,
    color_order: str = "rgb",
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Turn an H x W (x C) uint8 image into a normalised 3 x S x S float32 model input.

    Args:
        image: The frame, any size; mono, RGB, BGR, RGBA or BGRA as ``color_order`` says.
        spec: The model's preprocessing spec.
        color_order: Channel order of ``image``.
        out: Optional preallocated 3 x S x S float32 array (e.g. one slot of a batch buffer)
            to write into; avoids an allocation per frame.

    Returns:
        ``out`` if given, else a new array.
    """
    size = spec.input_size
    if out is None:
        out = np.empty((3, size, size), np.float32)
    elif out.shape != (3, size, size) or out.dtype != np.float32:
        raise ValueError(f"out must be float32 of shape (3, {size}, {size}), got {out.shape}")
    return normalize_into(resize_to_input(image, spec, color_order), spec, out)


def input_to_source(
    x: float, y: float, width: int, height: int, spec: PreprocessSpec
) -> tuple[float, float]:
    """Map a point from normalised model-input coordinates to normalised source coordinates.

    Both in [0, 1] with the origin at the top-left. Under ``letterbox``, points on the padding
    are clamped to the image border.
    """
    if spec.resize == "stretch":
        return x, y
    new_w, new_h, left, top = _letterbox_geometry(width, height, spec.input_size)
    size = spec.input_size
    source_x = (x * size - left) / new_w
    source_y = (y * size - top) / new_h
    return min(max(source_x, 0.0), 1.0), min(max(source_y, 0.0), 1.0)


def source_to_input(
    x: np.ndarray, y: np.ndarray, width: int, height: int, spec: PreprocessSpec
) -> tuple[np.ndarray, np.ndarray]:
    """Map points from normalised source coordinates to normalised model-input coordinates.

    The inverse of :func:`input_to_source` (without its clamping); arrays of any shape.
    """
    if spec.resize == "stretch":
        return x, y
    new_w, new_h, left, top = _letterbox_geometry(width, height, spec.input_size)
    size = spec.input_size
    return (x * new_w + left) / size, (y * new_h + top) / size
