"""Where TensorRT engines are kept: built once per GPU, found, checked and loaded.

Precision comes from the variant (``model.onnx``, ``model.fp16.onnx`` with its casts,
``model.int8.onnx`` with its explicit Q/DQ nodes); the build itself is
:mod:`~mmsag_ros.runtime.engine_build`'s.

Engines depend on the GPU model, its compute capability, the TensorRT version and the exact
variant file, so the cache key is ``<gpu-slug>_sm<major><minor>_trt<version>_<precision>_<first
12 hex of the variant's SHA-256>``; a JSON sidecar records the key fields, source hash, batch
profile and build time. The cache directory defaults to ``BUNDLE/engines``; a bundle on a
read-only mount is served from an engine shipped in it, and new engines go to the cache
directory the caller names (the node's ``engine_cache_dir``) or, failing that, to
``$XDG_CACHE_HOME/mmsag_ros/engines``. A broken cache entry (missing engine or sidecar, hash
mismatch) is an error, never a silent rebuild. Files are written atomically under unique
temporary names, and the check-then-build of one key holds a lock file (``<key>.lock``), so two
processes building at once build once and never mix their files.

Building takes minutes, so only :func:`ensure_engine` with ``build=True`` (``mmsag engine``)
builds; the node and ``mmsag verify`` only load, and say which command builds a missing engine.
TensorRT cannot be installed on the development machines: keys, paths, the cache decision and
the absence of removed APIs are tested there, the build itself on a GPU (``bench/gpu_check.py``).
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mmsag_ros.atomic import exclusive_lock, shared_lock
from mmsag_ros.bundle.schema import PRECISIONS
from mmsag_ros.errors import BackendUnavailableError, BundleError, ConfigError
from mmsag_ros.runtime.engine_build import BatchProfile, build_engine, import_tensorrt

if TYPE_CHECKING:
    from mmsag_ros.bundle.schema import Bundle

__all__ = [
    "cached_engine",
    "check_private_cache",
    "current_device",
    "default_cache_dir",
    "engine_key",
    "ensure_engine",
    "load_engine",
    "read_sidecar",
    "read_verified_engine",
]

_log = logging.getLogger(__name__)

_SHA_DIGITS = 12


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "gpu"


def engine_key(
    gpu_name: str,
    compute_capability: tuple[int, int],
    trt_version: str,
    precision: str,
    variant_sha256: str,
) -> str:
    """``<gpu-slug>_sm<major><minor>_trt<version>_<precision>_<12 hex>``, the cache key."""
    if precision not in PRECISIONS:
        raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    major, minor = (int(v) for v in compute_capability)
    if major < 1 or minor < 0:
        raise ConfigError(f"invalid compute capability {compute_capability}")
    version = re.sub(r"[^0-9A-Za-z.]+", "-", str(trt_version)).strip("-")
    if not version:
        raise ConfigError("trt_version is empty")
    digest = str(variant_sha256).lower()
    if not re.fullmatch(r"[0-9a-f]{12,64}", digest):
        raise ConfigError(f"variant_sha256 must be a hex SHA-256, got {variant_sha256!r}")
    return f"{_slug(gpu_name)}_sm{major}{minor}_trt{version}_{precision}_{digest[:_SHA_DIGITS]}"


def default_cache_dir() -> Path:
    """Where engines go when the bundle folder is read-only: ``$XDG_CACHE_HOME/mmsag_ros``."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "mmsag_ros" / "engines"


def _writable(directory: Path) -> bool:
    """Whether ``directory`` is, or could be created as, a writable folder (creates nothing)."""
    existing = Path(directory).absolute()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    return existing.is_dir() and os.access(existing, os.W_OK | os.X_OK)


def _cache_dirs(bundle: Bundle, cache_dir: Path | None) -> tuple[list[Path], Path | None]:
    """Directories to look in (first hit wins) and the one to build into (None: none writable)."""
    if cache_dir is not None:
        cache_dir = Path(cache_dir)
        return [cache_dir, bundle.engines_dir], cache_dir if _writable(cache_dir) else None
    if _writable(bundle.engines_dir):
        return [bundle.engines_dir], bundle.engines_dir
    fallback = default_cache_dir()
    return [bundle.engines_dir, fallback], fallback if _writable(fallback) else None


def current_device() -> tuple[str, tuple[int, int]]:
    """Name and compute capability of the current CUDA GPU (from torch.cuda)."""
    try:
        import torch
    except ImportError:
        raise BackendUnavailableError("TensorRT engines need torch with CUDA here") from None
    if not torch.cuda.is_available():
        raise BackendUnavailableError("no CUDA GPU is visible: TensorRT engines need one")
    index = torch.cuda.current_device()
    return torch.cuda.get_device_name(index), tuple(torch.cuda.get_device_capability(index))


