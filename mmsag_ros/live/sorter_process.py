"""One sorter node process: its command, start-up, readiness and stop.

:class:`SorterProcess` is the one way a sorter is started outside ``ros2 launch``: by a live
replay, by the tests and by the benchmarks. The node runs as deployed (``python -m
mmsag_ros.ros.sorter``) with its parameters on the command line; it is ready once the caller
sees what it waits for (a replay: its labels publisher matched), and a configure that failed
says why on ``/diagnostics``.

A replay's node runs under a name of its own (:data:`NODE_NAME`) and with its labels on a
topic of its own (:data:`OUTPUT_TOPIC`), so that a real cell on the same network is never
confused with it.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from mmsag_ros._share import default_dds_profile
from mmsag_ros.errors import BagError

__all__ = [
    "NODE_NAME",
    "OUTPUT_TOPIC",
    "SORTER_PROGRAM",
    "SorterProcess",
    "replay_sorter",
    "set_replay_parameter",
]

_log = logging.getLogger(__name__)

NODE_NAME = "mmsag_bag_eval_sorter"
OUTPUT_TOPIC = "/mmsag_bag_eval/labels"
SORTER_PROGRAM = ("-m", "mmsag_ros.ros.sorter")
_DIAGNOSTICS_PERIOD_S = 0.5
_POLL_S = 0.05


def _child_environment() -> dict[str, str]:
    # The node and this process's own participants (player, label collector) alike.
    default_dds_profile(os.environ)
    return dict(os.environ, PYTHONUNBUFFERED="1")


class SorterProcess:
    """A sorter node as its own process.

    Args:
        parameters: ``name -> value`` as ``-p name:=value`` takes it (YAML), in order; later
            ones win over earlier ones and over ``params_file``.
        params_files: ``config/sorter.yaml``-style parameter files, in order (later ones win),
            read before ``parameters``.
        node_name: Remaps the node's name (``__node:=``); None keeps ``sorter``.
        namespace: Puts the node in this absolute namespace (``__ns:=``), as launch_ros does.
        program: What follows the interpreter: the node module, or a script that runs it.
        env: The child's environment; None uses this process's, with the DDS profile default.
        log: Send stdout and stderr to this file; None keeps them in pipes that
            :meth:`stop` reads (stderr is what it returns).
        cwd: The child's working directory.
    """

    def __init__(
        self,
        parameters: Mapping[str, str] | None = None,
        *,
        params_files: Sequence[Path] = (),
        node_name: str | None = None,
        namespace: str | None = None,
        program: Sequence[str] = SORTER_PROGRAM,
        env: Mapping[str, str] | None = None,
        log: Path | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.parameters = dict(parameters or {})
        self.params_files = tuple(Path(f) for f in params_files)
        self.node_name = node_name
        self.namespace = namespace
        self.program = tuple(program)
        self.env = dict(env) if env is not None else _child_environment()
        self.log = log
        self.cwd = cwd
        self._process: subprocess.Popen[str] | None = None
        self._stderr: str | None = None  # a piped node's stderr, once it has ended

    @property
    def command(self) -> list[str]:
        """The command line, parameters after the file so that they win."""
        command = [sys.executable, *self.program, "--ros-args"]
        if self.node_name is not None:
            command += ["-r", f"__node:={self.node_name}"]
        if self.namespace is not None:
            command += ["-r", f"__ns:={self.namespace}"]
        for params_file in self.params_files:
            # Before the -p overrides: rcl lets later parameter sources win.
            command += ["--params-file", str(params_file.resolve())]
        for name, value in self.parameters.items():
            command += ["-p", f"{name}:={value}"]
        return command

    @property
    def process(self) -> subprocess.Popen[str]:
        """The running (or ended) child; RuntimeError before :meth:`start`."""
        if self._process is None:
            raise RuntimeError("the sorter process has not been started")
        return self._process

    @property
    def pid(self) -> int:
        """The child's process id."""
        return self.process.pid

    @property
    def returncode(self) -> int | None:
        """The child's exit status, None while it runs (as last polled)."""
        return self.process.returncode

    def start(self) -> SorterProcess:
        """Start the node; returns ``self`` so that ``SorterProcess(...).start()`` reads."""
        if self.log is None:
            self._process = self._popen(subprocess.PIPE, subprocess.PIPE)
            return self
        with Path(self.log).open("w") as log:
            # The child keeps its own copy of the descriptor.
            self._process = self._popen(log, subprocess.STDOUT)
        return self

    def _popen(self, stdout: IO[str] | int, stderr: int) -> subprocess.Popen[str]:
        return subprocess.Popen(
            self.command, env=self.env, cwd=self.cwd, stdout=stdout, stderr=stderr, text=True
        )

    def poll(self) -> int | None:
        """The exit status if the node has ended, else None."""
        return self.process.poll()

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the node to end by itself (``subprocess.TimeoutExpired`` after ``timeout``).

        A piped node's output is read meanwhile, so a node that logs a lot cannot block on a
        full pipe; :meth:`stop` returns its stderr after.
        """
        if self.log is None:
            self._collect(timeout)
        return self.process.wait(timeout)

    def _collect(self, timeout: float | None) -> str:
        """A piped node's stderr, read until it ends (TimeoutExpired after ``timeout``)."""
        if self._stderr is None:
            _, err = self.process.communicate(timeout=timeout)
            self._stderr = err or ""
        return self._stderr

    def wait_until_ready(
        self,
        matched: Callable[[], bool],
        configure_error: Callable[[], str],
        timeout_s: float,
        stop: threading.Event | None = None,
    ) -> None:
        """Block until ``matched()`` (e.g. the node's labels publisher has matched ours).

        BagError when the node exits, says its configure failed (``configure_error()``, from
        /diagnostics) or does not come up in ``timeout_s``.
        """
        deadline = time.monotonic() + timeout_s
        while not matched():
            if stop is not None and stop.is_set():
                raise BagError("interrupted while the sorter node was starting")
            if self.poll() is not None:
                raise BagError(f"the sorter node exited ({self.returncode}): {self._last_error()}")
            # The node says so on /diagnostics, in every state: no need to read its log.
            if reason := configure_error():
                raise BagError(f"the sorter node did not start: {reason}{self._log_hint()}")
            if time.monotonic() > deadline:
                raise BagError(
                    f"the sorter node did not come up in {timeout_s:.0f} s: {self._last_error()}"
                )
            time.sleep(_POLL_S)

    def stop(self, timeout_s: float = 120.0) -> str:
        """Ctrl-C the node (killed if still running after ``timeout_s``); its stderr if piped."""
        process = self.process
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
        try:
            if self.log is None:
                return self._collect(timeout_s)
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            if self.log is None:
                return self._collect(None)
            process.wait()
        return ""

    def _log_hint(self) -> str:
        return f" (node log: {self.log})" if self.log is not None else ""

    def _last_error(self) -> str:
        """The node's last error line without its ROS log prefix, and where its log is."""
        if self.log is None:
            # Only an ended node's pipe can be read without blocking.
            text = self._collect(None) if self.poll() is not None else ""
        else:
            try:
                text = Path(self.log).read_text(errors="replace")
            except OSError:
                text = ""
        lines = text.splitlines()
        found = next(
            (line for line in reversed(lines) if "configure failed" in line or "Error" in line),
            lines[-1] if lines else "no output",
        )
        return f"{found.rsplit(']: ', 1)[-1].strip()}{self._log_hint()}"


