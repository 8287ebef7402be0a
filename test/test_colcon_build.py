"""The package builds with colcon in an ordinary ROS 2 workspace and its install space works."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from support import REPO, VENV

pytestmark = pytest.mark.slow

_CHECK = """
import pathlib, sys
import mmsag_ros, mmsag_ros.errors, mmsag_ros.msg
from mmsag_ros.msg import AttentionPeak, MultiLabel
from mmsag_ros.cli.info import collect
from rclpy.serialization import deserialize_message, serialize_message
msg = MultiLabel(class_names=["metal"], scores=[0.75], peaks=[AttentionPeak(x=0.5)])
back = deserialize_message(serialize_message(msg), MultiLabel)
assert back.scores[0] == 0.75 and back.peaks[0].x == 0.5, back
maps = pathlib.Path("/proc/self/maps").read_text().splitlines()
libs = sorted({line.split()[-1] for line in maps if "libmmsag_ros__" in line})
print(mmsag_ros.__file__)
print(mmsag_ros.errors.__file__)
print(mmsag_ros.msg.__file__)
print(*libs, sep="\\n")
print("version", mmsag_ros.__version__)
"""


def _source_files() -> list[str]:
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        check=True,
        capture_output=True,
        text=True,
    )
    return [p for p in listed.stdout.splitlines() if (REPO / p).is_file()]


def _wheel_library_path() -> str:
    """The library path the ROS wheels' bootstrapper would set, in a fixed order."""
    site = (
        Path(sys.prefix)
        / "lib"
        / f"python{sys.version_info.major}.{sys.version_info.minor}"
        / "site-packages"
    )
    dirs = [*sorted(str(p) for p in site.glob("ros_*.libs")), str(VENV / "lib")]
    return os.pathsep.join(dirs)


@pytest.mark.parametrize("symlink", [False, True], ids=["copy", "symlink-install"])
def test_colcon_build_and_import_from_install_space(symlink, tmp_path):
    package = tmp_path / "ws" / "src" / "mmsag_ros"
    for relative in _source_files():
        (package / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / relative, package / relative)
    workspace = package.parents[1]
    env = dict(
        os.environ,
        AMENT_PREFIX_PATH=str(VENV),
        CMAKE_PREFIX_PATH=str(VENV),
        PATH=f"{VENV / 'bin'}{os.pathsep}{os.environ['PATH']}",
    )
    command = [str(VENV / "bin" / "colcon"), "build", "--event-handlers", "console_cohesion-"]
    if symlink:
        command.append("--symlink-install")
    command += ["--cmake-args", f"-DPython3_EXECUTABLE={sys.executable}", "-DBUILD_TESTING=OFF"]
    build = subprocess.run(
        command, cwd=workspace, env=env, capture_output=True, text=True, timeout=600
    )
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]

    install = workspace / "install"
    share = install / "mmsag_ros" / "share" / "mmsag_ros"
    assert (share / "config" / "fastdds_shm.xml").is_file()
    assert (share / "config" / "sorter.yaml").is_file()
    assert (share / "launch" / "sorter.launch.py").is_file()
    sorter = install / "mmsag_ros" / "lib" / "mmsag_ros" / "sorter"
    assert os.access(sorter, os.X_OK)
    # Started by the interpreter it was built for, not the first python3 on PATH.
    assert sorter.read_text().splitlines()[0] == f"#!{sys.executable}"
    # As on a robot: source the workspace, then run Python. The bootstrapper is told the library
    # path is set so that the order (install space before the venv) is ours, not random.
    env.update(_ROS_WHEELS_BOOTSTRAP_COMPLETE="1", LD_LIBRARY_PATH=_wheel_library_path())
    env.pop("PYTHONPATH", None)
    script = f". {install}/local_setup.bash && exec {sys.executable} -c '{_CHECK}'"
    run = subprocess.run(
        ["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    *paths, version = lines
    assert version == "version 0.1.0"
    for path in paths:
        assert Path(path).absolute().is_relative_to(install), f"{path} not from the install space"
    assert any("libmmsag_ros__rosidl_typesupport" in p for p in paths)
