"""Every TensorRT name our code uses exists in TensorRT 10 and 11, read from the real bindings.

TensorRT cannot run here, but NVIDIA's ``tensorrt-cu12-bindings`` wheels download from PyPI
(about 1.3 MB each) and their pybind11 module carries every class, enum value and method name
it registers as a string. The names are collected from our sources: attributes of the
``tensorrt`` module (``trt.X``, ``trt.X.Y``) and the methods called on the objects it returns.
A name reached through ``getattr(..., default)`` is optional and not required. Skipped when
PyPI cannot be reached.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from support import REPO

RUNTIME = REPO / "mmsag_ros" / "runtime"
# The TensorRT objects each file calls methods on (the same names hold other things elsewhere:
# ``engine`` is a Path in tensorrt.py).
TRT_OBJECTS = {
    RUNTIME / "engine_build.py": {"builder", "network", "config", "parser", "shapes"},
    RUNTIME / "backends" / "tensorrt_.py": {"engine", "context", "runtime"},
}
MAJORS = {"10": "tensorrt-cu12-bindings>=10,<11", "11": "tensorrt-cu12-bindings>=11,<12"}


def _chain(node: ast.AST) -> list[str]:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
    return parts[::-1]


def used_names() -> set[str]:
    """``trt.A.B`` gives A and B; ``builder.create_network(...)`` gives create_network."""
    names: set[str] = set()
    for path, objects in TRT_OBJECTS.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Attribute) or isinstance(node.ctx, ast.Store):
                continue
            chain = _chain(node)
            if len(chain) >= 2 and chain[0] == "trt":
                names.update(n for n in chain[1:] if not n.startswith("__"))
            elif len(chain) == 2 and chain[0] in objects:
                names.add(chain[1])
    return names


def _bindings_tokens(major: str, folder: Path) -> set[str]:
    folder.mkdir(parents=True, exist_ok=True)
    wheels = sorted(folder.glob("*.whl"))
    if not wheels:
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
        command += ["--python-version", "3.11", "--platform", "manylinux_2_28_x86_64"]
        done = subprocess.run(
            [*command, "-d", str(folder), MAJORS[major]], capture_output=True, text=True
        )
        wheels = sorted(folder.glob("*.whl"))
        if done.returncode != 0 or not wheels:
            pytest.skip(f"cannot download {MAJORS[major]} from PyPI: {done.stderr[-300:]}")
    with zipfile.ZipFile(wheels[-1]) as wheel:
        module = next(n for n in wheel.namelist() if n.endswith("/tensorrt.so"))
        data = wheel.read(module)
    return {m.decode() for m in re.findall(rb"[A-Za-z_][A-Za-z0-9_]{1,}", data)}


def _present(name: str, tokens: set[str]) -> bool:
    # The linker stores a string that ends another one only once, inside the longer one.
    return name in tokens or any(t.endswith(name) for t in tokens)


def test_the_names_are_collected_from_the_sources():
    names = used_names()
    assert {"Builder", "OnnxParser", "WORKSPACE", "create_network", "set_tensor_address"} <= names
    assert {"exists", "read_bytes"}.isdisjoint(names)  # Path methods are not TensorRT's


@pytest.mark.parametrize("major", sorted(MAJORS))
def test_every_tensorrt_name_we_use_exists_in_the_bindings(major, tmp_path_factory):
    tokens = _bindings_tokens(major, tmp_path_factory.getbasetemp() / f"trt{major}")
    assert _present("IBuilderConfig", tokens)  # the module really is TensorRT's
    assert not _present("a_name_no_tensorrt_has", tokens)
    missing = sorted(n for n in used_names() if not _present(n, tokens))
    assert missing == [], f"TensorRT {major} has no {', '.join(missing)}"
