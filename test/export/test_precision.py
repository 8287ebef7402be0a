"""Reduced-precision variants: fp16 conversion, explicit Q/DQ int8, scoring against fp32."""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import onnx
import onnxruntime
import pytest
from onnx import TensorProto, numpy_helper

from export.conftest import CALIB_IMAGES
from mmsag_ros.bundle.labels import MLKW_LABELS
from mmsag_ros.bundle.preprocess import preprocess
from mmsag_ros.bundle.schema import PRECISION_METADATA_KEY, Bundle
from mmsag_ros.data.dataset import AnnotatedSplit, Sample
from mmsag_ros.data.voc import read_voc
from mmsag_ros.errors import ConfigError, DatasetError
from mmsag_ros.export.precision import (
    DEFAULT_BARS,
    FP32_OPS,
    convert_fp16,
    load_calibration_images,
    quantize_int8,
)
from mmsag_ros.export.variant_score import (
    VariantScore,
    check_validation_split,
    onnx_scores,
    score_variant,
)
from mmsag_ros.export.write_bundle import parity_frames
from mmsag_ros.onnx_session import CPU_PROVIDER, open_session

_FLOAT_TYPES = {TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.DOUBLE, TensorProto.BFLOAT16}
_BACKBONE = "/model/backbone/"


def _split(targets: list[list[float]], name: str = "val") -> AnnotatedSplit:
    """A split of hand-made targets over two classes (the images are never opened)."""
    labels = MLKW_LABELS.from_names(MLKW_LABELS.names[:2])
    samples = tuple(
        Sample(Path(f"img{i}.jpg"), np.asarray(t, np.float32), f"img{i}")
        for i, t in enumerate(targets)
    )
    return AnnotatedSplit(labels, samples, name, "hand-made")


def _run(path: Path, frames: np.ndarray, precision: str) -> dict[str, np.ndarray]:
    session = open_session(path, precision=precision)
    logits, attention = session.run(["logits", "attention"], {"images": frames})
    return {"logits": logits, "attention": attention}


def _metadata(path: Path) -> dict[str, str]:
    return {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}


def _tensor_types(model: onnx.ModelProto) -> dict[str, int]:
    """Element type of every tensor of the graph, from ONNX shape inference."""
    inferred = onnx.shape_inference.infer_shapes(model)
    graph = inferred.graph
    types = {
        v.name: v.type.tensor_type.elem_type
        for v in (*graph.value_info, *graph.input, *graph.output)
    }
    types.update({t.name: t.data_type for t in graph.initializer})
    for node in graph.node:
        if node.op_type == "Constant":
            types[node.output[0]] = node.attribute[0].t.data_type
    return types


# --------------------------------------------------------------------------- scoring


# Keeps the cases of the former int8_acceptable test: the decision is drop <= bar, a drop of
# exactly the bar (computed in floating point, 1.0000000000000009 here) is accepted.
@pytest.mark.parametrize(
    ("fp32", "variant", "bar", "accepted"),
    [
        (0.80, 0.795, 1.0, True),  # 0.5 points down
        (0.80, 0.79, 1.0, True),  # exactly at the bar
        (0.80, 0.785, 1.0, False),  # 1.5 points down
        (0.60, 0.70, 1.0, True),  # the variant scored higher
        (0.60, 0.60, 0.0, True),
        (0.60, 0.599, 0.0, False),
        (0.80, 0.75, 10.0, True),
        (0.80, 0.7949, 0.5, False),  # 0.51 points over an fp16 bar
    ],
)
def test_acceptance_is_the_drop_within_the_bar(
    fp32: float, variant: float, bar: float, accepted: bool
) -> None:
    score = VariantScore(
        precision="int8",
        fp32_map=fp32,
        variant_map=variant,
        map_drop_points=100.0 * (fp32 - variant),  # as score_variant computes it
        decision_agreement=1.0,
        max_score_diff=0.0,
        bar_points=bar,
        split="val",
        images=10,
    )
    assert score.accepted is accepted
    assert (" <= " in score.summary()) is accepted