def replay_sorter(
    bundle: Path,
    topics: list[str],
    input_type: str,
    *,
    backend: str | None,
    device: str | None,
    precision: str | None,
    params_file: Path | None,
    log: Path,
) -> SorterProcess:
    """The (unstarted) sorter of a live replay: its own name and output topic, autostarted."""
    # JSON strings and lists are valid YAML, so paths and topic names arrive unchanged.
    parameters = {
        "bundle": json.dumps(str(bundle)),
        "camera_topics": json.dumps(topics),
        "input_type": input_type,
        "output_topic": OUTPUT_TOPIC,
        "diagnostics_period_s": str(_DIAGNOSTICS_PERIOD_S),
        "autostart": "true",
    }
    # Unless asked for, these come from the cell's parameter file (or the node's defaults).
    chosen = (("backend", backend), ("device", device), ("precision", precision))
    parameters.update({k: v for k, v in chosen if v})
    files = [params_file] if params_file is not None else []
    return SorterProcess(parameters, params_files=files, node_name=NODE_NAME, log=log)


def set_replay_parameter(name: str, value: Any, *, timeout_s: float = 60.0) -> tuple[bool, str]:
    """Set a parameter of the running replay's sorter node, as ``ros2 param set`` does.

    For a caller of :func:`replay_through_sorter` acting during the replay (from ``on_label``
    or another thread), e.g. ``set_replay_parameter("bundle", "/opt/models/next")`` to swap
    the model mid-stream. Returns the node's answer: whether it accepted, and its reason.

    Raises:
        BagError: No replay node answered within ``timeout_s``.
    """
    import rclpy
    from rcl_interfaces.srv import SetParameters
    from rclpy.context import Context
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.parameter import Parameter

    context = Context()
    rclpy.init(context=context)
    try:
        node = rclpy.create_node("mmsag_bag_eval_params", context=context)
        client = node.create_client(SetParameters, f"/{NODE_NAME}/set_parameters")
        if not client.wait_for_service(timeout_sec=timeout_s):
            raise BagError(f"no replay sorter node answered within {timeout_s:.0f} s")
        parameter = Parameter(name, value=value).to_parameter_msg()
        future = client.call_async(SetParameters.Request(parameters=[parameter]))
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(node)
        executor.spin_until_future_complete(future, timeout_sec=timeout_s)
        if not future.done():
            raise BagError(f"the replay sorter node did not answer within {timeout_s:.0f} s")
        result = future.result().results[0]
        return result.successful, result.reason
    finally:
        context.try_shutdown()
