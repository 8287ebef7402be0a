"""A model swap on a running sorter process fed at 30 Hz over real DDS.

A synthetic-scene bag loops through a real sorter node (``replay_through_sorter``); after the
first labels, the test sets the node's ``bundle`` parameter through its parameter service
(``set_replay_parameter``, as ``ros2 param set`` does), and keeps the frames coming until the
new model has labelled some. Every wait is for a condition (a label count, the service's answer).
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import yaml
from runtime.runtime_helpers import make_bundle

from mmsag_ros.bag.make import make_bag
from mmsag_ros.bundle.manifest import load_bundle
from mmsag_ros.data.synth import generate_dataset
from mmsag_ros.live.replay import replay_through_sorter
from mmsag_ros.live.results import LiveLabel
from mmsag_ros.live.sorter_process import set_replay_parameter

FPS = 30.0
SWAP_AFTER = 5  # labels of the first model before the swap is asked for
NEW_LABELS = 15  # labels of the new model before the replay stops
WAIT_S = 300.0  # only reached when something is broken


# This process's rclpy contexts and the node process share the test's own domain.
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("ros_domain")]


@pytest.fixture(scope="module")
def bundles(tmp_path_factory) -> tuple[Path, Path]:
    """Two models of the same classes (other weights, so other model ids)."""
    root = tmp_path_factory.mktemp("swap")
    return make_bundle(root / "first", seed=2), make_bundle(root / "second", seed=3)


def test_a_swap_under_a_30_hz_stream_switches_the_model_at_one_frame(bundles, tmp_path):
    first, second = bundles
    old_id, new_id = load_bundle(first).model_id, load_bundle(second).model_id
    assert old_id != new_id
    data = tmp_path / "data"
    generate_dataset(data, num_trainval=1, num_test=30, image_size=(160, 120), seed=4)
    bag = tmp_path / "bag"
    make_bag(data, bag, compressed=True, fps=FPS)
    # Reliable input, so every frame sent reaches the node's ledger: the node may still drop
    # one for a newer one (latest-frame policy), but it counts it.
    params = tmp_path / "sorter.yaml"
    qos = {"image_reliability": "reliable", "image_depth": 10}
    params.write_text(yaml.safe_dump({"/**": {"ros__parameters": qos}}))

    stop = threading.Event()
    seen: list[str] = []
    answer: dict[str, object] = {}

    def ask_for_swap() -> None:
        answer["accepted"], answer["reason"] = set_replay_parameter("bundle", str(second))
        if not answer["accepted"]:
            stop.set()

    def on_label(label: LiveLabel) -> None:
        seen.append(label.model_id)
        if len(seen) == SWAP_AFTER:
            threading.Thread(target=ask_for_swap, daemon=True).start()
        if seen.count(new_id) >= NEW_LABELS:
            stop.set()

    watchdog = threading.Timer(WAIT_S, stop.set)
    watchdog.start()
    try:
        run = replay_through_sorter(
            bag, first, backend="onnxruntime", loop=True, stop=stop, on_label=on_label,
            params_file=params,
        )  # fmt: skip
    finally:
        watchdog.cancel()
    assert answer["accepted"], answer["reason"]
    # Every frame sent is labelled or counted by the node, none twice.
    node = run.node
    assert run.complete and run.stray_labels == 0 and len(run.labels) == node.published
    assert run.sent == (
        len(run.labels) + node.dropped + node.rejected + node.failed + run.not_received
    )
    assert node.rejected == node.failed == 0
    # The old model labels up to one frame, the new one from the next on: one switch.
    ids = [label.model_id for label in run.labels]
    switch = ids.index(new_id)
    assert switch >= SWAP_AFTER
    assert set(ids[:switch]) == {old_id} and set(ids[switch:]) == {new_id}
    assert ids.count(new_id) >= NEW_LABELS and run.model_id == new_id
