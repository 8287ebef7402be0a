"""Every ``mmsag`` command the README and the manuals show, run as a reader would run it.

The commands run as processes (``mmsag ...`` through the installed console script,
``python -m mmsag_ros.cli ...`` as on a robot) in a sandbox that stands in for the reader's
machine: the working directory holds ``config/`` and sits beside ``../shared``, the absolute
paths the docs use (``/data/MLKW``, ``/opt/models``, ``/etc/cell``, ...) lie under the sandbox,
and what no documented command makes is there already: a small MLKW-style dataset, cell
recordings with their truth as CSV, capture bags, a real camera recording, frame folders.

They run in the order a reader's work needs them (data, bags, training, evaluation, export,
engines, verify, bench, replay, scoring), each once. Only sizes are made smaller
(:func:`_smaller`: fewer images and epochs, a bar that keeps the variants of a one-epoch
model); every command must exit 0 and write what its ``--out``/``--json``/``--record`` names,
except ``mmsag engine`` where TensorRT is missing: one line naming it, exit 1.
``mmsag-sorter`` (node.md) is started as documented and must label a frame.
"""

from __future__ import annotations

import csv
import glob
import importlib.util
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import pytest
import rclpy
from docs_blocks import DocCommand, doc_commands, mmsag_commands
from mmsag_ros.msg import MultiLabel
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from sensor_msgs.msg import Image
from support import REPO, SHARED_DATA, VENV, ros_environment

from mmsag_ros.bag.frames import iter_ground_truth
from mmsag_ros.bag.make import make_bag
from mmsag_ros.bundle.labels import MLKW_LABELS
from mmsag_ros.data.synth import generate_dataset
from mmsag_ros.live.sorter_process import SorterProcess
from mmsag_ros.ros.conversions import array_to_image
from mmsag_ros.ros.qos import image_qos, labels_qos

pytestmark = pytest.mark.slow

# The docs' absolute paths -> where they lie in the sandbox (relative to its root).
_ABSOLUTE = {
    "/opt/models/": "work/bundles/",  # the robot's models folder is the bundles folder here
    "/data/": "data/",
    "/etc/": "etc/",
    "/var/": "var/",
    "/path/to/": "path/to/",
    "/tmp/": "tmp/",
}
_ABSOLUTE_WORD = re.compile(r"(^|=|\[)(" + "|".join(map(re.escape, _ABSOLUTE)) + ")")
# The order a reader's work needs them in; a command of another kind fails until it has a place.
_STAGES = (
    "data synth",
    "data compose",
    "data stats",
    "info",
    "bag make",
    "bag export-frames",
    "train",
    "eval",
    "export",
    "engine",
    "verify",
    "bench",
    "bag play",
    "bag eval",
)
_OUTPUT_OPTIONS = ("--out", "--json", "--record")  # what a command writes, checked after it
_HAS_TENSORRT = importlib.util.find_spec("tensorrt") is not None
_REAL_BAG = SHARED_DATA / "bags" / "raspicam_marker_mcap"
# A guard against a hung command, not a performance bound.
_HANG_GUARD_S = 900


def _kind(args: list[str]) -> str:
    return " ".join(args[:2]) if args[0] in ("data", "bag") else args[0]


def _smaller(args: list[str]) -> list[str]:
    """Appended to a command (the last value wins): smaller sizes, never another action."""
    kind = _kind(args)
    if kind == "data synth":
        return ["--trainval", "24", "--test", "8", "--size", "160x120"]
    if kind == "data compose":
        return ["--train", "12", "--val", "4", "--test", "4"]
    if kind == "train":
        return ["--set", f"epochs={2 if '--resume' in args else 1}", "--set", "batch_size=8"]
    if kind == "export":
        # A one-epoch model's few validation images make the mAP drop noise, and the variants
        # must exist for the engine, verify and --precision int8 lines that follow.
        return ["--fp16-bar", "100", "--int8-bar", "100"]
    if kind == "verify":
        return ["--num-images", "4"]
    if kind == "bench":
        return ["--iterations", "2", "--batch-sizes", "1"]
    return []


def _in_sandbox(word: str, root: Path) -> str:
    def home(match: re.Match[str]) -> str:
        return match.group(1) + str(root / _ABSOLUTE[match.group(2)]) + "/"

    return _ABSOLUTE_WORD.sub(home, word)


