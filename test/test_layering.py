"""The package's layering, read from the sources: who may import whom inside ``mmsag_ros``.

Every module under ``mmsag_ros/`` is parsed (nothing is imported) and every import in it is
collected: at module level, inside functions, under ``if TYPE_CHECKING:``, relative ones, and
``importlib.import_module("mmsag_ros...")`` with a literal name. Each is reduced to the
top-level unit it reaches (a subpackage such as ``runtime`` or a module such as ``errors``)
and checked against :data:`ALLOWED`, which is the architecture written down::

    cli, demo                 the top: commands and the end-to-end demo
    live                      drives a live node: bag play over DDS, replays through a sorter
    ros                       the node (rclpy, messages); runs the runtime, writes capture bags
    bag                       bags with rosbags, no ROS: make, read, offline evaluation
    runtime | export | train  three peers that never import each other
    model                     the network and its checkpoint
    report                    metrics tables and plots, for train and bag alike
    pointing                  attention peaks as points, scored against the data's boxes
    camera                    camera messages to arrays (by their fields, no ROS)
    data                      datasets and synthetic scenes
    bundle                    the bundle format, the contract between export and runtime
    onnx_session, metrics     shared leaves
    errors, atomic, progress  foundations

Within a unit anything goes. A new subpackage or module fails
:func:`test_every_unit_has_a_row` until it gets a row here.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "mmsag_ros"

FOUNDATION = frozenset({"errors", "atomic", "progress"})
#: The root package (``from mmsag_ros import __version__``): only the version, imports nothing.
ROOT = "__init__"
#: The rosidl-generated messages (``mmsag_ros.msg``): not in this tree, and they need ROS.
MESSAGES = "msg"

_LIBRARY = frozenset(
    {
        *FOUNDATION,
        "_share",
        "metrics",
        "onnx_session",
        "pointing",
        "bundle",
        "data",
        "model",
        "train",
        "export",
        "runtime",
        "ros",
        "bag",
        "camera",
        "report",
        "live",
        "demo",
        "cli",
    }
)

#: unit -> the other units it may import (the root package is allowed everywhere).
ALLOWED: dict[str, frozenset[str]] = {
    "errors": frozenset(),
    "atomic": frozenset({"errors"}),
    "progress": frozenset(),
    "_share": frozenset({"errors"}),  # locates the installed share/ folder
    "metrics": frozenset({"errors"}),
    "onnx_session": frozenset({"errors"}),
    # Peaks are read off the maps through the bundle's preprocessing and scored against
    # the data's boxes; train and runtime share it.
    "pointing": FOUNDATION | {"bundle", "data"},
    # The bundle format: written by export, read by the runtime, depends on neither.
    "bundle": FOUNDATION,
    "data": FOUNDATION | {"bundle"},  # labels and preprocessing come from the bundle format
    "model": FOUNDATION | {"bundle", "data"},
    "train": FOUNDATION | {"bundle", "data", "model", "metrics", "pointing", "report"},
    # Export scores its variants with the session the runtime opens (onnx_session), but
    # imports neither the runtime nor the trainer.
    "export": FOUNDATION | {"bundle", "data", "model", "metrics", "onnx_session"},
    # The runtime reads bundles; the torch backend rebuilds the model from its checkpoint, and
    # `mmsag verify` renders synthetic conveyor frames (data.synth_scene) when given no images.
    "runtime": FOUNDATION | {"bundle", "data", "model", "onnx_session", "pointing"},
    # Camera messages are read by their fields: no ROS, nothing but the error types.
    "camera": FOUNDATION,
    "report": FOUNDATION | {"bundle", "metrics", "pointing"},
    # Bags hold frames and MultiLabels read with rosbags: the runtime scores them offline.
    "bag": FOUNDATION
    | {"_share", "bundle", "camera", "data", "metrics", "pointing", "report", "runtime"},
    # The node runs the runtime and writes its capture bags; never training, export, replays.
    "ros": FOUNDATION
    | {"_share", "bundle", "camera", "data", "metrics", "pointing", "runtime", "bag", MESSAGES},
    # Above both: plays bags into nodes, starts sorter processes, scores what they publish.
    "live": (_LIBRARY - {"train", "export", "cli", "demo"}) | {MESSAGES},
    "demo": _LIBRARY - {"cli"},
    "cli": _LIBRARY | {MESSAGES},
}

#: Third-party modules that exist only in a ROS environment.
ROS_MODULES = frozenset(
    {
        "rclpy",
        "rcl_interfaces",
        "rosidl_runtime_py",
        "builtin_interfaces",
        "std_msgs",
        "sensor_msgs",
        "diagnostic_msgs",
        "launch",
        "launch_ros",
    }
)
ROS_UNITS = frozenset({"ros", "live"})


@dataclass(frozen=True)
class Import:
    """One import statement's target, where it is written."""

    path: Path
    line: int
    target: str  # absolute dotted module name (``mmsag_ros.bundle.manifest``, ``rclpy``)
    names: tuple[str, ...] = ()  # for ``from X import a, b``

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(REPO).as_posix()}:{self.line}"


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _unit_of_file(path: Path) -> str:
    first = path.relative_to(PACKAGE).parts[0]
    return first.removesuffix(".py")