def read_sidecar(engine: Path) -> dict[str, Any] | None:
    """The JSON sidecar of ``engine`` (None if absent); BundleError if unreadable."""
    path = engine.with_suffix(".json")
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise BundleError(f"engine sidecar {path} is not valid JSON ({err})") from err
    if not isinstance(data, dict):
        raise BundleError(f"engine sidecar {path} must hold a JSON object")
    return data


def cached_engine(engine: Path, *, onnx_sha256: str, profile: BatchProfile) -> Path | None:
    """Decide whether the engine cached at ``engine`` can be reused.

    Returns:
        ``engine`` when it exists, is intact and was built from this ONNX with a batch profile
        covering ``profile``; None when nothing is cached or the entry is stale (another
        model, a narrower batch range): then it must be built.

    Raises:
        BundleError: A broken entry: an engine without sidecar, a sidecar without engine, or
            an engine whose SHA-256 differs from its sidecar's (truncated or replaced).
    """
    found = read_verified_engine(engine, onnx_sha256=onnx_sha256, profile=profile)
    return None if found is None else Path(engine)


def read_verified_engine(engine: Path, *, onnx_sha256: str, profile: BatchProfile) -> bytes | None:
    """The bytes of the engine cached at ``engine``, hashed as read, if it can be reused.

    The bytes TensorRT deserializes are the bytes whose SHA-256 matched the sidecar: an
    engine replaced between a check and a later read cannot slip through. Returns None and
    raises as :func:`cached_engine`.
    """
    engine = Path(engine)
    sidecar = read_sidecar(engine)
    fix = "rebuild it: `mmsag engine --bundle BUNDLE --precision PRECISION --rebuild`"
    if sidecar is None:
        if engine.exists():
            raise BundleError(
                f"engine {engine} has no sidecar {engine.with_suffix('.json')}; {fix}"
            )
        return None
    if not engine.is_file():
        raise BundleError(f"engine file {engine} named by its sidecar is missing; {fix}")
    data = engine.read_bytes()
    if sidecar.get("engine_sha256") != hashlib.sha256(data).hexdigest():
        raise BundleError(f"engine {engine} does not match its sidecar's SHA-256; {fix}")
    if sidecar.get("onnx_sha256") != onnx_sha256:
        _log.warning("engine %s was built from another ONNX file: it must be rebuilt", engine.name)
        return None
    try:
        built = BatchProfile(**sidecar["batch"])
    except (KeyError, TypeError, ConfigError) as err:
        raise BundleError(f"engine sidecar of {engine} has no valid batch profile: {fix}") from err
    if not built.covers(profile):
        _log.warning(
            "engine %s has batch profile %s, %s is needed: it must be rebuilt",
            engine.name,
            built,
            profile,
        )
        return None
    return data


def check_private_cache(directory: Path) -> None:
    """BundleError unless ``directory`` (if it exists) is a real folder others cannot write.

    An engine is executable GPU code that only its sidecar vouches for: a cache reached through
    a symbolic link, or one that other users can write, could hand the node anyone's engine.
    """
    directory = Path(directory)
    if directory.is_symlink():
        raise BundleError(
            f"engine cache {directory} is a symbolic link; engines are executable GPU code, "
            "so name the real folder (engine_cache_dir, --cache-dir)"
        )
    if not directory.is_dir():
        return
    info = directory.stat()
    if info.st_uid not in (os.getuid(), 0):
        raise BundleError(
            f"engine cache {directory} belongs to another user (uid {info.st_uid}); engines are "
            "executable GPU code: build them as the user the node runs as, or as root"
        )
    mode = info.st_mode
    if mode & 0o022:
        raise BundleError(
            f"engine cache {directory} can be written by other users (mode "
            f"{oct(mode & 0o777)}); engines are executable GPU code: chmod 700 {directory}"
        )


def load_engine(
    bundle: Bundle,
    *,
    precision: str = "fp32",
    cache_dir: Path | None = None,
    profile: BatchProfile | None = None,
) -> tuple[Path, bytes]:
    """The cached engine of ``bundle``'s ``precision`` variant for this GPU: path and bytes.

    Each cache directory is checked to be private (:func:`check_private_cache`), and the
    engine is read under a shared lock, so a build in progress (which holds the exclusive
    one) is waited for, and hashed as read (:func:`read_verified_engine`). Arguments as
    :func:`ensure_engine`.

    Raises:
        BackendUnavailableError: No TensorRT 10+, no CUDA GPU, or no engine cached (naming
            the command that builds it).
        BundleError: The bundle lacks the variant, a shared or broken cache entry.
    """
    variant, key, search, _ = _lookup(bundle, precision, cache_dir)
    found = _find_cached(key, variant.sha256, search, profile or BatchProfile())
    if found is None:
        raise BackendUnavailableError(_missing_engine(bundle, key, precision, search, cache_dir))
    return found