def _write_truth_csv(bag: Path, table: Path) -> None:
    """The bag's in-bag truth as the ``stamp_ns,frame_id,<class>...`` table of bags.md."""
    truth = list(iter_ground_truth(bag))
    with table.open("w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(["stamp_ns", "frame_id", *truth[0].class_names])
        for record in truth:
            writer.writerow([record.stamp_ns, record.frame_id, *(int(v) for v in record.target)])


def _build_sandbox(root: Path) -> Path:
    """What no documented command makes; returns the reader's working directory."""
    work = root / "work"
    for folder in ("bags", "bundles", "data", "recordings", "capture", "etc/cell"):
        (work / folder if not folder.startswith("etc") else root / folder).mkdir(parents=True)
    (work / "config").symlink_to(REPO / "config")
    (root / "shared").symlink_to(SHARED_DATA.parent)
    mlkw = root / "data" / "MLKW"
    generate_dataset(mlkw, num_trainval=24, num_test=8, image_size=(160, 120), seed=5)
    (work / "data" / "MLKW").symlink_to(mlkw)
    # Cell recordings (MLKW's test split as bags), the truth of some as CSV; capture bags.
    recordings = {
        "bags/mlkw_test": None,
        "my_cell_recording": "labels.csv",
        "cell_recording": "cell_labels.csv",
        "recordings/belt_labelled": "belt_labels.csv",
        "capture/capture_0001": None,
    }
    for name, table in recordings.items():
        # A capture bag holds the node's labels (on /waste/labels) beside the frames.
        labels = "/waste/labels" if name.startswith("capture/") else "/waste/labels_gt"
        make_bag(mlkw, work / name, gt_topic=labels, start_ns=1_700_000_000_000_000_000)
        if table is not None:
            _write_truth_csv(work / name, work / table)
    capture = root / "var" / "lib" / "mmsag" / "capture"
    capture.mkdir(parents=True)
    shutil.copytree(work / "capture" / "capture_0001", capture / "capture_0001")
    (work / "recordings" / "belt_2026-12-03").symlink_to(_REAL_BAG)  # real camera frames
    shutil.copy(REPO / "config" / "sorter.yaml", root / "etc" / "cell" / "sorter.yaml")
    frames = sorted(mlkw.glob("**/JPEGImages/*.jpg"))[:4]
    for folder in ("path/to/camera/frames", "path/to/frames/of/this/camera"):
        (root / folder).mkdir(parents=True)
        for frame in frames:
            shutil.copy(frame, root / folder)
    (work / "bundles" / "mmsag_effl0_224").symlink_to("effl0_224")  # the README's name
    return work


@dataclass
class _Run:
    command: DocCommand
    argv: list[str]
    returncode: int
    stdout: str
    stderr: str
    seconds: float


def _argv(command: DocCommand, root: Path) -> list[str]:
    args = command.mmsag_args
    assert args is not None
    words = []
    for word in (_in_sandbox(w, root) for w in args):
        # The shell expands a glob (capture_*) before the program sees it.
        words += sorted(glob.glob(word, root_dir=root / "work")) if "*" in word else [word]
    program = [str(VENV / "bin" / "mmsag")]
    if command.line.startswith("python "):
        program = [sys.executable, "-m", "mmsag_ros.cli"]
    return [*program, *words, *_smaller(args)]


def _play_until_it_plays(argv: list[str], cwd: Path, env: dict[str, str]) -> tuple:
    """``bag play --loop`` runs until Ctrl-C: once it logs that it plays, it gets one."""
    process = subprocess.Popen(
        argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    guard = threading.Timer(_HANG_GUARD_S, process.kill)  # a player that never says it plays
    guard.start()
    lines = []
    try:
        assert process.stderr is not None
        for line in process.stderr:
            lines.append(line)
            if line.startswith("playing "):
                process.send_signal(signal.SIGINT)
                break
        stdout, stderr = process.communicate(timeout=_HANG_GUARD_S)
    finally:
        guard.cancel()
        if process.poll() is None:
            process.kill()
    return process.returncode, stdout, "".join(lines) + stderr


def _run(command: DocCommand, root: Path, env: dict[str, str]) -> _Run:
    argv = _argv(command, root)
    started = time.monotonic()
    if "--loop" in argv:
        returncode, stdout, stderr = _play_until_it_plays(argv, root / "work", env)
    else:
        done = subprocess.run(
            argv, cwd=root / "work", env=env, capture_output=True, text=True, timeout=_HANG_GUARD_S
        )
        returncode, stdout, stderr = done.returncode, done.stdout, done.stderr
    return _Run(command, argv, returncode, stdout, stderr, time.monotonic() - started)


def _environment() -> dict[str, str]:
    env = ros_environment()
    env.pop("PYTHONPATH")  # the installed package, as a reader has it
    return env


_COMMANDS = mmsag_commands()


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("reader")
    _build_sandbox(root)
    return root


@pytest.fixture(scope="module")
def walkthrough(sandbox: Path) -> dict[str, _Run]:
    """Each distinct documented command, run once in stage order: label -> its run."""
    env = _environment()
    unplaced = [c.label for c in _COMMANDS if _kind(c.mmsag_args or []) not in _STAGES]
    assert not unplaced, f"give these commands a stage in the walkthrough: {unplaced}"
    ordered = sorted(_COMMANDS, key=lambda c: _STAGES.index(_kind(c.mmsag_args or [])))
    runs: dict[str, _Run] = {}
    done: dict[tuple[str, ...], _Run] = {}
    for command in ordered:
        argv = tuple(_argv(command, sandbox))
        if argv not in done:
            done[argv] = _run(command, sandbox, env)
        runs[command.label] = done[argv]
    # What each took, for whoever wonders where the minutes go (beside the sandbox).
    table = [f"{run.seconds:6.1f} s  {run.command.line}" for run in done.values()]
    (sandbox / "walkthrough_times.txt").write_text("\n".join(table) + "\n")
    return runs


def _outputs(argv: list[str]) -> list[Path]:
    return [Path(argv[i + 1]) for i, word in enumerate(argv[:-1]) if word in _OUTPUT_OPTIONS]


@pytest.mark.parametrize("command", _COMMANDS, ids=[c.label for c in _COMMANDS])
def test_a_documented_command_runs(command: DocCommand, walkthrough, sandbox: Path) -> None:
    run = walkthrough[command.label]
    said = f"`{' '.join(run.argv)}` ({run.seconds:.0f} s):\n{run.stderr[-3000:]}"
    if _kind(command.mmsag_args or []) == "engine" and not _HAS_TENSORRT:
        assert run.returncode == 1, said
        assert len(run.stderr.strip().splitlines()) == 1 and "TensorRT" in run.stderr, said
        return
    assert run.returncode == 0, said
    for output in _outputs(run.argv):
        assert (sandbox / "work" / output).exists(), f"no {output} after {said}"


def _sorter_line() -> DocCommand:
    (line,) = [c for c in doc_commands() if c.line.startswith("mmsag-sorter ")]
    return line


def test_the_documented_venv_sorter_labels_a_frame(walkthrough, sandbox: Path) -> None:
    """node.md's ``mmsag-sorter`` line, the bundle the walkthrough exported filled in."""
    words = _sorter_line().words
    assert words[:2] == ["mmsag-sorter", "--ros-args"] and words[2::2] == ["-p"] * 3, words
    bundle = sandbox / "work" / "bundles" / "effl0_224"
    parameters = dict(word.split(":=", 1) for word in words[3::2])
    parameters["bundle"] = str(bundle)
    env = _environment()
    frame = cv2.cvtColor(cv2.imread(str(_a_frame(sandbox))), cv2.COLOR_BGR2RGB)
    sorter = SorterProcess(parameters, program=[str(VENV / "bin" / "mmsag-sorter")], env=env)
    context = Context()
    rclpy.init(context=context, domain_id=int(env["ROS_DOMAIN_ID"]))
    node = rclpy.create_node("docs_walkthrough", context=context)
    received: list[MultiLabel] = []
    node.create_subscription(MultiLabel, "/labels", received.append, labels_qos())
    camera = node.create_publisher(Image, "/image", image_qos("reliable", depth=10))
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    sorter.start()
    try:
        deadline = time.monotonic() + _HANG_GUARD_S
        # The frame again every half second until labels come: discovery takes its time.
        while not received and sorter.poll() is None and time.monotonic() < deadline:
            camera.publish(array_to_image(frame, "rgb8"))
            executor.spin_once(timeout_sec=0.5)
    finally:
        stderr = sorter.stop()
        executor.shutdown()
        node.destroy_node()
        context.try_shutdown()
    assert received, f"no labels on /labels; the node said:\n{stderr[-3000:]}"
    assert list(received[0].class_names) == list(MLKW_LABELS.names)


def _a_frame(sandbox: Path) -> Path:
    return sorted((sandbox / "path" / "to" / "camera" / "frames").glob("*.jpg"))[0]