def _package_of(path: Path) -> list[str]:
    """The dotted package a module's relative imports start from."""
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return parts[:-1]  # ``a/b/__init__.py`` -> a.b; ``a/b/c.py`` -> a.b


def imports_of(path: Path, source: str | None = None) -> Iterator[Import]:
    """Every import in ``path`` (or in ``source``, read as if it were that file).

    Anywhere in the file: module level, functions, ``if TYPE_CHECKING:``; relative ones are
    resolved against the file's package.
    """
    text = path.read_text(encoding="utf-8") if source is None else source
    tree = ast.parse(text, str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(path, node.lineno, alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = _package_of(path)
                base = base[: len(base) - (node.level - 1)]
                target = ".".join([*base, *([node.module] if node.module else [])])
            else:
                target = node.module or ""
            yield Import(path, node.lineno, target, tuple(a.name for a in node.names))
        elif (
            isinstance(node, ast.Call)
            and (
                (isinstance(node.func, ast.Attribute) and node.func.attr == "import_module")
                or (
                    isinstance(node.func, ast.Name)
                    and node.func.id in ("import_module", "__import__")
                )
            )
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            yield Import(path, node.lineno, node.args[0].value)


def _units_reached(imp: Import, units: set[str]) -> set[str]:
    """The ``mmsag_ros`` units an import reaches (empty for third-party imports)."""
    parts = imp.target.split(".")
    if parts[0] != "mmsag_ros":
        return set()
    if len(parts) > 1:
        return {parts[1]}
    # ``import mmsag_ros`` or ``from mmsag_ros import a, b``: a unit by name, else the root.
    return {name if name in units else ROOT for name in imp.names} or {ROOT}


def _all_units() -> set[str]:
    return {_unit_of_file(path) for path in _modules()} - {ROOT}


def _edges() -> list[tuple[str, str, Import]]:
    units = _all_units() | {MESSAGES}
    edges = []
    for path in _modules():
        source = _unit_of_file(path)
        for imp in imports_of(path):
            for target in _units_reached(imp, units):
                if target != source:
                    edges.append((source, target, imp))
    return edges


def test_every_unit_has_a_row() -> None:
    assert _all_units() == set(ALLOWED), "give each new subpackage/module a row in ALLOWED"
    assert set(_LIBRARY) == set(ALLOWED)


_SNIPPET = """
import importlib
from typing import TYPE_CHECKING

import numpy as np

from . import classifier
from .. import bundle
from ..export.write_bundle import export_bundle

if TYPE_CHECKING:
    from mmsag_ros.train.run import train

def f():
    import mmsag_ros.cli.bench
    from mmsag_ros import demo, __version__
    return importlib.import_module("mmsag_ros.ros.sorter")
"""


def test_the_scan_sees_every_kind_of_import() -> None:
    path = PACKAGE / "runtime" / "not_a_module.py"  # never written: only its place matters
    imports = list(imports_of(path, _SNIPPET))
    # ast.walk goes breadth first: compare without order.
    assert sorted(imp.target for imp in imports if imp.target != "typing") == sorted(
        [
            "importlib",
            "numpy",
            "mmsag_ros.runtime",
            "mmsag_ros",
            "mmsag_ros.export.write_bundle",
            "mmsag_ros.train.run",
            "mmsag_ros.cli.bench",
            "mmsag_ros",
            "mmsag_ros.ros.sorter",
        ]
    )
    reached = set()
    for imp in imports:
        reached |= _units_reached(imp, _all_units())
    assert reached == {"runtime", "bundle", "export", "train", "cli", "demo", ROOT, "ros"}


def test_relative_imports_in_a_package_init_start_at_that_package() -> None:
    path = PACKAGE / "runtime" / "backends" / "__init__.py"
    targets = [imp.target for imp in imports_of(path, "from . import base\nfrom .. import x\n")]
    assert targets == ["mmsag_ros.runtime.backends", "mmsag_ros.runtime"]


def test_the_scan_finds_real_function_level_imports() -> None:
    verify = PACKAGE / "runtime" / "verify.py"
    assert "mmsag_ros.data.synth_scene" in {imp.target for imp in imports_of(verify)}
    tensorrt = PACKAGE / "runtime" / "engine_cache.py"
    assert "torch" in {imp.target for imp in imports_of(tensorrt)}  # inside current_device()


def test_imports_follow_the_layering() -> None:
    violations = [
        f"{imp.where}: {source} imports {target} ({imp.target})"
        for source, target, imp in _edges()
        if target != ROOT and target not in ALLOWED.get(source, frozenset())
    ]
    assert violations == [], "layering violations:\n" + "\n".join(violations)


@pytest.mark.parametrize(
    ("source", "forbidden"),
    [
        ("bundle", {"data", "model", "train", "export", "runtime", "onnx_session"}),
        ("data", {"model", "train", "export", "runtime"}),
        ("model", {"train", "export", "runtime"}),
        ("export", {"runtime", "train"}),
        ("runtime", {"export", "train"}),
        ("train", {"export", "runtime"}),
        ("ros", {"train", "export", "cli", "demo", "live"}),
        # Bags need no ROS and no trainer: nothing of the node, nothing that drives one.
        ("bag", {"ros", "live", "train", "export", "cli", "demo", MESSAGES}),
        ("camera", {"ros", "bag", "live", "runtime", MESSAGES}),
        ("live", {"train", "export", "cli", "demo"}),
    ],
)
def test_the_table_states_the_rules(source: str, forbidden: set[str]) -> None:
    # The rules the table must keep, whatever rows are added or widened later.
    assert not ALLOWED[source] & forbidden


def test_the_root_package_imports_nothing_of_its_own() -> None:
    # So `from mmsag_ros import __version__` is allowed everywhere without creating an edge.
    imports = list(imports_of(PACKAGE / "__init__.py"))
    assert all(not imp.target.startswith("mmsag_ros") for imp in imports)


def test_package_faces_are_plain_python_that_go_to_definition_follows() -> None:
    # One convention: a package's __init__ is its docstring, plus plain imports of its front
    # doors where it has them (model, its backbones, runtime's backends, cli). No PEP 562
    # __getattr__ that resolves names at run time, hiding the real import edges.
    faces = sorted(PACKAGE.rglob("__init__.py"))
    assert len(faces) >= 10
    for path in faces:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        assert ast.get_docstring(tree), f"{path}: say what the package holds"
        defined = {
            node.name
            for node in tree.body
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
        }
        assigned = {  # `__getattr__, __dir__ = lazy_exports(...)` assigns a tuple
            name.id
            for node in tree.body
            if isinstance(node, (ast.Assign, ast.AnnAssign))
            for target in (node.targets if isinstance(node, ast.Assign) else [node.target])
            for name in ast.walk(target)
            if isinstance(name, ast.Name)
        }
        assert not {"__getattr__", "__dir__"} & (defined | assigned), path


def _third_party_uses(names: frozenset[str]) -> list[tuple[str, Import]]:
    return [
        (_unit_of_file(path), imp)
        for path in _modules()
        for imp in imports_of(path)
        if imp.target.split(".")[0] in names
    ]


def test_only_ros_and_live_import_rclpy() -> None:
    uses = _third_party_uses(frozenset({"rclpy"}))
    assert {unit for unit, _ in uses} <= ROS_UNITS, [imp.where for _, imp in uses]
    assert {unit for unit, _ in uses} == ROS_UNITS  # the scan does find them


def test_only_ros_and_live_import_ros_packages_and_messages() -> None:
    uses = _third_party_uses(ROS_MODULES)
    outside = [imp.where for unit, imp in uses if unit not in ROS_UNITS]
    assert outside == [], outside
    messages = [
        imp.where
        for source, target, imp in _edges()
        if target == MESSAGES and source not in ROS_UNITS
    ]
    assert messages == [], messages


def test_tensorrt_is_imported_only_by_the_runtime() -> None:
    uses = _third_party_uses(frozenset({"tensorrt"}))
    assert uses and {unit for unit, _ in uses} == {"runtime"}, [imp.where for _, imp in uses]


def test_the_bundle_format_needs_neither_torch_nor_an_inference_sdk() -> None:
    uses = _third_party_uses(frozenset({"torch", "onnxruntime", "tensorrt"}))
    assert [imp.where for unit, imp in uses if unit == "bundle"] == []