def _lookup(
    bundle: Bundle, precision: str, cache_dir: Path | None
) -> tuple[Any, str, list[Path], Path | None]:
    variant = bundle.variant(precision)
    trt = import_tensorrt()
    gpu_name, capability = current_device()
    key = engine_key(gpu_name, capability, trt.__version__, precision, variant.sha256)
    return variant, key, *_cache_dirs(bundle, cache_dir)


def _find_cached(
    key: str, onnx_sha256: str, search: list[Path], profile: BatchProfile
) -> tuple[Path, bytes] | None:
    for directory in search:
        check_private_cache(directory)
        engine = directory / f"{key}.engine"
        try:
            if not (engine.exists() or engine.with_suffix(".json").exists()):
                continue
        except OSError as err:  # a cache this user may not enter (0700, another owner)
            raise BundleError(f"cannot read the engine cache {directory}: {err}") from err
        waiting = functools.partial(_log.info, "waiting for a build of %s to end", engine.name)
        with shared_lock(engine.with_suffix(".lock"), on_wait=waiting, optional=True):
            data = read_verified_engine(engine, onnx_sha256=onnx_sha256, profile=profile)
        if data is not None:
            _log.info("using cached TensorRT engine %s", engine)
            return engine, data
    return None


def _missing_engine(
    bundle: Bundle, key: str, precision: str, search: list[Path], cache_dir: Path | None
) -> str:
    return (
        f"no TensorRT engine {key}.engine for {bundle.model_id} ({precision}) in "
        f"{', '.join(map(str, search))}; build it once on this machine (minutes): "
        f"`mmsag engine --bundle {bundle.root} --precision {precision}"
        + (f" --cache-dir {cache_dir}`" if cache_dir is not None else "`")
    )


def ensure_engine(
    bundle: Bundle,
    *,
    precision: str = "fp32",
    cache_dir: Path | None = None,
    build: bool = False,
    rebuild: bool = False,
    profile: BatchProfile | None = None,
    workspace_mb: int = 2048,
) -> Path:
    """The engine of ``bundle``'s ``precision`` variant for this GPU and TensorRT version.

    Args:
        bundle: A loaded bundle.
        precision: The variant: ``fp32``, ``fp16`` or ``int8`` (the bundle must hold it).
        cache_dir: Engine cache directory (default: the bundle's ``engines/``, or the user
            cache when that is read-only); engines shipped in the bundle are found too.
        build: Build the engine when none is cached (minutes); else a missing engine raises.
        rebuild: Build even when a valid cached engine exists (implies ``build``).
        profile: The batch sizes the engine must serve (default 1/1/8).
        workspace_mb: Builder workspace limit in MiB.

    Raises:
        BackendUnavailableError: No TensorRT 10+, no CUDA GPU, no cached engine without
            ``build`` (naming the command that builds it), or no writable cache directory.
        BundleError: The bundle lacks the variant, a broken or shared cache entry (see
            :func:`read_verified_engine`, :func:`check_private_cache`) or a failed build.
    """
    variant, key, search, target = _lookup(bundle, precision, cache_dir)
    profile = profile or BatchProfile()
    if not rebuild:
        found = _find_cached(key, variant.sha256, search, profile)
        if found is not None:
            return found[0]
    if not (build or rebuild):
        raise BackendUnavailableError(_missing_engine(bundle, key, precision, search, cache_dir))
    if target is None:
        raise BackendUnavailableError(
            f"no writable engine cache for {bundle.model_id}: {', '.join(map(str, search))} "
            "are read-only; name a writable one (--cache-dir, or the node's engine_cache_dir)"
        )
    target.mkdir(mode=0o700, parents=True, exist_ok=True)  # private: engines are code
    check_private_cache(target)
    path = target / f"{key}.engine"
    # Two processes building together would otherwise both spend minutes, and could pair one's
    # engine with the other's sidecar. Holding the lock from the cache check to the last write
    # makes the second one wait and then reuse the first one's engine.
    with exclusive_lock(
        path.with_suffix(".lock"),
        on_wait=lambda: _log.info("waiting for another process building %s", path.name),
    ):
        if not rebuild:
            cached = cached_engine(path, onnx_sha256=variant.sha256, profile=profile)
            if cached is not None:
                return cached
        base = key.split(f"_{precision}_")[0]  # GPU + TensorRT version: shared by variants
        gpu_name, capability = current_device()
        return build_engine(
            variant.path,
            path,
            workspace_mb=workspace_mb,
            timing_cache=target / f"{base}_timing.cache",
            profile=profile,
            sidecar={
                "key": key,
                "gpu_name": gpu_name,
                "compute_capability": list(capability),
                "model_id": bundle.model_id,
                "precision": precision,
                "onnx_file": variant.path.name,
                "onnx_sha256": variant.sha256,
            },
        )
