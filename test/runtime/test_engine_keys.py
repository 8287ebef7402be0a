"""TensorRT engine keys and batch profiles; no TensorRT or GPU needed.

A key names everything an engine is only valid for: the GPU and its compute capability, the
TensorRT version, the precision and the variant file's SHA-256, so each variant of a bundle
gets its own engine. Bad parts are refused; a batch profile covers only the batches it was
built for.
"""

from __future__ import annotations

import pytest
from runtime.engine_cache_helpers import ORIN, SHA_A, SHA_B

from mmsag_ros.bundle.files import sha256_file
from mmsag_ros.bundle.schema import Bundle
from mmsag_ros.errors import ConfigError
from mmsag_ros.runtime.engine_build import BatchProfile
from mmsag_ros.runtime.engine_cache import engine_key


def test_engine_key_names_gpu_capability_version_precision_and_variant() -> None:
    sha = "0123456789abcdef" * 4
    key = engine_key("NVIDIA GeForce RTX 4090", (8, 9), "10.3.0", "fp16", sha)
    assert key == "nvidia-geforce-rtx-4090_sm89_trt10.3.0_fp16_0123456789ab"
    assert engine_key("Orin", (8, 7), "10.3.0.30", "int8", SHA_A) == (
        "orin_sm87_trt10.3.0.30_int8_aaaaaaaaaaaa"
    )
    assert engine_key("Orin", (8, 7), "10.3.0+cuda12.6", "fp32", SHA_A) == (
        "orin_sm87_trt10.3.0-cuda12.6_fp32_aaaaaaaaaaaa"
    )
    keys = {
        engine_key("Orin", (8, 7), "10.3.0", "fp16", SHA_A),
        engine_key("NVIDIA H100 80GB HBM3", (8, 7), "10.3.0", "fp16", SHA_A),
        engine_key("Orin", (9, 0), "10.3.0", "fp16", SHA_A),
        engine_key("Orin", (8, 7), "10.4.0", "fp16", SHA_A),
        engine_key("Orin", (8, 7), "10.3.0", "fp32", SHA_A),
        engine_key("Orin", (8, 7), "10.3.0", "fp16", SHA_B),  # another variant file
    }
    assert len(keys) == 6


def test_engine_key_reads_the_sha_case_insensitively_and_keeps_12_digits() -> None:
    upper = engine_key(*ORIN, "10.3.0", "fp16", "ABCDEF012345" + "0" * 52)
    assert upper == engine_key(*ORIN, "10.3.0", "fp16", "abcdef012345" + "f" * 52)
    assert upper.endswith("_fp16_abcdef012345")
    assert engine_key(*ORIN, "10.3.0", "fp16", "abcdef012345").endswith("_abcdef012345")


def test_each_variant_of_a_bundle_gets_its_own_key(variant_bundle: Bundle) -> None:
    keys = {
        engine_key(*ORIN, "10.3.0", precision, variant.sha256)
        for precision, variant in variant_bundle.variants.items()
    }
    assert len(keys) == 3
    fp32 = engine_key(*ORIN, "10.3.0", "fp32", variant_bundle.variant("fp32").sha256)
    assert fp32.endswith(variant_bundle.variant("fp32").sha256[:12])
    assert variant_bundle.variant("fp32").sha256 == sha256_file(variant_bundle.onnx_path)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("Orin", (8, 7), "10.3.0", "bf16", SHA_A), r"precision must be one of fp32, fp16, int8"),
        (("Orin", (0, 7), "10.3.0", "fp16", SHA_A), r"invalid compute capability"),
        (("Orin", (8, 7), " ", "fp16", SHA_A), r"trt_version is empty"),
        (("Orin", (8, 7), "10.3.0", "fp16", "xyz" * 10), r"variant_sha256 must be a hex SHA-256"),
        (("Orin", (8, 7), "10.3.0", "fp16", ""), r"variant_sha256 must be a hex SHA-256"),
        (("Orin", (8, 7), "10.3.0", "fp16", "a" * 11), r"variant_sha256 must be a hex SHA-256"),
        (("Orin", (8, 7), "10.3.0", "fp16", "a" * 65), r"variant_sha256 must be a hex SHA-256"),
        (("Orin", (8, 7), "10.3.0", "fp16", "a" * 63 + "g"), r"must be a hex SHA-256"),
    ],
)
def test_engine_key_rejects_bad_parts(args: tuple, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        engine_key(*args)


def test_batch_profile() -> None:
    assert BatchProfile(1, 1, 8).covers(BatchProfile(1, 1, 4))
    assert not BatchProfile(1, 1, 4).covers(BatchProfile(1, 1, 8))
    assert not BatchProfile(1, 4, 8).covers(BatchProfile(1, 1, 8))  # tuned for another batch
    with pytest.raises(ConfigError, match=r"1 <= min <= opt <= max"):
        BatchProfile(2, 1, 8)
