"""Sorter node vs a plain per-callback node: end-to-end latency, backlog and memory, one run.

Every case runs the node under test in its own process and a camera-and-receiver peer
(``bench/node_peers.py``) in another, over the shipped shared-memory Fast DDS profile
(``config/fastdds_shm.xml``), with 1280x720 rgb8 frames:

1. ``mmsag_effl0_224`` at 30 Hz: end-to-end latency (publish stamp -> MultiLabel receipt) and
   its stages. The sorter runs through ``bench/sorter_timed.py`` (the shipped node plus
   timestamp hooks) for the breakdown, and once more unhooked as a control.
2. An untrained ``mmsag_r50_448`` (slower than the frame period) at 30 Hz for 60 s: p99 latency
   against 2 x (inference + frame period), and dropped frames.
3. The sorter (effl0) fed >= 10 000 camera frames as fast as the camera loop goes (capped):
   VmRSS of the node process sampled from /proc.

Cases 1 and 2 also run ``bench/baseline_node.py`` (default QoS depth 10, per-frame array copy,
inference in the callback). Prints a table, writes JSON, the table as text and histograms.

    .venv/bin/python bench/node_latency.py            # full run (~6 min)
    .venv/bin/python bench/node_latency.py --quick    # smoke run, results to a temp folder
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from mmsag_ros.live.sorter_process import SORTER_PROGRAM, SorterProcess

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
RESULTS = BENCH / "results"
EFFL0_BUNDLE = Path("/tmp/bundle_effl0")

sys.path.insert(0, str(BENCH))

from node_latency_report import (  # noqa: E402
    PERIOD_MS,
    WARMUP_FRAMES,
    breakdown,
    format_table,
    latency_summary,
    rss_summary,
    stats,
    warmup_count,
)


def ros_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        ROS_DOMAIN_ID=str(random.Random().randint(120, 200)),
        ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
        AMENT_PREFIX_PATH=sys.prefix,
        FASTDDS_DEFAULT_PROFILES_FILE=str(REPO / "config" / "fastdds_shm.xml"),
        PYTHONPATH=os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep),
        PYTHONUNBUFFERED="1",
    )
    return env


def vm_rss_kib(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def node_process(
    kind: str,
    bundle: Path,
    timing: Path | None,
    extra: tuple[str, ...],
    *,
    env: dict[str, str],
    log: Path,
) -> SorterProcess:
    """The (unstarted) node of one case: the baseline node, or the sorter (timed or not)."""
    if kind == "baseline":
        program = [str(BENCH / "baseline_node.py"), "--bundle", str(bundle)]
        program += ["--timing-out", str(timing)] if timing else []
        return SorterProcess(program=program, env=env, log=log, cwd=REPO)
    params = [f"bundle:={bundle}", "backend:=onnxruntime", "autostart:=true", *extra]
    if timing is not None:
        program = (str(BENCH / "sorter_timed.py"), "--out", str(timing))
    else:
        program = SORTER_PROGRAM
    return SorterProcess(
        dict(param.split(":=", 1) for param in params),
        params_files=[REPO / "config" / "sorter.yaml"],
        program=program,
        env=env,
        log=log,
        cwd=REPO,
    )


def run_case(
    name: str,
    kind: str,
    bundle: Path,
    *,
    rate_hz: float,
    count: int,
    work: Path,
    timed: bool = False,
    records: bool = False,
    params: tuple[str, ...] = (),
) -> dict[str, Any]:
    """Start the node and the peer, sample the node's RSS until the peer ends, collect.

    ``params`` are extra sorter parameters (``name:=value``), e.g. ``precision:=int8``.
    """
    env = ros_env()
    timing = work / f"{name}_timing.json" if timed else None
    peer_out = work / f"{name}_peer.json"
    print(
        f"[{time.strftime('%H:%M:%S')}] {name}: {kind}, {count} frames at {rate_hz:g} Hz",
        flush=True,
    )
    node = node_process(kind, bundle, timing, params, env=env, log=work / f"{name}_node.log")
    node.start()
    peer_args = [
        sys.executable,
        str(BENCH / "node_peers.py"),
        "--rate-hz",
        str(rate_hz),
        "--count",
        str(count),
        "--connect-timeout-s",
        "90",
        "--out",
        str(peer_out),
    ]
    peer_log = (work / f"{name}_peer.log").open("w")
    peer = subprocess.Popen(
        peer_args + (["--records"] if records or timed else []),
        env=env,
        cwd=REPO,
        stdout=peer_log,
        stderr=peer_log,
    )
    rss: list[tuple[float, int]] = []
    started = time.monotonic()
    while peer.poll() is None:
        value = vm_rss_kib(node.pid)
        if value is not None:
            rss.append((time.monotonic() - started, value))
        time.sleep(0.25)
    node_alive = node.poll() is None
    node.stop(timeout_s=30)
    peer_log.close()
    if peer.returncode != 0 or not peer_out.exists():
        log = (work / f"{name}_peer.log").read_text()[-2000:]
        nlog = (work / f"{name}_node.log").read_text()[-2000:]
        raise RuntimeError(f"{name}: peer failed ({peer.returncode}):\n{log}\nnode:\n{nlog}")
    result = json.loads(peer_out.read_text())
    result["node_alive_at_end"] = node_alive
    result["rss_kib"] = rss
    if timing is not None:
        if not timing.exists():
            raise RuntimeError(f"{name}: the node wrote no timings (log: {node.log})")
        result["timing"] = json.loads(timing.read_text())
    return result


def offline_stages(bundle: Path, *, iterations: int) -> dict[str, Any]:
    """Conversion and preprocessing of one 1280x720 rgb8 frame, timed in this process."""
    from node_peers import _frame

    from mmsag_ros.bundle.manifest import load_bundle
    from mmsag_ros.bundle.preprocess import preprocess
    from mmsag_ros.camera.encodings import image_to_array
    from mmsag_ros.ros.conversions import array_to_image

    spec = load_bundle(bundle).spec
    msg = array_to_image(_frame(1280, 720), "rgb8")
    out = np.empty((3, spec.input_size, spec.input_size), np.float32)
    timers: dict[str, list[float]] = {"view": [], "copy": [], "preprocess": []}
    for _ in range(iterations):
        t0 = time.perf_counter()
        image = image_to_array(msg)
        t1 = time.perf_counter()
        np.array(msg.data, dtype=np.uint8).reshape(720, 1280, 3)
        t2 = time.perf_counter()
        preprocess(image, spec, color_order="rgb", out=out)
        t3 = time.perf_counter()
        timers["view"].append(1000 * (t1 - t0))
        timers["copy"].append(1000 * (t2 - t1))
        timers["preprocess"].append(1000 * (t3 - t2))
    return {
        "input_size": spec.input_size,
        "resize": spec.resize,
        **{k: stats(v) for k, v in timers.items()},
    }


def build_r50(work: Path) -> Path:
    from runtime_latency import build_bundle

    if (work / "mmsag_r50_448" / "manifest.json").exists():  # kept from an earlier --keep-work
        return work / "mmsag_r50_448"
    bundle, _ = build_bundle("mmsag_r50_448", work)
    return bundle


def effl0_bundle(work: Path) -> tuple[Path, str]:
    if (EFFL0_BUNDLE / "manifest.json").exists():
        return EFFL0_BUNDLE, f"trained bundle {EFFL0_BUNDLE}"
    from runtime_latency import build_bundle

    bundle, _ = build_bundle("mmsag_effl0_224", work)
    return bundle, "untrained export (no /tmp/bundle_effl0)"


def _summarise(raw: dict[str, dict[str, Any]], report: dict[str, Any]) -> None:
    """Each case's latency summary and breakdown, the backlog bound of S2, S3's memory."""
    for key, result in raw.items():
        report["cases"][key] = latency_summary(result)
        if "timing" in result:
            report["breakdown"][key] = breakdown(result)
    for key in ("s2_sorter", "s2_baseline"):
        case = report["cases"][key]
        bound = 2.0 * (case["inference_ms"]["p50"] + PERIOD_MS)
        case["p99_bound_ms"] = bound
        case["no_backlog"] = bool(case["e2e_ms"]["p99"] < bound)
    s3 = raw["s3_sorter"]
    # Warm-up: node start and model load, then the first 10 % of the camera's frames. The
    # camera starts camera_s + the peer's 3 s drain before the last sample.
    total_s = s3["rss_kib"][-1][0] if s3["rss_kib"] else 0.0
    warmup_s = total_s - 3.0 - 0.9 * s3["camera_s"]
    report["memory"] = rss_summary(s3, warmup_s=warmup_s)


def _histograms(raw: dict[str, dict[str, Any]], machine: str, out_dir: Path) -> None:
    from mmsag_ros.report import plot_latency_histogram

    for key, label in (
        ("s1_sorter", "sorter, effl0 30 Hz"),
        ("s2_sorter", "sorter, r50 untrained 30 Hz"),
        ("s2_baseline", "baseline, r50 untrained 30 Hz"),
    ):
        e2e = raw[key]["e2e_ms"][warmup_count(raw[key]) :]
        plot_latency_histogram(
            e2e,
            out_dir / f"node_latency_{key}.png",
            title=f"e2e 1280x720 {label}, {machine} 2 CPUs",
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short smoke run")
    parser.add_argument("--s1-frames", type=int, default=600)
    parser.add_argument("--s2-seconds", type=float, default=60.0)
    parser.add_argument("--s3-frames", type=int, default=10_000)
    parser.add_argument("--s3-rate-hz", type=float, default=150.0)
    parser.add_argument("--out-dir", type=Path)
    parser.add_argument("--keep-work", help="folder for logs and raw peer output (kept)")
    args = parser.parse_args()
    if args.quick:
        args.s1_frames, args.s2_seconds, args.s3_frames = 60, 3.0, 300
    out_dir = args.out_dir or (
        Path(tempfile.mkdtemp(prefix="node_latency_")) if args.quick else RESULTS
    )
    out_dir.mkdir(parents=True, exist_ok=True)

    from mmsag_ros.runtime.bench import machine_info

    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="mmsag_node_bench_") as tmp:
        work = Path(args.keep_work) if args.keep_work else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        effl0, effl0_note = effl0_bundle(work)
        r50 = build_r50(work)
        report: dict[str, Any] = {
            "machine": machine_info(),
            "settings": {
                **{k: str(v) for k, v in vars(args).items()},
                "effl0": effl0_note,
                "r50": "untrained export",
                "warmup_frames": WARMUP_FRAMES,
            },
            "cases": {},
            "breakdown": {},
        }
        report["offline_stages"] = offline_stages(effl0, iterations=10 if args.quick else 100)
        raw: dict[str, dict[str, Any]] = {}
        s1 = {"rate_hz": 30.0, "count": args.s1_frames, "work": work}
        raw["s1_sorter_timed"] = run_case("s1_sorter_timed", "sorter", effl0, timed=True, **s1)
        raw["s1_baseline"] = run_case("s1_baseline", "baseline", effl0, timed=True, **s1)
        raw["s1_sorter"] = run_case("s1_sorter", "sorter", effl0, **s1)
        s2 = {"rate_hz": 30.0, "count": int(30 * args.s2_seconds), "work": work}
        raw["s2_sorter"] = run_case("s2_sorter", "sorter", r50, **s2)
        raw["s2_baseline"] = run_case("s2_baseline", "baseline", r50, **s2)
        raw["s3_sorter"] = run_case(
            "s3_sorter", "sorter", effl0, rate_hz=args.s3_rate_hz, count=args.s3_frames, work=work
        )
        _summarise(raw, report)
        _histograms(raw, report["machine"]["cpu"], out_dir)
        report["wall_s"] = time.monotonic() - started
    table = format_table(report)
    print(table)
    print(f"total wall time {report['wall_s']:.0f} s")
    (out_dir / "node_latency.txt").write_text(table + "\n")
    (out_dir / "node_latency.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out_dir}/node_latency.{{txt,json}} and histograms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
