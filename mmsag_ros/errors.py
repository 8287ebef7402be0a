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


class ImageConversionError(MmsagError, ValueError):
    """A camera frame cannot be turned into an image array (encoding, size, corrupt data)."""

    @property
    def reason(self) -> str:
        """The message up to its first ``;``, without this frame's details.

        The key under which rejected frames are counted.
        """
        return str(self).split(";")[0]
