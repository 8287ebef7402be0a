"""The launch file's decisions, and a real sorter started the way launch_ros starts it.

launch and launch_ros cannot be installed here, so the decisions live in
:mod:`mmsag_ros.ros.launch_args` (tested directly), the launch file is checked to hand its
arguments to it and nothing else (from its syntax tree), and a real sorter process is started
with what launch_ros makes of the result: ``-r __ns:=``, the parameter file, then the
overrides as a second parameter file. A real rclpy node then looks at the ROS graph.
"""

from __future__ import annotations

import ast
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import rclpy
import yaml
from rcl_interfaces.msg import ParameterType
from rcl_interfaces.srv import GetParameters
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from runtime.runtime_helpers import make_bundle
from support import REPO

from mmsag_ros.errors import ConfigError
from mmsag_ros.live.sorter_process import SorterProcess
from mmsag_ros.ros.launch_args import (
    DEFAULT_NAMESPACE,
    sorter_namespace,
    sorter_overrides,
    sorter_settings,
)

LAUNCH = REPO / "launch" / "sorter.launch.py"
CONFIG = REPO / "config" / "sorter.yaml"
# A guard against a hung test, not a performance bound: every wait ends on its condition.
_HANG_GUARD_S = 120.0


def _launch_tree() -> ast.Module:
    return ast.parse(LAUNCH.read_text())


def _declared_defaults() -> dict[str, str]:
    """default_value of every DeclareLaunchArgument whose default is a literal string."""
    defaults = {}
    for call in ast.walk(_launch_tree()):
        if isinstance(call, ast.Call) and getattr(call.func, "id", "") == "DeclareLaunchArgument":
            keywords = {k.arg: k.value for k in call.keywords}
            default = keywords.get("default_value")
            if isinstance(default, ast.Constant):
                defaults[call.args[0].value] = default.value
    return defaults


def _settings_arguments() -> tuple[str, ...]:
    """The names the launch file passes to sorter_settings (its _SETTINGS_ARGUMENTS)."""
    for node in ast.walk(_launch_tree()):
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == (
            "_SETTINGS_ARGUMENTS"
        ):
            return ast.literal_eval(node.value)
    raise AssertionError("launch file has no _SETTINGS_ARGUMENTS")


# The decisions ---------------------------------------------------------------------------


def test_the_launch_defaults_override_nothing_but_use_sim_time():
    defaults = _declared_defaults()
    settings = sorter_settings({name: defaults[name] for name in _settings_arguments()})
    # The parameter file's input_type (and bundle, cameras) stand unless an argument is given.
    assert settings.overrides == {"use_sim_time": False}
    assert settings.namespace == DEFAULT_NAMESPACE == "waste"
    assert sorter_settings({}) == settings  # missing arguments take the same defaults


@pytest.mark.parametrize(
    ("compressed", "input_type"),
    [("true", "compressed"), ("false", "image"), ("True", "compressed"), ("", None), (" ", None)],
)
def test_compressed_overrides_input_type_only_when_given(compressed, input_type):
    overrides = sorter_overrides(compressed=compressed)
    assert overrides.get("input_type") == input_type


def test_precision_overrides_only_when_given():
    assert sorter_overrides(precision=" int8 ")["precision"] == "int8"
    assert "precision" not in sorter_overrides(precision="")
    with pytest.raises(
        ConfigError, match=r"precision must be fp32, fp16, int8 or empty, got 'int4'"
    ):
        sorter_overrides(precision="int4")


def test_bundle_and_camera_topics_override_only_when_given():
    assert sorter_overrides(
        bundle=" /opt/models/a ", camera_topics="/cam_left/image_raw, ,/cam_right/image_raw,"
    ) == {
        "bundle": "/opt/models/a",
        "camera_topics": ["/cam_left/image_raw", "/cam_right/image_raw"],
        "use_sim_time": False,
    }
    assert sorter_overrides(bundle="  ", camera_topics=" , ") == {"use_sim_time": False}