def _scores() -> tuple[np.ndarray, np.ndarray, AnnotatedSplit]:
    # Class 0: positives 0 and 2. fp32 ranks them first (AP 1); the variant puts negative 1
    # between them (AP (1 + 2/3) / 2 = 5/6). Class 1: positive 1 ranked first by both (AP 1).
    # mAP 1 against 11/12: a drop of 25/3 points. At thresholds 0.5 the variant flips one
    # decision (image 1, class 0) of eight; the largest difference is 0.85 - 0.2.
    split = _split([[1, 0], [0, 1], [1, 0], [0, 0]])
    # Image 3 scores exactly the threshold for class 1 in both: a decision (>=) they share.
    fp32 = np.array([[0.9, 0.1], [0.2, 0.7], [0.8, 0.3], [0.1, 0.5]])
    variant = np.array([[0.9, 0.1], [0.85, 0.7], [0.8, 0.3], [0.1, 0.5]])
    return fp32, variant, split


def test_score_variant_numbers_on_hand_made_scores() -> None:
    fp32, variant, split = _scores()
    score = score_variant("fp16", fp32, variant, split, np.array([0.5, 0.5]), bar_points=10.0)
    assert score.precision == "fp16" and score.split == "val" and score.images == 4
    assert score.fp32_map == pytest.approx(1.0)
    assert score.variant_map == pytest.approx(11 / 12)
    assert score.map_drop_points == pytest.approx(25 / 3)
    assert score.decision_agreement == pytest.approx(7 / 8)
    assert score.max_score_diff == pytest.approx(0.65)
    assert score.bar_points == 10.0 and score.accepted
    summary = score.summary()
    for part in (
        "mAP 91.67 vs fp32 100.00",
        "drop 8.33 <= 10.00 points",
        "decisions agree 87.50%",
        "max score diff 0.6500",
        "on 4 images of 'val'",
    ):
        assert part in summary, summary
    assert VariantScore(**score.to_dict()) == score
    assert set(score.to_dict()) == {
        "precision",
        "fp32_map",
        "variant_map",
        "map_drop_points",
        "decision_agreement",
        "max_score_diff",
        "bar_points",
        "split",
        "images",
    }


def test_score_variant_accepts_at_exactly_the_bar_and_refuses_above() -> None:
    fp32, variant, split = _scores()
    thresholds = np.array([0.5, 0.5])
    at_bar = score_variant("int8", fp32, variant, split, thresholds, bar_points=25 / 3)
    assert at_bar.accepted
    below = score_variant("int8", fp32, variant, split, thresholds, bar_points=8.33)
    assert not below.accepted
    assert "drop 8.33 > 8.33 points" in below.summary()
    same = score_variant("int8", fp32, fp32.copy(), split, thresholds, bar_points=0.0)
    assert same.accepted and same.map_drop_points == 0.0
    assert same.decision_agreement == 1.0 and same.max_score_diff == 0.0
    # The variant better than fp32: a negative drop, accepted at any bar.
    better = score_variant("int8", variant, fp32, split, thresholds, bar_points=0.0)
    assert better.map_drop_points == pytest.approx(-25 / 3) and better.accepted


