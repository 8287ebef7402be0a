r"""Latency of a running sorter while its model is swapped, beside its steady state, one run.

A bag of real-photo scenes (``mmsag data compose`` output, JPEG frames) loops through a real
sorter process at 30 Hz (``replay_through_sorter``). After ``--steady-s`` seconds the bench
sets the node's ``bundle`` parameter to the second bundle, as ``ros2 param set`` would; the
new model loads and warms up in the background while the first keeps labelling, then takes
over between two batches. The replay goes on for ``--after-s`` seconds after the switch.

Labels are split by when they arrived: steady (before the request, warm-up frames left out),
swapping (request -> first label of the new model: the load and warm-up compete for the
CPU), after (the new model). Reports latency percentiles per phase (frame published ->
label received, and the node's own stamp -> publish figure), the frames the node dropped per
phase, the load time, and checks the model id switches at a single frame.

    mmsag data compose --photos ../shared/data/trashnet --out /tmp/scenes --trainval 40 --test 60
    .venv/bin/python bench/swap_latency.py --bundle /tmp/effl0_a /tmp/effl0_b --data /tmp/scenes
    .venv/bin/python bench/swap_latency.py ... --quick   # short run, results to a temp folder
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results"
FPS = 30.0
WARMUP_LABELS = 30  # first labels left out of the steady figures


def percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"count": 0, "p50": None, "p95": None, "p99": None, "max": None}
    p50, p95, p99 = np.percentile(values, [50, 95, 99])
    return {
        "count": len(values),
        "p50": float(p50),
        "p95": float(p95),
        "p99": float(p99),
        "max": float(np.max(values)),
    }


def measure(args: argparse.Namespace) -> dict[str, Any]:
    from mmsag_ros.bag.make import make_bag
    from mmsag_ros.bundle.manifest import load_bundle
    from mmsag_ros.live.replay import replay_through_sorter
    from mmsag_ros.live.sorter_process import set_replay_parameter

    first, second = (Path(b) for b in args.bundle)
    old_id, new_id = load_bundle(first).model_id, load_bundle(second).model_id
    work = Path(tempfile.mkdtemp(prefix="swap_latency_"))
    bag = work / "bag"
    make_bag(args.data, bag, compressed=True, fps=FPS, split=args.split)
    params = work / "sorter.yaml"
    params.write_text(
        "/**:\n  ros__parameters:\n    image_reliability: reliable\n    image_depth: 10\n"
    )
    stop = threading.Event()
    arrivals: list[float] = []
    marks: dict[str, Any] = {}

    def ask_for_swap() -> None:
        marks["answer"] = set_replay_parameter("bundle", str(second))
        marks["answered_s"] = time.monotonic()

    def on_label(label: Any) -> None:
        now = time.monotonic()
        arrivals.append(now)
        if "start_s" not in marks:
            marks["start_s"] = now
        elif "requested_s" not in marks and now - marks["start_s"] >= args.steady_s:
            marks["requested_s"] = now  # set at once, so this runs only once
            threading.Thread(target=ask_for_swap, daemon=True).start()
        if label.model_id == new_id:
            marks.setdefault("switched_s", now)
            if now - marks["switched_s"] >= args.after_s:
                stop.set()

    watchdog = threading.Timer(args.steady_s + args.after_s + 300.0, stop.set)
    watchdog.start()
    try:
        run = replay_through_sorter(
            bag,
            first,
            backend="onnxruntime",
            precision=args.precision,
            loop=True,
            stop=stop,
            on_label=on_label,
            params_file=params,
        )
    finally:
        watchdog.cancel()
    accepted, reason = marks.get("answer", (False, "no answer"))
    if not accepted or "switched_s" not in marks:
        raise SystemExit(f"the swap did not happen: {reason}")
    return _report(run, marks, arrivals, (old_id, new_id), args)


def _phases(arrivals: list[float], requested: float, switched: float) -> dict[str, list[int]]:
    """Label indices before the request (after the warm-up), during the swap, and after it."""
    phases: dict[str, list[int]] = {"steady": [], "swapping": [], "after": []}
    for index, arrived in enumerate(arrivals):
        if arrived < requested:
            if index >= WARMUP_LABELS:
                phases["steady"].append(index)
        elif arrived < switched:
            phases["swapping"].append(index)
        else:
            phases["after"].append(index)
    return phases


def _report(
    run: Any,
    marks: dict[str, Any],
    arrivals: list[float],
    bundle_ids: tuple[str, str],
    args: argparse.Namespace,
) -> dict[str, Any]:
    """The JSON document: counts, whether the model switched once, latency per phase."""
    old_id, new_id = bundle_ids
    ids = [label.model_id for label in run.labels]
    switch = ids.index(new_id)
    single_switch = set(ids[:switch]) == {old_id} and set(ids[switch:]) == {new_id}
    requested, switched = marks["requested_s"], marks["switched_s"]
    phases = _phases(arrivals, requested, switched)
    labels = run.labels
    node = run.node
    return {
        "bundles": {"first": old_id, "second": new_id},
        "precision": args.precision,
        "fps": FPS,
        "frames_sent": run.sent,
        "labels": len(labels),
        "node": {
            "published": node.published,
            "dropped": node.dropped,
            "rejected": node.rejected,
            "failed": node.failed,
        },
        "not_received": run.not_received,
        "accounted": run.sent
        == len(labels) + node.dropped + node.rejected + node.failed + run.not_received,
        "single_switch": single_switch,
        # From the request, so it includes this client's own start and service discovery.
        "swap_call_s": marks["answered_s"] - requested,
        "request_to_switch_s": switched - requested,
        "phases": {
            name: {
                "end_to_end_ms": percentiles([labels[i].latency_ms for i in indices]),
                "node_ms": percentiles([labels[i].node_latency_ms for i in indices]),
            }
            for name, indices in phases.items()
        },
    }


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}"


def format_table(report: dict[str, Any]) -> str:
    machine = report["machine"]
    lines = [
        f"Model swap on a running sorter at {report['fps']:.0f} Hz, real-photo JPEG scenes, "
        f"ONNX Runtime {report['precision']} ({machine['cpu']}, {machine['usable_cpus']} "
        "usable CPUs)",
        f"{report['bundles']['first']} -> {report['bundles']['second']}: request -> first "
        f"label of the new model {report['request_to_switch_s']:.2f} s",
        f"frames sent {report['frames_sent']}, labelled {report['labels']}, dropped by the node "
        f"{report['node']['dropped']}, not received {report['not_received']}; every frame "
        f"accounted for: {'yes' if report['accounted'] else 'NO'}; model id switches at one "
        f"frame: {'yes' if report['single_switch'] else 'NO'}",
        "",
        f"{'phase':10s} {'labels':>7s} {'p50':>7s} {'p95':>7s} {'p99':>7s} {'max':>7s}"
        f"   node p99  (ms; end to end = frame published -> label received)",
    ]
    for name, phase in report["phases"].items():
        e2e, node = phase["end_to_end_ms"], phase["node_ms"]
        lines.append(
            f"{name:10s} {e2e['count']:7d} {_fmt(e2e['p50']):>7s} {_fmt(e2e['p95']):>7s} "
            f"{_fmt(e2e['p99']):>7s} {_fmt(e2e['max']):>7s}   {_fmt(node['p99']):>8s}"
        )
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bundle", nargs=2, type=Path, required=True, metavar=("FIRST", "NEXT"))
    parser.add_argument("--data", type=Path, required=True, help="VOC dataset for the frames")
    parser.add_argument("--split", default="test")
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--steady-s", type=float, default=30.0)
    parser.add_argument("--after-s", type=float, default=20.0)
    parser.add_argument("--quick", action="store_true", help="5 s phases, temp output")
    parser.add_argument("--out", type=Path, help="JSON path (default bench/results/)")
    args = parser.parse_args()
    if args.quick:
        args.steady_s, args.after_s = 5.0, 5.0
    from mmsag_ros.runtime.bench import machine_info

    report = {"machine": machine_info(), **measure(args)}
    out = args.out or (
        Path(tempfile.mkdtemp(prefix="swap_latency_")) / "swap_latency.json"
        if args.quick
        else RESULTS / "swap_latency.json"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    table = format_table(report)
    out.with_suffix(".txt").write_text(table)
    print(table)
    print(f"written: {out} and {out.with_suffix('.txt')}")
    return 0 if report["accounted"] and report["single_switch"] else 1


if __name__ == "__main__":
    sys.exit(main())