def test_a_gpu_cell_sets_device_backend_and_precision_from_the_command_line():
    overrides = sorter_overrides(device="cuda", backend="tensorrt", precision="fp16")
    assert overrides == {
        "device": "cuda",
        "backend": "tensorrt",
        "precision": "fp16",
        "use_sim_time": False,
    }
    assert sorter_overrides(device="CUDA:1")["device"] == "cuda:1"
    assert sorter_overrides(device="auto", backend="auto")["backend"] == "auto"
    assert not {"device", "backend"} & set(sorter_overrides(device=" ", backend=""))


@pytest.mark.parametrize("name", ["autostart", "debug_image"])
def test_autostart_and_debug_image_override_only_when_given(name):
    assert sorter_overrides(**{name: "false"})[name] is False
    assert sorter_overrides(**{name: "true"})[name] is True
    assert name not in sorter_overrides(**{name: ""})


@pytest.mark.parametrize(("value", "expected"), [("true", True), ("false", False), ("TRUE", True)])
def test_use_sim_time_is_always_passed_as_a_boolean(value, expected):
    assert sorter_overrides(use_sim_time=value)["use_sim_time"] is expected


@pytest.mark.parametrize(
    ("namespace", "expected"),
    [
        ("waste", "waste"),
        ("cell_2", "cell_2"),
        ("/cell_2/", "/cell_2"),
        ("plant_a/cell_2", "plant_a/cell_2"),
        ("", ""),
        ("/", "/"),
    ],
)
def test_namespaces_stay_relative_unless_given_absolute(namespace, expected):
    assert sorter_namespace(namespace) == expected


@pytest.mark.parametrize(
    ("arguments", "match"),
    [
        ({"compressed": "yes"}, r"compressed must be true, false or empty, got 'yes'"),
        ({"use_sim_time": ""}, r"use_sim_time must be true or false, got ''"),
        ({"use_sim_time": "1"}, r"use_sim_time must be true or false, got '1'"),
        ({"namespace": "cell 2"}, r"namespace 'cell 2' is not a valid ROS namespace"),
        ({"namespace": "2nd_cell"}, r"namespace '2nd_cell' is not a valid ROS namespace"),
        ({"namespace": "plant//cell"}, r"namespace 'plant//cell' is not a valid"),
        ({"device": "gpu"}, r"device must be cpu, cuda, cuda:N, auto or empty, got 'gpu'"),
        ({"backend": "tensorflow"}, r"backend must be auto, .*tensorrt.* or empty"),
        ({"autostart": "no"}, r"autostart must be true, false or empty, got 'no'"),
    ],
)
def test_bad_arguments_fail_in_one_line(arguments, match):
    with pytest.raises(ConfigError, match=match) as info:
        sorter_settings(arguments)
    assert "\n" not in str(info.value)


# The launch file -------------------------------------------------------------------------


def _lifecycle_node_call() -> ast.Call:
    calls = [
        node
        for node in ast.walk(_launch_tree())
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "LifecycleNode"
    ]
    assert len(calls) == 1
    return calls[0]


def test_the_launch_file_hands_its_arguments_to_sorter_settings_and_remaps_nothing():
    declared = set(_declared_defaults()) | {"params_file"}
    assert set(_settings_arguments()) <= declared
    keywords = {k.arg: k.value for k in _lifecycle_node_call().keywords}
    # Relative topic names under the namespace; an absolute remap would defeat namespace:=.
    assert "remappings" not in keywords
    assert ast.unparse(keywords["namespace"]) == "settings.namespace"
    assert ast.unparse(keywords["parameters"]) == "[arg('params_file'), settings.overrides]"
    strings = [
        node.value
        for node in ast.walk(_launch_tree())
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
    ]
    assert not [s for s in strings if s.startswith("/waste")]
    assert "input_type" not in strings  # decided in launch_args, never here


# A real node started from the decisions ----------------------------------------------------


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory) -> Path:
    return make_bundle(tmp_path_factory.mktemp("launch") / "tiny", seed=0)


