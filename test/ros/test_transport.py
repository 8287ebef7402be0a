"""MultiLabel and 1280x720 rgb8 Image frames cross process boundaries intact over real DDS."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

import pytest
import ros_peer
from support import FASTDDS_PROFILE, REPO, start_python

# Node processes over real DDS: the slow tier.
pytestmark = pytest.mark.slow

PEER = REPO / "test" / "ros_peer.py"
COUNT = 20


def _exchange(kind: str, reliability: str, env: dict[str, str]) -> list[dict]:
    common = ["--kind", kind, "--reliability", reliability, "--count", str(COUNT)]
    subscriber = start_python(PEER, "subscribe", *common, "--timeout-s", "45", env=env)
    publisher = start_python(PEER, "publish", *common, "--timeout-s", "30", env=env)
    try:
        out, err = subscriber.communicate(timeout=90)
    finally:
        publisher.send_signal(signal.SIGINT)
        try:
            # A loaded machine can take a while to wind DDS down; wait for the exit itself.
            _, publisher_err = publisher.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            publisher.send_signal(signal.SIGUSR1)  # where it is stuck, into its stderr
            try:
                _, publisher_err = publisher.communicate(timeout=10)
            except subprocess.TimeoutExpired:
                publisher.kill()
                _, publisher_err = publisher.communicate()
            publisher_err = f"did not exit within 120 s of SIGINT; its threads:\n{publisher_err}"
    assert subscriber.returncode == 0, err
    assert publisher.returncode in (0, -signal.SIGINT), publisher_err
    return json.loads(out.strip().splitlines()[-1])["received"]


def _expected(kind: str, index: int) -> dict:
    make = ros_peer.make_image if kind == "image" else ros_peer.make_labels
    return ros_peer.summarize(make(index))


def _index(summary: dict) -> int:
    return summary["stamp"][0] - 1_700_000_000


@pytest.mark.parametrize("kind", ["image", "labels"])
@pytest.mark.parametrize("reliability", ["best_effort", "reliable"])
def test_messages_cross_processes_intact(kind, reliability, ros_env):
    assert Path(ros_env["FASTDDS_DEFAULT_PROFILES_FILE"]) == FASTDDS_PROFILE
    received = _exchange(kind, reliability, ros_env)

    indices = [_index(s) for s in received]
    if reliability == "reliable":
        assert indices == list(range(COUNT))
    else:
        # Best effort may lose a frame under load, but over shared memory nearly all arrive
        # (without the profile, large frames were lost almost entirely), in order.
        assert len(received) >= COUNT * 0.8, f"only {len(received)} of {COUNT} arrived"
        assert indices == sorted(set(indices))
    for summary in received:
        assert summary == _expected(kind, _index(summary))
