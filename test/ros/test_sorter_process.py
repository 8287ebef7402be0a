"""SorterProcess: the one way to start a sorter node outside ros2 launch (replay, tests, bench)."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import pytest

from mmsag_ros.errors import BagError
from mmsag_ros.live.sorter_process import SorterProcess

# Real sorter node processes: the slow tier (the fast tier covers the node in-process).
pytestmark = pytest.mark.slow


def test_the_command_puts_files_before_parameters_so_that_parameters_win(tmp_path):
    base, overrides = tmp_path / "base.yaml", tmp_path / "overrides.yaml"
    process = SorterProcess(
        {"bundle": '"/opt/m"', "threshold": "0.4"},
        params_files=[base, overrides],
        node_name="sorter",
        namespace="/cell_2",
        env={},
    )
    assert process.command == [
        sys.executable,
        "-m",
        "mmsag_ros.ros.sorter",
        "--ros-args",
        "-r",
        "__node:=sorter",
        "-r",
        "__ns:=/cell_2",
        "--params-file",
        str(base.resolve()),
        "--params-file",
        str(overrides.resolve()),
        "-p",
        'bundle:="/opt/m"',
        "-p",
        "threshold:=0.4",
    ]
    with pytest.raises(RuntimeError, match="not been started"):
        process.poll()


def test_a_node_that_exits_while_starting_is_reported_with_its_last_log_line(ros_env, tmp_path):
    log = tmp_path / "node.log"
    process = SorterProcess({"max_batch": "many"}, env=ros_env, log=log).start()
    try:
        with pytest.raises(BagError) as raised:
            process.wait_until_ready(lambda: False, lambda: "", 120.0, threading.Event())
    finally:
        process.stop()
    message = str(raised.value)
    assert process.returncode == 2
    assert message.startswith("the sorter node exited (2): ") and "max_batch" in message
    assert message.endswith(f"(node log: {log})") and Path(log).read_text()


def test_a_piped_node_that_exits_while_starting_is_reported_from_its_stderr(ros_env):
    process = SorterProcess({"max_batch": "many"}, env=ros_env).start()
    with pytest.raises(BagError, match=r"^the sorter node exited \(2\): .*max_batch"):
        process.wait_until_ready(lambda: False, lambda: "", 120.0)
    assert "bad parameter: " in process.stop()  # the stderr read for the error, kept


def test_a_reported_configure_error_ends_the_wait_and_leaves_the_node_running(ros_env, tmp_path):
    # configure_error stands for what a replay reads off /diagnostics (test_bag_live_cli.py); here
    # the node's own log line, so the node is up (and handles Ctrl-C) when it is stopped.
    log = tmp_path / "node.log"
    process = SorterProcess({"bundle": "/nowhere", "autostart": "true"}, env=ros_env, log=log)
    process.start()

    def configure_error() -> str:
        failed = [line for line in log.read_text().splitlines() if "configure failed" in line]
        return failed[0].rsplit("configure failed: ", 1)[-1] if failed else ""

    try:
        with pytest.raises(BagError, match=r"did not start: .*/nowhere"):
            process.wait_until_ready(lambda: False, configure_error, 120.0)
        assert process.poll() is None, "a failed wait leaves the node to its owner"
    finally:
        process.stop()
    assert process.returncode is not None


def test_stop_returns_the_piped_stderr_of_a_node_that_ended_by_itself(ros_env):
    process = SorterProcess({"max_batch": "many"}, env=ros_env).start()
    assert process.wait(timeout=120) == 2
    err = process.stop()
    assert "bad parameter: " in err and "max_batch" in err, err
