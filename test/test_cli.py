"""The ``mmsag`` entry point: sub-command table, exit codes, and the info report."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from mmsag_ros.cli import main


def test_info_reports_components_as_json(capsys):
    assert main(["info", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["mmsag_ros"] == "0.1.0"
    assert report["components"]["numpy"]["available"] is True
    assert report["components"]["mmsag_ros messages"]["available"] is True


def test_unknown_command_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["frobnicate"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'frobnicate'" in capsys.readouterr().err


_HELP_PROBE = """
import sys
from mmsag_ros.cli import main
try:
    main(["--help"])
except SystemExit:
    pass
print(sorted(m for m in ("torch", "onnxruntime", "rclpy", "cv2") if m in sys.modules))
"""


def test_help_does_not_import_heavy_libraries():
    run = subprocess.run([sys.executable, "-c", _HELP_PROBE], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip().splitlines()[-1] == "[]"
