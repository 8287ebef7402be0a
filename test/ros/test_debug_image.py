"""The sorter's optional debug overlay as a real process: drawn only while someone subscribes.

The node runs with ``debug_image:=true``; the peer (``test/sorter_peer.py debug``) first sends
frames with no ``debug_image`` subscriber, then subscribes and sends more. Each overlay it
receives is compared with the offline overlay of the same frame.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import sorter_peer
import yaml
from runtime.runtime_helpers import make_bundle
from support import REPO, start_python, start_sorter

from mmsag_ros.ros.conversions import jpeg_image
from mmsag_ros.ros.params import SorterParams
from mmsag_ros.runtime.classifier import Classifier
from mmsag_ros.runtime.overlay import draw_overlay

PEER = REPO / "test" / "sorter_peer.py"
COUNT = 3
ORDERS = {"rgb8": "rgb", "bgr8": "bgr", "mono8": "mono", "rgba8": "rgba", "bgra8": "bgra"}


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory) -> Path:
    return make_bundle(tmp_path_factory.mktemp("debug") / "tiny", seed=0)


def test_debug_image_is_off_by_default():
    # Its topic is the relative "debug_image", so launch's namespace places it (see
    # test_launch_args.py): /waste/debug_image by default.
    values = yaml.safe_load((REPO / "config/sorter.yaml").read_text())["/**"]["ros__parameters"]
    assert values["debug_image"] is False
    assert SorterParams(bundle="/b").debug_image is False


@pytest.mark.slow  # a sorter node process
@pytest.mark.parametrize("fmt", ["raw", "jpeg"])
def test_overlay_is_published_only_while_someone_subscribes(bundle_dir, ros_env, tmp_path, fmt):
    node = start_sorter(
        ros_env,
        f"bundle:={bundle_dir}",
        "autostart:=true",
        "debug_image:=true",
        f"debug_image_format:={fmt}",
        "diagnostics_period_s:=0.3",
    )
    jpeg = ["--jpeg"] if fmt == "jpeg" else []
    try:
        peer = start_python(
            PEER, "debug", "--count", str(COUNT), "--out-dir", str(tmp_path), *jpeg, env=ros_env
        )
        out, err = peer.communicate(timeout=600)
        assert peer.returncode == 0, err
        result = json.loads(out.strip().splitlines()[-1])
        assert node.poll() is None, "the node died"
    finally:
        node_err = node.stop()
    # Without a subscriber every frame got its label and not one overlay was drawn.
    assert int(result["unwatched"]["published"]) >= COUNT, node_err
    assert result["unwatched"]["debug_images_published"] == "0"
    # With one, every frame got its overlay, and the counter says so.
    watched = list(range(COUNT, 2 * COUNT))
    assert sorted(int(i) for i in result["images"]) == watched, node_err
    assert int(result["watched"]["debug_images_published"]) == COUNT
    with Classifier(bundle_dir, backend="onnxruntime", device="cpu") as classifier:
        for index in watched:
            frame, encoding = sorter_peer.make_frame(index)
            info = result["images"][str(index)]
            label = result["labels"][str(index)]
            # The source header, the source size, bgr8.
            assert info["frame_id"] == label["frame_id"] == f"image_optical/{index}"
            assert info["stamp"] == label["stamp"] and info["stamp"][0] > 0
            assert info["size"] == [frame.shape[1], frame.shape[0]]
            assert info["encoding"] == ("jpeg" if jpeg else "bgr8")
            received = np.load(tmp_path / f"{index}.npy")
            prediction = classifier.classify_one(frame, ORDERS[encoding])
            expected = draw_overlay(
                frame,
                prediction,
                names=classifier.labels.display_names,
                spec=classifier.spec,
                color_order=ORDERS[encoding],
            )
            if jpeg:  # what the node sends: the same overlay through the same encoder
                data = np.frombuffer(bytes(jpeg_image(expected).data), np.uint8)
                expected = cv2.imdecode(data, cv2.IMREAD_COLOR)
            assert received.shape == expected.shape
            diff = np.abs(received.astype(int) - expected.astype(int))
            assert diff.mean() < 0.5, (index, diff.mean())
