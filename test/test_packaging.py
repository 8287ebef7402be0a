"""Packaging contracts: ROS-free library, declared ROS dependencies, the environment script."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from support import REPO, VENV

PACKAGE = REPO / "mmsag_ros"
ROS_PARTS = {"ros", "live"}  # the only subpackages allowed to import rclpy


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


def test_only_ros_and_live_import_rclpy():
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


def _mtimes(paths: list[Path]) -> dict[str, int]:
    return {str(p.relative_to(VENV)): p.stat().st_mtime_ns for p in paths}


def _installed_state() -> dict[str, int]:
    """Modification times of what each setup step writes into the venv.

    pip rewrites a distribution's ``*.dist-info`` folder and its RECORD (and the entry-point
    scripts in ``bin``) whenever it installs or reinstalls anything; the message step
    reinstalls the generated package and the interface files. ``__pycache__`` is left out:
    other tests may import modules meanwhile.
    """
    site = VENV / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}"
    site = site / "site-packages"
    dist_infos = sorted(site.glob("*.dist-info"))
    generated = site / "mmsag_ros"
    # Files only, beyond the dist-info folders: a folder's time also changes when Python
    # writes a __pycache__ into it.
    return _mtimes(
        [
            *dist_infos,
            *(d / "RECORD" for d in dist_infos if (d / "RECORD").exists()),
            *sorted((VENV / "bin").iterdir()),
            *(
                p
                for p in sorted(generated.rglob("*"))
                if p.is_file() and "__pycache__" not in p.parts
            ),
            *(p for p in sorted((VENV / "share" / "mmsag_ros").rglob("*")) if p.is_file()),
        ]
    )


def test_setup_script_is_a_no_op_on_a_ready_venv():
    stamps = VENV / ".mmsag-setup"
    stamps_before = {p.name: p.stat().st_mtime_ns for p in stamps.iterdir()}
    installed_before = _installed_state()
    build_log = REPO / "build" / "venv.log"
    log_before = build_log.stat().st_mtime_ns if build_log.exists() else None

    run = subprocess.run(
        ["bash", str(REPO / "tools" / "setup_env.sh")],
        env=dict(os.environ, MMSAG_VENV=str(VENV)),
        capture_output=True,
        text=True,
        timeout=300,
    )

    assert run.returncode == 0, run.stderr
    # Exactly one line per step, each saying it had nothing to do: no venv created, no pip
    # install, no message build.
    assert run.stdout.splitlines() == [
        "[setup] python packages: up to date",
        "[setup] messages: up to date",
        f"[setup] ready: {VENV} (activate with: source {VENV}/bin/activate)",
    ]
    assert run.stderr == ""
    assert {p.name: p.stat().st_mtime_ns for p in stamps.iterdir()} == stamps_before
    assert _installed_state() == installed_before  # nothing installed or reinstalled
    assert (build_log.stat().st_mtime_ns if build_log.exists() else None) == log_before


def test_message_comments_have_no_bare_comment_lines():
    # `ros2 interface show` prints a lone `#` as a stray line; blocks are merged instead.
    bare = [
        f"{path.name}:{number}"
        for path in sorted((REPO / "msg").glob("*.msg"))
        for number, line in enumerate(path.read_text().splitlines(), start=1)
        if line.strip() == "#"
    ]
    assert bare == []


@pytest.mark.slow
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
            "import mmsag_ros.errors, mmsag_ros.bundle.preprocess, mmsag_ros.bundle.labels, "
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
