"""Packaging contracts: ROS-free library, declared ROS dependencies, the environment script."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from support import REPO, VENV

PACKAGE = REPO / "mmsag_ros"
ROS_PARTS = {"ros", "bag"}  # the only subpackages allowed to import rclpy


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def _ament_packages() -> set[str]:
    index = VENV / "share" / "ament_index" / "resource_index" / "packages"
    return {p.name for p in index.iterdir()}


def test_only_ros_and_bag_import_rclpy():
    offenders = [
        str(path.relative_to(REPO))
        for path in PACKAGE.rglob("*.py")
        if path.relative_to(PACKAGE).parts[0] not in ROS_PARTS
        and "rclpy" in _imported_modules(path)
    ]
    assert offenders == []


def test_package_xml_declares_every_ros_package_the_code_imports():
    root = ET.parse(REPO / "package.xml").getroot()
    assert root.get("format") == "3"
    assert root.findtext("export/build_type") == "ament_cmake"
    declared = {
        element.text
        for tag in ("depend", "exec_depend", "build_depend", "buildtool_depend")
        for element in root.iter(tag)
    }
    ros_packages = _ament_packages() - {"mmsag_ros"}
    imported = set().union(*(_imported_modules(p) for p in PACKAGE.rglob("*.py")))
    assert imported & ros_packages, "the scan found no ROS import at all"
    assert sorted((imported & ros_packages) - declared) == []


def test_setup_script_is_idempotent_and_quick_on_a_ready_venv():
    stamps = VENV / ".mmsag-setup"
    before = {p.name: p.stat().st_mtime_ns for p in stamps.iterdir()}
    generated = (
        VENV
        / "lib"
        / f"python{sys.version_info.major}.{sys.version_info.minor}"
        / "site-packages"
        / "mmsag_ros"
        / "msg"
    )
    msg_before = {p.name: p.stat().st_mtime_ns for p in generated.iterdir()}

    started = time.monotonic()
    run = subprocess.run(
        ["bash", str(REPO / "tools" / "setup_env.sh")],
        env=dict(os.environ, MMSAG_VENV=str(VENV)),
        capture_output=True,
        text=True,
        timeout=300,
    )
    elapsed_s = time.monotonic() - started

    assert run.returncode == 0, run.stderr
    assert "python packages: up to date" in run.stdout
    assert "messages: up to date" in run.stdout
    assert {p.name: p.stat().st_mtime_ns for p in stamps.iterdir()} == before
    assert {p.name: p.stat().st_mtime_ns for p in generated.iterdir()} == msg_before
    assert elapsed_s < 30, f"a no-op setup took {elapsed_s:.1f} s"


@pytest.mark.slow
def test_pip_install_without_ros_gives_library_and_command(tmp_path):
    venv = tmp_path / "plain"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, env=_without_venv())
    python = venv / "bin" / "python"
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "-e", str(REPO)],
        capture_output=True,
        text=True,
        env=_without_venv(),
        timeout=300,
    )
    assert install.returncode == 0, install.stderr
    env = _without_venv()
    info = subprocess.run(
        [str(venv / "bin" / "mmsag"), "info", "--json"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    assert info.returncode == 0, info.stderr
    assert '"rclpy": {\n      "available": false' in info.stdout
    check = subprocess.run(
        [
            str(python),
            "-c",
            # The core needs neither ROS nor torch (that is the [train] extra).
            "import mmsag_ros.errors, mmsag_ros.runtime.preprocess, mmsag_ros.data.labels, "
            "mmsag_ros.cli.data; "
            "import importlib.util as u; print(u.find_spec('rclpy'))",
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    assert check.returncode == 0, check.stderr
    assert check.stdout.strip() == "None"


def _without_venv() -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"VIRTUAL_ENV", "PYTHONPATH", "AMENT_PREFIX_PATH"}
    }
    env["PATH"] = os.pathsep.join(
        p for p in env["PATH"].split(os.pathsep) if not p.startswith(str(VENV))
    )
    return env
