"""Every shell line the README and the manuals show is checked against the code.

- Each ``mmsag`` command is parsed by the real ``mmsag`` parser; a training command's
  ``--config`` must exist and its ``--set`` keys must be config keys.
  (``test_docs_walkthrough.py``, in the slow tier, then runs every one of them.)
- ``ros2 launch`` lines give only arguments the launch file declares, with values its
  decisions accept; ``ros2 lifecycle set`` and ``ros2 param set`` lines, read in order from a
  running node, are transitions that exist and sets the node takes in the state it is in;
  ``ros2 topic echo`` names topics the sorter publishes.
- Every other line is in ``_CHECKED_ELSEWHERE`` with the test or run that covers it, or why
  it runs only on a user's machine; a new kind of line fails here until it gets an entry.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from docs_blocks import REPO, DocCommand, doc_commands, mmsag_commands

from mmsag_ros.cli import build_parser
from mmsag_ros.errors import ConfigError
from mmsag_ros.ros.declarations import DECLARATIONS, static_change_refusal
from mmsag_ros.ros.launch_args import DEFAULT_NAMESPACE, sorter_settings
from mmsag_ros.train.config import load_config

_USERS_MACHINE = "a step on the user's machine (system packages, a workspace, a copy)"
#: Line prefix -> the test file (checked to exist) or the run that covers it, or why not here.
_CHECKED_ELSEWHERE = {
    "tools/setup_env.sh": ".ci/run: the README's setup, on a clean clone",
    "tools/run_tests.sh": ".ci/run: the README's test command, on a clean clone",
    "tools/demo.sh": "test/test_demo.py",
    "tools/stress_tests.sh": "run by hand at each stop: it runs this suite three times",
    "python -m colcon build": "test/test_colcon_build.py",
    "source install/setup.bash": "test/test_colcon_build.py",
    'python -c "from mmsag_ros.msg import': "test/test_colcon_build.py",
    "ros2 run mmsag_ros sorter": "test/test_colcon_build.py",
    "export FASTDDS_DEFAULT_PROFILES_FILE=": "test/conftest.py",
    "mmsag-sorter ": "test/test_docs_walkthrough.py",
    "source /opt/ros/": _USERS_MACHINE,
    "mkdir -p ~/ros2_ws": _USERS_MACHINE,
    "cd ~/ros2_ws": _USERS_MACHINE,
    "git clone": _USERS_MACHINE,
    "rosdep install": _USERS_MACHINE,
    "sudo apt install": _USERS_MACHINE,
    "python3 -m venv": _USERS_MACHINE,
    "source ~/": _USERS_MACHINE,
    "pip install": _USERS_MACHINE,
    "rsync": _USERS_MACHINE,
}
_CHECKED_HERE = ("ros2 launch ", "ros2 param set ", "ros2 lifecycle set ", "ros2 topic echo ")
_NODE = f"/{DEFAULT_NAMESPACE}/sorter"
_SORTER_TOPICS = {f"/{DEFAULT_NAMESPACE}/labels", "/diagnostics"}
# ros2 lifecycle set <node> <transition>: the state each transition leaves from and goes to.
_TRANSITIONS = {
    "configure": ("unconfigured", "inactive"),
    "activate": ("inactive", "active"),
    "deactivate": ("active", "inactive"),
    "cleanup": ("inactive", "unconfigured"),
}
_ALL = doc_commands()
_MMSAG = mmsag_commands()


def _lines(prefix: str) -> list[DocCommand]:
    return [command for command in _ALL if command.line.startswith(prefix)]


def test_the_docs_show_commands_to_check() -> None:
    # The scan finds the commands (a changed fence style must not make this file vacuous).
    assert len(_MMSAG) >= 30, len(_MMSAG)
    assert {c.path.name for c in _MMSAG} >= {"README.md", "training.md", "bags.md"}
    assert any(c.line.startswith("python -m mmsag_ros.cli ") for c in _MMSAG)
    for prefix in _CHECKED_HERE:
        assert _lines(prefix), prefix


@pytest.mark.parametrize("command", _MMSAG, ids=[c.label for c in _MMSAG])
def test_a_documented_command_parses(command: DocCommand) -> None:
    try:
        args = build_parser().parse_args(command.mmsag_args)
    except SystemExit as exit_:
        pytest.fail(f"`{command.line}` is refused by the CLI (exit {exit_.code})")
    if args.command == "train":
        if args.config is not None:
            assert (REPO / args.config).is_file(), f"{command.path.name}: no {args.config}"
        load_config(None, args.overrides or [])  # unknown keys raise ConfigError


def test_every_other_documented_line_is_checked_somewhere() -> None:
    unaccounted = [
        command.label
        for command in _ALL
        if command.mmsag_args is None
        and not command.line.startswith(_CHECKED_HERE)
        and not command.line.startswith(tuple(_CHECKED_ELSEWHERE))
    ]
    assert not unaccounted, f"lines neither run nor checked (give them an entry): {unaccounted}"
    for where in _CHECKED_ELSEWHERE.values():
        if where.startswith("test/"):
            assert (REPO / where).is_file(), where


def _declared_launch_arguments() -> set[str]:
    tree = ast.parse((REPO / "launch" / "sorter.launch.py").read_text())
    return {
        node.args[0].value
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and getattr(node.func, "id", None) == "DeclareLaunchArgument"
        and isinstance(node.args[0], ast.Constant)
    }


@pytest.mark.parametrize("command", _lines("ros2 launch "), ids=lambda c: c.label)
def test_a_documented_launch_gives_declared_arguments_with_accepted_values(
    command: DocCommand,
) -> None:
    _, verb, package, launch_file, *arguments = command.words
    assert (verb, package, launch_file) == ("launch", "mmsag_ros", "sorter.launch.py")
    pairs = dict(argument.split(":=", 1) for argument in arguments)
    unknown = set(pairs) - _declared_launch_arguments()
    assert not unknown, f"{command.label}: the launch file declares no {sorted(unknown)}"
    values = {name: value.replace("...", "/opt/models/any") for name, value in pairs.items()}
    try:
        sorter_settings(values)
    except ConfigError as err:
        pytest.fail(f"{command.label}: {err}")


def _node_steps(path: Path) -> list[DocCommand]:
    return [
        c
        for c in _ALL
        if c.path == path and c.line.startswith(("ros2 param set ", "ros2 lifecycle set "))
    ]


@pytest.mark.parametrize("path", sorted({c.path for c in _lines("ros2 param set ")}))
def test_documented_lifecycle_and_parameter_steps_are_taken_by_the_node(path: Path) -> None:
    """Read in order from a launched (active) node: each transition exists from the state it
    is given in, and each parameter set is one the node takes in that state."""
    declared = {name: descriptor for name, _, descriptor in DECLARATIONS}
    state = "active"  # the launch file's autostart
    for step in _node_steps(path):
        _, verb, _, node, name, *value = step.words
        assert node == _NODE, f"{step.label}: the launched node is {_NODE}"
        if verb == "lifecycle":
            source, state_after = _TRANSITIONS[name]
            assert state == source, f"{step.label}: the node is {state}, not {source}"
            state = state_after
            continue
        assert name in declared, f"{step.label}: the sorter declares no {name}"
        assert not declared[name].read_only, f"{step.label}: {name} is read-only"
        assert len(value) == 1, step.label
        assert static_change_refusal([name], state) == "", f"{step.label} in state {state}"


@pytest.mark.parametrize("command", _lines("ros2 topic echo "), ids=lambda c: c.label)
def test_a_documented_echo_names_a_topic_the_sorter_publishes(command: DocCommand) -> None:
    assert command.words[3] in _SORTER_TOPICS, command.label
