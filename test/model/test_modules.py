"""Semantic attention, attention fusion, label graph and per-class heads in isolation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mmsag_ros.errors import ConfigError
from mmsag_ros.model.fusion import AttentionFusion
from mmsag_ros.model.graph import LabelGraph, check_adjacency, normalize_adjacency
from mmsag_ros.model.heads import PerClassLinear
from mmsag_ros.model.semantic_attention import SemanticAttention

CHANNELS, EMBED, WIDTH, LABELS = 32, 24, 16, 5


@pytest.mark.parametrize("cells", [7, 14])  # 224 and 448 px inputs at stride 32
def test_semantic_attention_shapes_and_normalisation(cells: int) -> None:
    torch.manual_seed(0)
    module = SemanticAttention(CHANNELS, EMBED, attention_dim=20, out_dim=WIDTH)
    features = torch.randn(2, CHANNELS, cells, cells)
    class_features, maps = module(features, torch.randn(LABELS, EMBED))
    assert class_features.shape == (2, LABELS, WIDTH)
    assert maps.shape == (2, LABELS, cells, cells)
    assert (maps >= 0).all()
    torch.testing.assert_close(maps.sum(dim=(2, 3)), torch.ones(2, LABELS))


def test_semantic_attention_pools_where_it_attends() -> None:
    torch.manual_seed(0)
    module = SemanticAttention(CHANNELS, EMBED, attention_dim=20, out_dim=WIDTH)
    features = torch.randn(1, CHANNELS, 3, 3)
    class_features, maps = module(features, torch.randn(LABELS, EMBED))
    weights = maps[0].reshape(LABELS, 9)
    pooled = weights @ features[0].reshape(CHANNELS, 9).T
    torch.testing.assert_close(class_features[0], module.project(pooled))


def test_semantic_attention_follows_the_label_text() -> None:
    torch.manual_seed(0)
    module = SemanticAttention(CHANNELS, EMBED, attention_dim=20, out_dim=WIDTH)
    features = torch.randn(1, CHANNELS, 4, 4)
    embeddings = torch.randn(2, EMBED)
    _, maps = module(features, embeddings)
    assert not torch.allclose(maps[0, 0], maps[0, 1])
    _, same = module(features, embeddings[:1].repeat(2, 1))
    torch.testing.assert_close(same[0, 0], same[0, 1])


def test_fusion_shapes_and_tokens() -> None:
    torch.manual_seed(0)
    fusion = AttentionFusion(WIDTH, in_channels=CHANNELS, embed_dim=EMBED, num_heads=4, ffn_dim=32)
    features = torch.randn(3, CHANNELS, 7, 7)
    embeddings = torch.randn(LABELS, EMBED)
    assert fusion.tokens(features, embeddings).shape == (3, 49 + LABELS, WIDTH)
    fused = fusion(torch.randn(3, LABELS, WIDTH), features, embeddings)
    assert fused.shape == (3, LABELS, WIDTH)
    # Post-norm output: every node is layer-normalised.
    torch.testing.assert_close(fused.mean(-1), torch.zeros(3, LABELS), atol=1e-5, rtol=0)


def test_fusion_cross_attention_is_the_multihead_attention_modules_own() -> None:
    torch.manual_seed(0)
    fusion = AttentionFusion(WIDTH, in_channels=CHANNELS, embed_dim=EMBED, num_heads=4).eval()
    queries = torch.randn(2, LABELS, WIDTH)
    keys = fusion.tokens(torch.randn(2, CHANNELS, 3, 3), torch.randn(LABELS, EMBED))
    expected, _ = fusion.attention(queries, keys, keys, need_weights=False)
    torch.testing.assert_close(fusion.cross_attention(queries, keys), expected)
    # Training reaches the module's packed projection through the written-out path.
    fusion.cross_attention(queries, keys).sum().backward()
    grad = fusion.attention.in_proj_weight.grad
    assert grad is not None and grad.abs().sum(dim=1).gt(0).all()


def test_fusion_reads_both_modalities() -> None:
    torch.manual_seed(0)
    fusion = AttentionFusion(WIDTH, in_channels=CHANNELS, embed_dim=EMBED, num_heads=4).eval()
    queries, features = torch.randn(1, LABELS, WIDTH), torch.randn(1, CHANNELS, 2, 2)
    embeddings = torch.randn(LABELS, EMBED)
    base = fusion(queries, features, embeddings)
    assert not torch.allclose(base, fusion(queries, features + 1.0, embeddings))
    assert not torch.allclose(base, fusion(queries, features, embeddings + 1.0))


def test_normalize_adjacency_by_hand() -> None:
    adjacency = torch.tensor([[1.0, 1.0, 0.0], [0.5, 1.0, 0.5], [0.0, 2.0, 1.0]])
    degree = [2.0, 2.0, 3.0]
    expected = torch.tensor(
        [
            [adjacency[i, j].item() / math.sqrt(degree[i] * degree[j]) for j in range(3)]
            for i in range(3)
        ]
    )
    torch.testing.assert_close(normalize_adjacency(adjacency), expected)
    torch.testing.assert_close(normalize_adjacency(torch.eye(4)), torch.eye(4))


def test_normalize_adjacency_isolated_class_is_zero_not_inf() -> None:
    adjacency = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    normalised = normalize_adjacency(adjacency)
    assert torch.isfinite(normalised).all()
    torch.testing.assert_close(normalised, adjacency)


@pytest.mark.parametrize(
    ("matrix", "message"),
    [
        (np.eye(3), r"shape \(3, 3\); expected \(4, 4\)"),
        (-np.eye(4), "finite and non-negative"),
        (np.full((4, 4), np.nan), "finite and non-negative"),
    ],
)
def test_check_adjacency_rejects(matrix: np.ndarray, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        check_adjacency(matrix, 4)


def test_graph_needs_a_step() -> None:
    with pytest.raises(ConfigError, match="static=True or dynamic=True"):
        LabelGraph(LABELS, WIDTH, static=False, dynamic=False)


def test_static_graph_stores_normalised_adjacency_and_mixes_neighbours() -> None:
    torch.manual_seed(0)
    ring = np.eye(LABELS) + np.roll(np.eye(LABELS), 1, axis=1)
    graph = LabelGraph(LABELS, WIDTH, adjacency=ring, dynamic=False)
    torch.testing.assert_close(
        graph.static_adjacency, normalize_adjacency(torch.tensor(ring, dtype=torch.float32))
    )
    assert "static_adjacency" in graph.state_dict()
    nodes = torch.randn(1, LABELS, WIDTH)
    moved = nodes.clone()
    moved[0, 1] += 1.0
    changed = (graph(moved) - graph(nodes)).abs().sum(-1)[0] > 1e-6
    # Node 0 receives from node 1 in the ring; nodes 2.. do not.
    assert changed.tolist() == [True, True, False, False, False]
    identity = LabelGraph(LABELS, WIDTH, dynamic=False)
    torch.testing.assert_close(identity.static_adjacency, torch.eye(LABELS))
    changed = (identity(moved) - identity(nodes)).abs().sum(-1)[0] > 1e-6
    assert changed.tolist() == [False, True, False, False, False]


def test_dynamic_graph_is_per_image_and_residual() -> None:
    torch.manual_seed(0)
    graph = LabelGraph(LABELS, WIDTH)
    nodes = torch.randn(2, LABELS, WIDTH)
    dynamic = graph.dynamic_adjacency(nodes)
    assert dynamic.shape == (2, LABELS, LABELS)
    assert ((dynamic > 0) & (dynamic < 1)).all()
    assert not torch.allclose(dynamic[0], dynamic[1])
    output = graph(nodes)
    assert output.shape == nodes.shape
    with torch.no_grad():
        graph.dynamic_weight.weight.zero_()
    torch.testing.assert_close(graph(nodes), nodes)  # Z = H + 0


def test_static_only_graph_has_no_dynamic_part() -> None:
    graph = LabelGraph(LABELS, WIDTH, dynamic=False)
    with pytest.raises(ConfigError, match="dynamic=False"):
        graph.dynamic_adjacency(torch.randn(1, LABELS, WIDTH))


def test_per_class_linear_by_hand() -> None:
    torch.manual_seed(0)
    head = PerClassLinear(LABELS, WIDTH)
    nodes = torch.randn(2, LABELS, WIDTH)
    expected = torch.stack(
        [
            torch.stack([nodes[b, c] @ head.weight[c] + head.bias[c] for c in range(LABELS)])
            for b in range(2)
        ]
    )
    torch.testing.assert_close(head(nodes), expected)