def test_score_variant_ignores_the_ignored_targets() -> None:
    # Image 1 is "difficult" for class 0: the variant ranking it first costs nothing.
    split = _split([[1, 0], [-1, 1], [0, 0]])
    fp32 = np.array([[0.9, 0.1], [0.2, 0.8], [0.1, 0.2]])
    variant = np.array([[0.9, 0.1], [0.95, 0.8], [0.1, 0.2]])
    score = score_variant("int8", fp32, variant, split, np.array([0.5, 0.5]), bar_points=0.0)
    assert score.map_drop_points == pytest.approx(0.0) and score.accepted


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"bar_points": -0.5}, r"the int8 bar must be >= 0 mAP points, got -0.5"),
        ({"bar_points": math.nan}, r"the int8 bar must be >= 0"),
        ({"bar_points": math.inf}, r"the int8 bar must be >= 0"),
        ({"precision": "fp32"}, r"precision must be one of fp16, int8"),
        ({"precision": "bf16"}, r"precision must be one of fp16, int8"),
        ({"variant": np.zeros((4, 1))}, r"score shapes \(4, 2\) and \(4, 1\) do not match"),
        ({"fp32": np.zeros((3, 2)), "variant": np.zeros((3, 2))}, r"the 4 images of 'val'"),
    ],
)
def test_score_variant_rejects_bad_input(change: dict[str, object], match: str) -> None:
    fp32, variant, split = _scores()
    args: dict[str, object] = {
        "precision": "int8",
        "fp32": fp32,
        "variant": variant,
        "bar_points": 1.0,
        **change,
    }
    with pytest.raises(ConfigError, match=match):
        score_variant(
            args["precision"],  # type: ignore[arg-type]
            args["fp32"],  # type: ignore[arg-type]
            args["variant"],  # type: ignore[arg-type]
            split,
            np.array([0.5, 0.5]),
            bar_points=args["bar_points"],  # type: ignore[arg-type]
        )


@pytest.mark.parametrize(
    "targets",
    [[[0, 0], [0, 0]], [[-1, 0], [0, -1]], []],
    ids=["negatives", "ignored", "empty"],
)
def test_a_split_without_positives_cannot_judge_a_variant(targets: list[list[float]]) -> None:
    split = _split(targets)
    with pytest.raises(DatasetError, match=r"validation split 'val' has no positive labels"):
        check_validation_split(split)
    scores = np.full((len(targets), 2), 0.5)
    with pytest.raises(DatasetError, match=r"has no positive labels"):
        score_variant("fp16", scores, scores, split, np.array([0.5, 0.5]), bar_points=1.0)


def test_default_bars() -> None:
    assert dict(DEFAULT_BARS) == {"fp16": 0.5, "int8": 1.0}


def test_onnx_scores_are_the_sigmoid_of_the_preprocessed_split(
    tiny_bundle: Bundle, validation_split: AnnotatedSplit
) -> None:
    scores = onnx_scores(tiny_bundle.onnx_path, validation_split, tiny_bundle.spec, batch_size=4)
    assert scores.shape == (len(validation_split), 8) and scores.dtype == np.float64
    rgb = [
        cv2.cvtColor(cv2.imread(str(s.image_path)), cv2.COLOR_BGR2RGB)
        for s in validation_split.samples
    ]
    frames = np.stack([preprocess(image, tiny_bundle.spec) for image in rgb])
    logits = _run(tiny_bundle.onnx_path, frames, "fp32")["logits"].astype(np.float64)
    np.testing.assert_allclose(scores, 1 / (1 + np.exp(-logits)), atol=1e-6)


# --------------------------------------------------------------------------- calibration


def test_calibration_from_voc_uses_the_train_split(
    tiny_bundle: Bundle, synthetic_voc: Path
) -> None:
    spec = tiny_bundle.spec
    train = read_voc(synthetic_voc, "train")
    images = load_calibration_images(synthetic_voc, spec, limit=100)
    assert images.shape == (len(train), 3, 96, 96) and images.dtype == np.float32
    rgb = cv2.cvtColor(cv2.imread(str(train.samples[0].image_path)), cv2.COLOR_BGR2RGB)
    assert np.array_equal(images[0], preprocess(rgb, spec))
    limited = load_calibration_images(synthetic_voc, spec, limit=5, split="val")
    assert limited.shape[0] == 5


