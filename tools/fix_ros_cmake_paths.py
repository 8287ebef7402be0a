"""Point the CMake files of the ROS 2 wheels at this interpreter's include folders.

The PyPI ROS 2 wheels were built in a manylinux container and their exported CMake files name
that container's Python (``/opt/python/cp311-cp311/...``), which does not exist here, so
``rosidl_generate_interfaces`` cannot find Python.h or numpy's headers. This rewrites those
paths, under ``<prefix>/share``, to the running interpreter's own. Safe to run again: files that
are already right are left untouched.

Usage: python tools/fix_ros_cmake_paths.py [PREFIX]   (default: sys.prefix)
"""

from __future__ import annotations

import re
import sys
import sysconfig
from pathlib import Path

import numpy

_FOREIGN_PYTHON = re.compile(r"/opt/python/cp\d+-cp\d+[^;\"\s)]*")


def _replacement(match: re.Match[str]) -> str:
    path = match.group(0)
    if "numpy" in path:
        return numpy.get_include()
    if "/include/" in path:
        return sysconfig.get_paths()["include"]
    raise SystemExit(f"fix_ros_cmake_paths: no rule for foreign path {path!r}; extend this script")


def fix_cmake_files(prefix: Path) -> list[Path]:
    """Rewrite foreign Python paths in ``prefix/share/**/*.cmake``; return the files changed."""
    changed = []
    for cmake_file in sorted((prefix / "share").glob("**/*.cmake")):
        text = cmake_file.read_text()
        fixed = _FOREIGN_PYTHON.sub(_replacement, text)
        if fixed != text:
            cmake_file.write_text(fixed)
            changed.append(cmake_file)
    return changed


if __name__ == "__main__":
    prefix = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(sys.prefix)
    changed = fix_cmake_files(prefix)
    print(f"fix_ros_cmake_paths: rewrote {len(changed)} CMake file(s) under {prefix / 'share'}")
