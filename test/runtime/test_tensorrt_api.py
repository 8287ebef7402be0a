"""No code uses a TensorRT API that TensorRT 11 removed.

TensorRT 11 (discrete GPUs) dropped the weakly typed build: precision builder flags, INT8
calibrators, precision constraints, quantization flags, the algorithm selector, per-tensor
dynamic ranges and a few deprecated queries. Engines must build on TensorRT 10 (JetPack 6) and
11 alike, and TensorRT cannot be installed here, so the sources are checked instead: every
``.py`` under ``mmsag_ros/`` and ``bench/`` is parsed and each attribute chain, name, imported
name, keyword argument and string passed to ``getattr``/``hasattr``/``setattr``/``delattr`` is
compared with the removed names. Comments and docstrings may mention them (the AST has no
comments, and only strings given to those four functions are read).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCANNED = ("mmsag_ros", "bench")

#: ``BuilderFlag`` members removed in TensorRT 11 (precision now comes from the network).
REMOVED_BUILDER_FLAGS = frozenset(
    {
        "FP16",
        "INT8",
        "FP8",
        "BF16",
        "INT4",
        "FP4",
        "OBEY_PRECISION_CONSTRAINTS",
        "PREFER_PRECISION_CONSTRAINTS",
        "DIRECT_IO",
    }
)
#: Names removed in TensorRT 11, wherever they appear.
REMOVED_NAMES = frozenset(
    {
        "int8_calibrator",
        "set_calibration_profile",
        "get_calibration_profile",
        "set_quantization_flag",
        "get_quantization_flag",
        "quantization_flags",
        "clear_quantization_flag",
        "IInt8Calibrator",
        "IInt8EntropyCalibrator",
        "IInt8EntropyCalibrator2",
        "IInt8MinMaxCalibrator",
        "IInt8LegacyCalibrator",
        "CalibrationAlgoType",
        "platform_has_fast_fp16",
        "platform_has_fast_int8",
        "device_memory_size",
        "IAlgorithmSelector",
        "algorithm_selector",
        "set_dynamic_range",
        "dynamic_range",
    }
)
_REFLECTION = frozenset({"getattr", "hasattr", "setattr", "delattr"})


def _chain(node: ast.AST) -> list[str]:
    """``a.b.c`` -> ["a", "b", "c"]; a chain on a call or subscript keeps the attribute part."""
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
    return parts[::-1]


def removed_api_uses(source: str, filename: str = "<snippet>") -> list[str]:
    """Each use of a removed TensorRT API in ``source``, as ``file:line: what``."""
    found: list[str] = []

    def report(node: ast.AST, what: str) -> None:
        found.append(f"{filename}:{getattr(node, 'lineno', 0)}: {what}")

    def check_member(node: ast.AST, owner: list[str], member: str) -> None:
        if owner and owner[-1] == "BuilderFlag" and member in REMOVED_BUILDER_FLAGS:
            report(node, f"BuilderFlag.{member}")
        elif member in REMOVED_NAMES:
            report(node, member)

    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Attribute):
            check_member(node, _chain(node.value), node.attr)
        elif isinstance(node, ast.Name) and node.id in REMOVED_NAMES:
            report(node, node.id)
        elif isinstance(node, ast.alias):
            for name in (node.name.split(".")[-1], node.asname):
                if name in REMOVED_NAMES:
                    report(node, name)
        elif isinstance(node, ast.keyword) and node.arg in REMOVED_NAMES:
            report(node, f"{node.arg}=")
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in _REFLECTION
            and len(node.args) >= 2
            and isinstance(node.args[1], ast.Constant)
            and isinstance(node.args[1].value, str)
        ):
            check_member(node, _chain(node.args[0]), node.args[1].value)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and (
            node.name in REMOVED_NAMES
        ):
            report(node, f"def {node.name}")  # e.g. a calibrator's get_* override by name
    return found


def _sources() -> Iterator[Path]:
    for folder in SCANNED:
        yield from sorted((REPO / folder).rglob("*.py"))


def test_the_scan_covers_the_tensorrt_code() -> None:
    scanned = {p.relative_to(REPO).as_posix() for p in _sources()}
    assert "mmsag_ros/runtime/tensorrt.py" in scanned
    assert "mmsag_ros/runtime/backends/tensorrt_.py" in scanned
    assert any(name.startswith("bench/") for name in scanned)


def test_no_api_removed_in_tensorrt_11_is_used() -> None:
    uses = []
    for path in _sources():
        uses += removed_api_uses(
            path.read_text(encoding="utf-8"), path.relative_to(REPO).as_posix()
        )
    assert uses == [], "TensorRT 11 removed these APIs:\n" + "\n".join(uses)


@pytest.mark.parametrize(
    ("snippet", "expected"),
    [
        ("config.set_flag(trt.BuilderFlag.FP16)", "BuilderFlag.FP16"),
        ("config.set_flag(tensorrt.BuilderFlag.INT8)", "BuilderFlag.INT8"),
        ("from tensorrt import BuilderFlag\nconfig.set_flag(BuilderFlag.BF16)", "BuilderFlag.BF16"),
        ("config.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)", "OBEY_PRECISION"),
        ("flag = getattr(trt.BuilderFlag, 'FP8')", "BuilderFlag.FP8"),
        ("hasattr(trt.BuilderFlag, 'DIRECT_IO')", "BuilderFlag.DIRECT_IO"),
        ("config.int8_calibrator = c", "int8_calibrator"),
        ("setattr(config, 'int8_calibrator', c)", "int8_calibrator"),
        ("class C(trt.IInt8EntropyCalibrator2):\n    pass", "IInt8EntropyCalibrator2"),
        ("from tensorrt import IInt8MinMaxCalibrator", "IInt8MinMaxCalibrator"),
        ("import tensorrt as trt\nx = trt.CalibrationAlgoType.ENTROPY_CALIBRATION_2", "Calib"),
        ("if builder.platform_has_fast_fp16:\n    pass", "platform_has_fast_fp16"),
        ("size = engine.device_memory_size", "device_memory_size"),
        ("config.algorithm_selector = selector", "algorithm_selector"),
        ("tensor.set_dynamic_range(-1.0, 1.0)", "set_dynamic_range"),
        ("tensor.dynamic_range = (-1.0, 1.0)", "dynamic_range"),
        ("config.set_quantization_flag(trt.QuantizationFlag.CALIBRATE_BEFORE_FUSION)", "quant"),
        ("make(int8_calibrator=c)", "int8_calibrator="),
        ("def get_calibration_profile(self):\n    pass", "get_calibration_profile"),
    ],
)
def test_the_checker_catches_removed_apis(snippet: str, expected: str) -> None:
    uses = removed_api_uses(snippet)
    assert uses, snippet
    assert any(expected in use for use in uses), uses


@pytest.mark.parametrize(
    "snippet",
    [
        '"""Never use trt.BuilderFlag.FP16 or config.int8_calibrator: TensorRT 11 removed them."""',
        "# config.set_flag(trt.BuilderFlag.FP16) is gone in TensorRT 11\nx = 1",
        "flag = trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED\nnet = make_network(flag)",
        "config.set_flag(trt.BuilderFlag.REFIT)",  # still there
        "dtype = trt.DataType.INT8\nhalf = trt.DataType.HALF",  # data types are not build flags
        "precision = 'fp16'\nflags = {'FP16': 1}",  # strings outside getattr are not API uses
        "size = engine.device_memory_size_v2",  # the replacement
        "message = 'set a dynamic_range'",
    ],
)
def test_the_checker_leaves_supported_code_alone(snippet: str) -> None:
    assert removed_api_uses(snippet) == []
