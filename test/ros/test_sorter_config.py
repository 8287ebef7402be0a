"""The sorter's parameter validation, its YAML file and its launch file (no node started).

launch and launch_ros cannot be installed here, so the launch file is compiled and its
declared arguments read from the syntax tree instead of being run.
"""

from __future__ import annotations

import ast
import py_compile

import numpy as np
import pytest
import yaml
from support import REPO

from mmsag_ros.errors import ConfigError
from mmsag_ros.ros.params import SorterParams, backend_options, resolve_thresholds

LAUNCH = REPO / "launch" / "sorter.launch.py"
CONFIG = REPO / "config" / "sorter.yaml"


def test_launch_file_compiles_and_declares_the_arguments(tmp_path):
    py_compile.compile(str(LAUNCH), cfile=str(tmp_path / "launch.pyc"), doraise=True)
    tree = ast.parse(LAUNCH.read_text())
    declared = {}
    for call in ast.walk(tree):
        if isinstance(call, ast.Call) and getattr(call.func, "id", "") == "DeclareLaunchArgument":
            keywords = {k.arg: k.value for k in call.keywords}
            declared[call.args[0].value] = keywords
    assert set(declared) == {
        "bundle",
        "params_file",
        "namespace",
        "camera_topics",
        "compressed",
        "precision",
        "device",
        "backend",
        "autostart",
        "debug_image",
        "use_sim_time",
        "log_level",
    }
    assert all("description" in keywords for keywords in declared.values())
    # Empty keeps the parameter file's input_type (test/ros/test_launch_args.py).
    assert ast.literal_eval(declared["compressed"]["choices"]) == ["", "true", "false"]
    assert ast.literal_eval(declared["precision"]["choices"]) == ["", "fp32", "fp16", "int8"]
    imported = {
        alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, (ast.Import, ast.ImportFrom))
        for alias in node.names
    } | {
        node.module.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module
    }
    assert "subprocess" not in imported and "os" not in imported
    assert "eval(" not in LAUNCH.read_text()


def test_parameter_file_holds_valid_values_for_every_field():
    values = yaml.safe_load(CONFIG.read_text())["/**"]["ros__parameters"]
    params = SorterParams.from_values({**values, "bundle": "/some/bundle"})
    assert params.camera_topics == ("image",)
    fields = set(SorterParams.__dataclass_fields__)
    # class_thresholds stays commented out: a ROS parameter file cannot hold an empty list.
    assert set(values) == fields - {"class_thresholds"}


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"bundle": ""}, "bundle is empty"),
        ({"camera_topics": ()}, "at least one"),
        ({"camera_topics": ("a", "a")}, "twice"),
        ({"input_type": "raw"}, "input_type must be one of image, compressed"),
        ({"image_reliability": "sometimes"}, "image_reliability"),
        ({"output_depth": 0}, "output_depth must be at least 1"),
        ({"threshold": 1.5}, r"threshold must lie in \[0, 1\]"),
        ({"class_thresholds": (0.5, 2.0)}, "class_thresholds must lie"),
        ({"max_rate_hz": -1.0}, "max_rate_hz"),
        ({"diagnostics_period_s": 0.0}, "diagnostics_period_s must be a positive"),
        ({"precision": "int4"}, "precision must be one of fp32, fp16, int8, got 'int4'"),
        ({"intra_op_threads": -1}, "intra_op_threads must be >= 0"),
        ({"max_instances": -1}, "max_instances must be an integer >= 0, got -1"),
        ({"instance_min_relative": 1.5}, r"instance_min_relative must lie in \(0, 1\]"),
        ({"drift_window": 3}, "drift_window must be at least 10 frames, got 3"),
        ({"drift_factor": 0.5}, "drift_factor must be 0 \\(off\\) or above 1, got 0.5"),
        ({"capture_margin": 2.0}, r"capture_margin must lie in \[0, 1\], got 2.0"),
        ({"capture_max_mb": 0}, "capture_max_mb at least 1"),
        ({"capture_frames_per_bag": 0}, "capture_frames_per_bag must be at least 1"),
        (
            {"expected_rate_hz": 2.0, "diagnostics_period_s": 1.0},
            r"expected_rate_hz 2 needs diagnostics_period_s of at least 2.5 s",
        ),
    ],
)
def test_bad_parameters_are_refused_with_the_value(change, match):
    with pytest.raises(ConfigError, match=match):
        SorterParams(**{"bundle": "/b", **change})


def test_runtime_parameters_become_backend_options():
    assert backend_options(SorterParams(bundle="/b")) == {}
    params = SorterParams(bundle="/b", intra_op_threads=2, engine_cache_dir="/var/cache/e")
    assert backend_options(params) == {
        "onnxruntime": {"intra_op_threads": 2},
        "tensorrt": {"cache_dir": "/var/cache/e"},
    }


def test_missing_bundle_is_refused():
    with pytest.raises(ConfigError, match="bundle is not set"):
        SorterParams.from_values({"camera_topics": ["a"]})


def test_thresholds_resolve_bundle_then_global_then_per_class():
    bundle = np.array([0.3, 0.4, 0.5], np.float32)
    assert resolve_thresholds(SorterParams(bundle="/b"), bundle).tolist() == pytest.approx(
        [0.3, 0.4, 0.5]
    )
    both = SorterParams(bundle="/b", threshold=0.2, class_thresholds=(-1.0, 0.9, -1.0))
    assert resolve_thresholds(both, bundle).tolist() == pytest.approx([0.2, 0.9, 0.2])
    with pytest.raises(ConfigError, match="class_thresholds has 2 values, the model has 3"):
        resolve_thresholds(SorterParams(bundle="/b", class_thresholds=(0.1, 0.2)), bundle)


def test_every_numeric_parameter_carries_a_range_that_holds_its_default():
    from mmsag_ros.ros.declarations import DECLARATIONS

    numeric = [(n, d, desc) for n, d, desc in DECLARATIONS if type(d) in (int, float)]
    assert len(numeric) > 15
    for name, default, descriptor in numeric:
        ranges = (
            descriptor.integer_range if type(default) is int else descriptor.floating_point_range
        )
        assert len(ranges) == 1, f"{name} has no range: ros2 param describe shows none"
        assert ranges[0].from_value <= default <= ranges[0].to_value, name


def test_the_parameter_file_ships_the_defaults_by_value():
    # One home: SorterParams; the declarations take their defaults from it, and the shipped
    # file repeats them (to document each one) except where a cell differs on purpose.
    from mmsag_ros.ros.declarations import DECLARATIONS

    values = yaml.safe_load(CONFIG.read_text())["/**"]["ros__parameters"]
    declared = {name: default for name, default, _ in DECLARATIONS}
    dataclass_defaults = {
        name: list(f.default) if isinstance(f.default, tuple) else f.default
        for name, f in SorterParams.__dataclass_fields__.items()
        if name not in ("bundle", "class_thresholds")  # required; an empty list has no type
    }
    assert {n: d for n, d in declared.items() if n in dataclass_defaults} == dataclass_defaults
    deliberate = {"autostart": True}  # the shipped file starts the node without a manager
    differ = {n: v for n, v in values.items() if n != "bundle" and v != declared[n]}
    assert differ == deliberate
    assert values["bundle"] == declared["bundle"] == ""
