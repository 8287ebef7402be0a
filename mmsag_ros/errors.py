"""Exceptions raised by mmsag_ros.

Every error the library raises on purpose derives from :class:`MmsagError`, so callers (the
CLI, the node) can tell a reported problem from a bug. Messages state the bad value and the fix.
"""

from __future__ import annotations

__all__ = [
    "BackendUnavailableError",
    "BagError",
    "BundleError",
    "ConfigError",
    "DatasetError",
    "ImageConversionError",
    "MmsagError",
    "ModelNotFoundError",
]


class MmsagError(Exception):
    """Root of all errors raised on purpose by mmsag_ros."""


class ConfigError(MmsagError, ValueError):
    """A configuration value, parameter or command-line option is invalid."""


class DatasetError(MmsagError):
    """A dataset is missing, malformed or inconsistent (files, annotations, label lists)."""


class ModelNotFoundError(MmsagError, LookupError):
    """A model name, checkpoint or bundle does not exist."""


class BackendUnavailableError(MmsagError):
    """An inference backend (TensorRT, ONNX Runtime, torch) cannot be used on this machine."""


class BagError(MmsagError):
    """A rosbag cannot be read or written."""


class BundleError(MmsagError):
    """A model bundle is missing, malformed or inconsistent (manifest, files, hashes, engines)."""


#: What a refused frame was wrong with (:attr:`ImageConversionError.kind`).
REJECTION_KINDS = ("encoding", "layout", "oversize", "corrupt")


class ImageConversionError(MmsagError, ValueError):
    """A camera frame cannot be turned into an image array (encoding, size, corrupt data).

    ``kind`` sorts the refusals a node counts, one of :data:`REJECTION_KINDS`: ``encoding``
    (an encoding or format the node does not read), ``layout`` (sizes, step and data length
    disagree, or nothing is there), ``oversize`` (more pixels, bytes or JPEG scans than
    allowed) and ``corrupt`` (data that does not decode).
    """

    def __init__(self, message: str, kind: str = "corrupt") -> None:
        super().__init__(message)
        if kind not in REJECTION_KINDS:
            raise ValueError(f"unknown rejection kind {kind!r}")
        self.kind = kind

    @property
    def reason(self) -> str:
        """The message up to its first ``;``, without this frame's details.

        The key under which rejected frames are counted.
        """
        return str(self).split(";")[0]
