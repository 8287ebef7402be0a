"""A bundle's files: plain names inside the bundle directory, checked by SHA-256.

The manifest is data from wherever the bundle came from, so every file it names is proven to
be a regular file directly inside the bundle before anything reads it.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mmsag_ros.errors import BundleError

__all__ = ["bundle_file", "checked_file", "sha256_file"]

_CHUNK_BYTES = 1 << 20


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


def bundle_file(root: Path, name: str, what: str, where: Path) -> Path:
    """``root / name`` once ``name`` is proven to be a regular file directly inside ``root``.

    The manifest is data from wherever the bundle came from: a name like ``../x``, an absolute
    path or a symlink leading out of the folder would make every backend read (and hash) an
    arbitrary file. So only plain file names are accepted, and the resolved file must still sit
    in the (resolved) bundle directory.
    """
    field = f"{what}.file"
    separators = {"/", "\\", os.sep} | ({os.altsep} if os.altsep else set())
    if (
        not name
        or name in {".", ".."}
        or "\0" in name
        or any(sep in name for sep in separators)
        or os.path.isabs(name)
    ):
        raise BundleError(
            f"{where}: {field} {name!r} is not a plain file name; a bundle names its files "
            "without folders, '..' or absolute paths: export the bundle again"
        )
    file_path = root / name
    try:
        resolved, home = file_path.resolve(), root.resolve()
    except (OSError, RuntimeError) as err:  # a symlink loop (RuntimeError before Python 3.13)
        raise BundleError(f"{where}: {field} {name!r} cannot be resolved ({err})") from err
    if resolved.parent != home:
        raise BundleError(
            f"{where}: {field} {name!r} resolves to {resolved}, outside the bundle directory "
            f"{home}; copy the file into the bundle instead of linking to it"
        )
    if not file_path.exists():
        raise BundleError(f"{what} file {file_path} is missing; export the bundle again")
    if not file_path.is_file():
        raise BundleError(
            f"{where}: {field} {name!r} is not a regular file ({file_path} is a directory or "
            "special file); export the bundle again"
        )
    return file_path


def checked_file(
    root: Path, section: Mapping[str, Any], what: str, path: Path, *, verify: bool
) -> Path:
    """The file a manifest ``section`` names (``file``, ``sha256``), checked by hash if ``verify``.

    ``what`` names the section in errors, ``path`` the manifest they are about.
    """
    name, expected = section.get("file"), section.get("sha256")
    if not isinstance(name, str) or not isinstance(expected, str):
        raise BundleError(f"{path}: the {what} section needs 'file' and 'sha256' strings")
    file_path = bundle_file(root, name, what, path)
    if verify:
        actual = sha256_file(file_path)
        if actual != expected:
            raise BundleError(
                f"{what} file {file_path} does not match the manifest (SHA-256 {actual[:12]}..."
                f" instead of {expected[:12]}...): it was swapped or truncated; export the "
                "bundle again"
            )
    return file_path