def test_calibration_from_a_plain_folder(tiny_bundle: Bundle, tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    (tmp_path / "sub").mkdir()
    for index, name in enumerate(["a.png", "sub/b.jpg", "c.bmp"]):
        cv2.imwrite(str(tmp_path / name), rng.integers(0, 255, (40 + index, 50, 3), np.uint8))
    (tmp_path / "notes.txt").write_text("not an image")
    assert load_calibration_images(tmp_path, tiny_bundle.spec).shape == (3, 3, 96, 96)
    (tmp_path / "z.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(DatasetError, match=r"z\.png cannot be decoded"):
        load_calibration_images(tmp_path, tiny_bundle.spec)


def test_calibration_errors(tiny_bundle: Bundle, synthetic_voc: Path, tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"no images"):
        load_calibration_images(tmp_path, tiny_bundle.spec)
    with pytest.raises(DatasetError, match=r"does not exist"):
        load_calibration_images(tmp_path / "nope", tiny_bundle.spec)
    with pytest.raises(DatasetError, match=r"no calibration split test"):
        load_calibration_images(synthetic_voc, tiny_bundle.spec, split="test")
    with pytest.raises(ConfigError, match=r"limit must be >= 1"):
        load_calibration_images(synthetic_voc, tiny_bundle.spec, limit=0)


# --------------------------------------------------------------------------- fp16


@pytest.fixture(scope="module")
def fp16_path(tiny_bundle: Bundle, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("fp16") / "model.fp16.onnx"
    record = convert_fp16(tiny_bundle.onnx_path, path)
    source_ops = {n.op_type for n in onnx.load(str(tiny_bundle.onnx_path)).graph.node}
    assert record["tool"].startswith("onnxruntime.transformers.float16 ")
    assert record["io"] == "float32"
    assert record["fp32_ops"] == sorted(source_ops & set(FP32_OPS))
    return path


def test_fp16_has_half_weights_and_float32_io(fp16_path: Path) -> None:
    model = onnx.load(str(fp16_path))
    graph = model.graph
    weights = Counter(t.data_type for t in graph.initializer if t.data_type in _FLOAT_TYPES)
    assert weights[TensorProto.FLOAT16] > 0 and set(weights) == {TensorProto.FLOAT16}
    for value in (*graph.input, *graph.output):
        assert value.type.tensor_type.elem_type == TensorProto.FLOAT, value.name
    assert [v.name for v in graph.input] == ["images"]
    assert [v.name for v in graph.output] == ["logits", "attention"]
    # The convolutions, the bulk of the work, run in half precision.
    types = _tensor_types(model)
    convs = [n for n in graph.node if n.op_type == "Conv"]
    assert convs and all(types[n.input[0]] == TensorProto.FLOAT16 for n in convs)


def test_fp16_keeps_the_sensitive_ops_in_float32(fp16_path: Path) -> None:
    model = onnx.load(str(fp16_path))
    types = _tensor_types(model)
    present = Counter(n.op_type for n in model.graph.node if n.op_type in FP32_OPS)
    # The tiny model has the semantic attention, the fusion block and the dynamic graph.
    assert {"Softmax", "LayerNormalization", "Sigmoid", "Erf", "ReduceMean"} <= set(present)
    checked = Counter()
    for node in model.graph.node:
        floats = [types[i] for i in node.input if i and types.get(i) in _FLOAT_TYPES]
        if node.op_type not in FP32_OPS or not floats:
            continue  # integer shape arithmetic (a Div of sizes) has no precision to keep
        assert set(floats) == {TensorProto.FLOAT}, f"{node.name} computes in {floats}"
        outputs = [types[o] for o in node.output if types.get(o) in _FLOAT_TYPES]
        assert set(outputs) == {TensorProto.FLOAT}, f"{node.name} outputs {outputs}"
        checked[node.op_type] += 1
    assert checked["Softmax"] == present["Softmax"] == 2
    assert checked["LayerNormalization"] == present["LayerNormalization"] == 2
    assert checked["Sigmoid"] == present["Sigmoid"] >= 1


def test_fp16_is_tagged_and_keeps_the_fp32_metadata(tiny_bundle: Bundle, fp16_path: Path) -> None:
    source, converted = _metadata(tiny_bundle.onnx_path), _metadata(fp16_path)
    assert PRECISION_METADATA_KEY not in source
    assert converted.pop(PRECISION_METADATA_KEY) == "fp16"
    assert converted == source
    assert converted["mmsag.model_id"] == tiny_bundle.model_id


def test_fp16_runs_in_onnx_runtime_close_to_fp32(tiny_bundle: Bundle, fp16_path: Path) -> None:
    frames = parity_frames(tiny_bundle.spec, count=3, seed=11)
    fp32 = _run(tiny_bundle.onnx_path, frames, "fp32")
    fp16 = _run(fp16_path, frames, "fp16")
    assert fp16["logits"].dtype == np.float32 and fp16["logits"].shape == (3, 8)
    assert fp16["attention"].shape == (3, 8, 3, 3)
    scores32, scores16 = (1 / (1 + np.exp(-r["logits"])) for r in (fp32, fp16))
    assert np.abs(scores16 - scores32).max() < 2e-3
    assert np.abs(fp16["attention"] - fp32["attention"]).max() < 5e-3
    assert np.allclose(fp16["attention"].sum(axis=(2, 3)), 1.0, atol=1e-3)
    assert not np.array_equal(fp16["logits"], fp32["logits"])  # it really is another model


# --------------------------------------------------------------------------- int8

_STEM = "/model/backbone/conv1/Conv"
_LAST = "/model/backbone/layer4/layer4.1/conv2/Conv"


@pytest.fixture(scope="module")
def calibration(tiny_bundle: Bundle, synthetic_voc: Path) -> np.ndarray:
    return load_calibration_images(synthetic_voc, tiny_bundle.spec, limit=CALIB_IMAGES)


@pytest.fixture(scope="module")
def backbone_convs(tiny_bundle: Bundle) -> list[str]:
    """The fp32 graph's backbone convolutions, in graph order."""
    graph = onnx.load(str(tiny_bundle.onnx_path)).graph
    convs = [n.name for n in graph.node if n.op_type == "Conv" and n.name.startswith(_BACKBONE)]
    assert len(convs) == 20 and convs[0] == _STEM and convs[-1] == _LAST  # ResNet-18
    return convs


_KINDS = {"backbone": {}, "head": {"head": True}, "ends": {"ends_fp32": True}}


@pytest.fixture(scope="module")
def int8_paths(
    tiny_bundle: Bundle, calibration: np.ndarray, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Path]:
    """The default (whole backbone), head-too and ends-in-fp32 variants, records checked."""
    folder = tmp_path_factory.mktemp("int8")
    paths = {kind: folder / f"{kind}.int8.onnx" for kind in _KINDS}
    for kind, path in paths.items():
        record = quantize_int8(tiny_bundle.onnx_path, path, calibration=calibration, **_KINDS[kind])
        assert record["tool"].startswith("onnxruntime.quantization ")
        assert record["format"] == "QDQ"
        assert record["activations"] == "int8 symmetric (zero point 0)"
        assert record["calibration"] == {"images": CALIB_IMAGES, "method": "minmax"}
        ends = kind == "ends"
        assert record["fp32_convs"] == (sorted([_STEM, _LAST]) if ends else [])
        assert ("head in fp32" in record["quantized"]) is (kind != "head")
        assert record["head"] == ("int8" if kind == "head" else "fp32")
        assert ("stem and last convolution in fp32" in record["quantized"]) is ends
    assert sorted(p.name for p in folder.iterdir()) == sorted(p.name for p in paths.values())
    return paths


def _initializers(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    return {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}


def _int8_consumers(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    """Nodes fed by a DequantizeLinear (of an int8 activation or weight)."""
    dequantized = {n.output[0] for n in model.graph.node if n.op_type == "DequantizeLinear"}
    return [
        n
        for n in model.graph.node
        if n.op_type not in ("QuantizeLinear", "DequantizeLinear")
        and any(i in dequantized for i in n.input)
    ]


@pytest.mark.parametrize("kind", list(_KINDS))
def test_int8_activations_are_symmetric_int8(int8_paths: dict[str, Path], kind: str) -> None:
    model = onnx.load(str(int8_paths[kind]))
    inits = _initializers(model)
    quantize = [n for n in model.graph.node if n.op_type == "QuantizeLinear"]
    assert len(quantize) > 10
    for node in quantize:
        assert len(node.input) == 3, f"{node.name} has no zero point"
        zero, scale = inits[node.input[2]], inits[node.input[1]]
        assert zero.dtype == np.int8 and zero.shape == () and zero == 0, f"{node.name}: {zero}"
        assert scale.dtype == np.float32 and scale > 0
    # Every activation quantized is dequantized again (explicit Q/DQ pairs), and every
    # DequantizeLinear reads int8: TensorRT's parser takes nothing else (no int32 biases).
    dequantize = [n for n in model.graph.node if n.op_type == "DequantizeLinear"]
    assert {n.output[0] for n in quantize} <= {n.input[0] for n in dequantize}
    activations = {n.output[0] for n in quantize}
    for node in dequantize:
        data = node.input[0]
        assert data in activations or inits[data].dtype == np.int8, f"{node.name} reads {data}"
        assert inits[node.input[2]].dtype == np.int8


@pytest.mark.parametrize("kind", list(_KINDS))
def test_int8_weights_are_per_channel_symmetric_int8(
    int8_paths: dict[str, Path], kind: str
) -> None:
    model = onnx.load(str(int8_paths[kind]))
    inits = _initializers(model)
    dequantize = {n.output[0]: n for n in model.graph.node if n.op_type == "DequantizeLinear"}
    convs = [n for n in _int8_consumers(model) if n.op_type == "Conv"]
    # 20 in the backbone (two kept fp32 with "ends"); "head" adds the head's 3 projections.
    assert len(convs) == {"ends": 18, "backbone": 20, "head": 23}[kind]
    for conv in convs:
        weight = dequantize[conv.input[1]]
        values, scale = inits[weight.input[0]], inits[weight.input[1]]
        zero = inits[weight.input[2]]
        assert values.dtype == np.int8 and np.abs(values).max() <= 127
        assert values.min() >= -127  # symmetric: -128 is never used
        assert zero.dtype == np.int8 and not zero.any()
        assert scale.shape == (values.shape[0],), f"{conv.name}: not per output channel"
        assert {a.name: a.i for a in weight.attribute}.get("axis", 1) == 0
        # The input is a dequantized activation; the bias (if any) stays float32.
        assert conv.input[0] in dequantize
        if len(conv.input) > 2 and conv.input[2]:
            assert inits[conv.input[2]].dtype == np.float32, f"{conv.name}: bias quantized"


def test_int8_quantizes_whole_backbone_blocks_by_default(
    int8_paths: dict[str, Path], backbone_convs: list[str]
) -> None:
    model = onnx.load(str(int8_paths["backbone"]))
    consumers = _int8_consumers(model)
    assert {n.name for n in consumers if n.op_type == "Conv"} == set(backbone_convs)
    # Residual additions take int8 inputs too, so blocks stay in int8.
    backbone = [n for n in model.graph.node if n.name.startswith(_BACKBONE)]
    for op_type in ("Add",):
        ops = {n.name for n in backbone if n.op_type == op_type}
        assert ops and ops <= {n.name for n in consumers}, op_type


@pytest.mark.parametrize("kind", list(_KINDS))
def test_int8_quantizes_after_each_activation_not_before_it(
    int8_paths: dict[str, Path], kind: str
) -> None:
    # TensorRT fuses Conv (or Add) + ReLU and quantizes the fused output; a Q/DQ between them
    # would be an extra rounding at the pre-activation range, which TensorRT honours.
    model = onnx.load(str(int8_paths[kind]))
    producers = {out: node for node in model.graph.node for out in node.output}
    consumers: dict[str, list[str]] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node.op_type)
    activations = [n for n in model.graph.node if n.op_type in ("Relu", "Clip")]
    assert len(activations) == 17  # ResNet-18: the stem, two per block
    for activation in activations:
        source = producers[activation.input[0]]
        assert source.op_type in ("Conv", "Add"), f"{activation.name} reads {source.op_type}"
        assert consumers[activation.input[0]] == [activation.op_type], activation.name
    # The activations feeding int8 consumers are quantized right after the ReLU: all but the
    # stem's (max pooling reads it in float), the last block's (the fp32 head reads it unless
    # the head is int8) and, with the ends in fp32, the one feeding the last convolution.
    quantized = [n for n in activations if "QuantizeLinear" in consumers.get(n.output[0], [])]
    assert len(quantized) == {"backbone": 15, "head": 16, "ends": 14}[kind]


def test_int8_can_keep_the_stem_and_the_last_convolution_in_fp32(
    int8_paths: dict[str, Path], backbone_convs: list[str]
) -> None:
    model = onnx.load(str(int8_paths["ends"]))
    inits = _initializers(model)
    quantized = {n.name for n in _int8_consumers(model) if n.op_type == "Conv"}
    assert quantized == set(backbone_convs) - {_STEM, _LAST}
    nodes = {n.name: n for n in model.graph.node}
    for name in (_STEM, _LAST):
        assert inits[nodes[name].input[1]].dtype == np.float32, name
    assert nodes[_STEM].input[0] == "images"  # the pixels go in unquantized


def test_int8_default_quantizes_nothing_outside_the_backbone(
    int8_paths: dict[str, Path],
) -> None:
    model = onnx.load(str(int8_paths["backbone"]))
    consumers = _int8_consumers(model)
    outside = [n.name for n in consumers if not n.name.startswith(_BACKBONE)]
    assert not outside, f"quantized outside the backbone: {outside}"
    assert not [n for n in consumers if n.op_type in ("MatMul", "Gemm")]
    # The head's matrix products still take their float weights.
    inits = _initializers(model)
    head_weights = [
        inits[i]
        for n in model.graph.node
        if n.op_type in ("MatMul", "Gemm") and not n.name.startswith(_BACKBONE)
        for i in n.input
        if i in inits and inits[i].ndim == 2
    ]
    assert len(head_weights) >= 5 and all(w.dtype == np.float32 for w in head_weights)


def test_int8_head_also_quantizes_the_matrix_products_and_projections(
    int8_paths: dict[str, Path],
) -> None:
    default = {n.name for n in _int8_consumers(onnx.load(str(int8_paths["backbone"])))}
    model = onnx.load(str(int8_paths["head"]))
    consumers = _int8_consumers(model)
    outside = [n for n in consumers if not n.name.startswith(_BACKBONE)]
    products = {n.name for n in outside if n.op_type in ("MatMul", "Gemm")}
    assert len(products) >= 5, "int8 head=True left the head's MatMul/Gemm in fp32"
    assert {"/model/fusion/ffn/ffn.0/MatMul", "/model/graph/global_proj/Gemm"} <= products
    # The fusion block's query/key/value, output and feed-forward projections take constant
    # int8 weights (per output channel), not weights quantized as activations at run time.
    inits = _initializers(model)
    dequantize = {n.output[0]: n for n in model.graph.node if n.op_type == "DequantizeLinear"}
    fusion_weights = [
        dequantize[n.input[1]]
        for n in outside
        if n.name.startswith("/model/fusion/")
        and n.op_type == "MatMul"
        and n.input[1] in dequantize
        and dequantize[n.input[1]].input[0] in inits
    ]
    assert len(fusion_weights) == 6
    for weight in fusion_weights:
        assert inits[weight.input[0]].dtype == np.int8 and inits[weight.input[1]].size > 1
    # And the head's 1x1 projections of the feature map.
    projections = {n.name for n in outside if n.op_type == "Conv"}
    assert {
        "/model/semantic_attention/visual/Conv",
        "/model/fusion/visual_proj/Conv",
    } <= projections
    assert default < {n.name for n in consumers}


@pytest.mark.parametrize("kind", ["backbone", "head"])
def test_int8_is_tagged_and_runs_close_to_fp32(
    tiny_bundle: Bundle, int8_paths: dict[str, Path], kind: str
) -> None:
    path = int8_paths[kind]
    source, quantized = _metadata(tiny_bundle.onnx_path), _metadata(path)
    assert quantized.pop(PRECISION_METADATA_KEY) == "int8"
    assert quantized == source
    model = onnx.load(str(path))
    for value in (*model.graph.input, *model.graph.output):
        assert value.type.tensor_type.elem_type == TensorProto.FLOAT, value.name
    frames = parity_frames(tiny_bundle.spec, count=3, seed=5)
    fp32 = _run(tiny_bundle.onnx_path, frames, "fp32")
    int8 = _run(path, frames, "int8")
    assert int8["logits"].shape == (3, 8) and int8["attention"].shape == (3, 8, 3, 3)
    scores32, scores8 = (1 / (1 + np.exp(-r["logits"])) for r in (fp32, int8))
    assert np.abs(scores8 - scores32).max() < 0.05
    assert not np.array_equal(int8["logits"], fp32["logits"])
    # The head variant quantizes the attention maps themselves: sums move by a few 1e-3.
    assert np.allclose(int8["attention"].sum(axis=(2, 3)), 1.0, atol=1e-2)


def test_int8_as_written_computes_the_files_qdq_without_the_cpu_rewrites(
    tiny_bundle: Bundle, int8_paths: dict[str, Path]
) -> None:
    path = int8_paths["backbone"]
    frames = parity_frames(tiny_bundle.spec, count=3, seed=5)
    as_written = open_session(path, precision="int8", as_written=True)
    written = as_written.run(["logits"], {"images": frames})[0]
    # The reference: the file's nodes one by one, no fusion, no rewrite.
    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_DISABLE_ALL
    literal = onnxruntime.InferenceSession(str(path), options, providers=[CPU_PROVIDER])
    reference = literal.run(["logits"], {"images": frames})[0]
    cpu = _run(path, frames, "int8")["logits"]
    np.testing.assert_array_equal(written, reference)
    # The CPU session's rewrites (uint8 activations, folded ReLUs, 7-bit weights, int32
    # biases) move it.
    assert np.abs(cpu - reference).max() > 1e-3


def test_int8_rejects_bad_calibration_and_methods(tiny_bundle: Bundle, tmp_path: Path) -> None:
    out = tmp_path / "q.onnx"
    with pytest.raises(ConfigError, match=r"calibration must be N x 3 x S x S"):
        quantize_int8(tiny_bundle.onnx_path, out, calibration=np.zeros((3, 96, 96), np.float32))
    with pytest.raises(ConfigError, match=r"calibration must be"):
        quantize_int8(tiny_bundle.onnx_path, out, calibration=np.zeros((0, 3, 96, 96), np.float32))
    with pytest.raises(ConfigError, match=r"unknown calibration method 'kl'; use one of minmax"):
        quantize_int8(
            tiny_bundle.onnx_path,
            out,
            calibration=np.zeros((2, 3, 96, 96), np.float32),
            method="kl",
        )
    assert not list(tmp_path.iterdir())