class _Graph:
    """A plain rclpy node in the test's domain that looks at the ROS graph."""

    def __init__(self, domain_id: int, process: SorterProcess) -> None:
        self.context = Context()
        rclpy.init(context=self.context, domain_id=domain_id)
        self.node = rclpy.create_node("launch_args_test", context=self.context)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.process = process

    def wait_until(self, condition: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + _HANG_GUARD_S
        while not condition():
            if self.process.poll() is not None:
                err = self.process.stop()
                pytest.fail(f"the sorter exited while waiting for {what}: {err}")
            if time.monotonic() > deadline:
                pytest.fail(f"never saw {what}")
            self.executor.spin_once(timeout_sec=0.1)  # also paces the graph polling

    def endpoints(self, topic: str, *, publishers: bool) -> set[tuple[str, str, str]]:
        get = (
            self.node.get_publishers_info_by_topic
            if publishers
            else (self.node.get_subscriptions_info_by_topic)
        )
        return {(i.node_namespace, i.node_name, i.topic_type) for i in get(topic)}

    def parameters(self, service: str, names: list[str]) -> dict[str, Any]:
        client = self.node.create_client(GetParameters, service)
        self.wait_until(client.service_is_ready, f"the service {service}")
        future = client.call_async(GetParameters.Request(names=names))
        self.wait_until(future.done, f"an answer from {service}")
        values = {}
        for name, value in zip(names, future.result().values, strict=True):
            if value.type == ParameterType.PARAMETER_BOOL:
                values[name] = value.bool_value
            elif value.type == ParameterType.PARAMETER_STRING:
                values[name] = value.string_value
            else:
                values[name] = value
        return values

    def close(self) -> None:
        self.node.destroy_node()
        self.context.try_shutdown()


def _yaml(path: Path, parameters: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump({"/**": {"ros__parameters": parameters}}))
    return path


@pytest.mark.slow  # a sorter node process
def test_a_namespaced_cell_keeps_the_files_input_type_and_follows_sim_time(
    bundle_dir, ros_env, tmp_path
):
    cell = yaml.safe_load(CONFIG.read_text())["/**"]["ros__parameters"]
    cell.update(input_type="compressed", backend="onnxruntime")  # this cell's JPEG cameras
    params_file = _yaml(tmp_path / "cell_2.yaml", cell)
    settings = sorter_settings(
        {
            "namespace": "cell_2",
            "bundle": str(bundle_dir),
            "camera_topics": "",
            "compressed": "",  # not given: the file's compressed must stand
            "use_sim_time": "true",
        }
    )
    overrides_file = _yaml(tmp_path / "overrides.yaml", settings.overrides)
    # What launch_ros runs for LifecycleNode(name="sorter", namespace=..., parameters=[file,
    # dict]): a relative namespace becomes absolute at the top level; the dict becomes a
    # parameter file after the first, so it wins.
    process = SorterProcess(
        node_name="sorter",
        namespace=f"/{settings.namespace}",
        params_files=[params_file, overrides_file],
        env=ros_env,
        cwd=REPO,
    ).start()
    graph = _Graph(int(ros_env["ROS_DOMAIN_ID"]), process)
    try:
        sorter = ("/cell_2", "sorter")
        labels = (*sorter, "mmsag_ros/msg/MultiLabel")
        camera = (*sorter, "sensor_msgs/msg/CompressedImage")
        graph.wait_until(
            lambda: labels in graph.endpoints("/cell_2/labels", publishers=True),
            "/cell_2/labels published by /cell_2/sorter",
        )
        # Activated (autostart): the relative camera topic "image" lies in the namespace and
        # carries CompressedImage, as the parameter file says.
        graph.wait_until(
            lambda: camera in graph.endpoints("/cell_2/image", publishers=False),
            "a CompressedImage subscription on /cell_2/image",
        )
        graph.wait_until(
            lambda: any(e[:2] == sorter for e in graph.endpoints("/clock", publishers=False)),
            "the sorter subscribing to /clock (use_sim_time)",
        )
        values = graph.parameters(
            "/cell_2/sorter/get_parameters", ["use_sim_time", "input_type", "bundle"]
        )
        assert values == {
            "use_sim_time": True,
            "input_type": "compressed",
            "bundle": str(bundle_dir),
        }
        topics = {name for name, _ in graph.node.get_topic_names_and_types()}
        assert "/waste/labels" not in topics and "/labels" not in topics
    finally:
        graph.close()
        if process.poll() is None:
            process.stop()
