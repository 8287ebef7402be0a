"""The numbers of ``bench/node_latency.py``: per-case summaries, the stage breakdown, the table.

Pure functions of the cases' raw results (labels, stamps, the timed sorter's per-frame
records, memory samples), kept apart from the processes that produce them.
"""

from __future__ import annotations

from typing import Any

import numpy as np

PERIOD_MS = 1000.0 / 30.0
WARMUP_FRAMES = 30  # first frames of a case left out of latency statistics


def stats(values: Any) -> dict[str, float]:
    arr = np.asarray(values, dtype=np.float64)
    if arr.size == 0:
        return {"n": 0}
    p50, p95, p99 = np.percentile(arr, [50, 95, 99])
    return {
        "n": int(arr.size),
        "p50": float(p50),
        "p95": float(p95),
        "p99": float(p99),
        "mean": float(arr.mean()),
        "max": float(arr.max()),
    }


def breakdown(result: dict[str, Any]) -> dict[str, Any]:
    """Per-frame stages joined on the frame index (peer clock == node clock: one host)."""
    timing = result.get("timing", {})
    frames = timing.get("frames", {})
    rows: dict[str, list[float]] = {
        k: []
        for k in (
            "transport_in",
            "slot_wait",
            "conversion",
            "preprocess",
            "inference",
            "postprocess",
            "publish_call",
            "delivery",
            "other",
            "node_beyond_inference",
            "e2e",
        )
    }
    for index, stamp, receipt in zip(
        result["indices"], result["stamp_ns"], result["receipt_ns"], strict=True
    ):
        if index < WARMUP_FRAMES:
            continue
        rec = frames.get(str(index))
        if not rec or "publish_in_ns" not in rec or "callback_ns" not in rec:
            continue
        e2e = (receipt - stamp) / 1e6
        transport = (rec["callback_ns"] - stamp) / 1e6
        taken = rec.get("taken_ns", rec["callback_ns"])
        slot = (taken - rec["callback_ns"]) / 1e6
        publish_call = (rec["publish_out_ns"] - rec["publish_in_ns"]) / 1e6
        delivery = (receipt - rec["publish_out_ns"]) / 1e6
        publish = publish_call + delivery
        inner = [rec.get(k, 0.0) for k in ("decode_ms", "preprocess_ms", "inference_ms")]
        inner.append(rec.get("postprocess_ms", 0.0))
        other = e2e - transport - slot - sum(inner) - publish
        in_node = (rec["publish_out_ns"] - rec["callback_ns"]) / 1e6
        for key, value in zip(
            rows,
            (
                transport,
                slot,
                *inner,
                publish_call,
                delivery,
                other,
                in_node - rec.get("inference_ms", 0.0),
                e2e,
            ),
            strict=True,
        ):
            rows[key].append(value)
    return {
        "stages_ms": {k: stats(v) for k, v in rows.items()},
        "notes": timing.get("notes", []),
    }


def warmup_count(result: dict[str, Any]) -> int:
    """Labels left out at the start (fewer on short smoke runs)."""
    labels = len(result["e2e_ms"])
    return WARMUP_FRAMES if labels > 3 * WARMUP_FRAMES else labels // 4


def latency_summary(result: dict[str, Any]) -> dict[str, Any]:
    skip = warmup_count(result)
    e2e = np.asarray(result["e2e_ms"])[skip:]
    node_ms = np.asarray(result["node_latency_ms"])[skip:]
    infer = np.asarray(result["inference_ms"])[skip:]
    diag = result["diagnostics"][-1] if result["diagnostics"] else {}
    return {
        "published": result["published"],
        "camera_rate_hz": result["camera_rate_hz"],
        "labels": result["labels"],
        "not_labelled": result["published"] - result["labels"],
        "diag_dropped": int(diag["dropped"]) if "dropped" in diag else None,
        "diag_received": int(diag["received"]) if "received" in diag else None,
        "e2e_ms": stats(e2e),
        "node_stamp_to_publish_ms": stats(node_ms),
        "inference_ms": stats(infer),
        "label_out_ms": stats(e2e - node_ms),
        "node_alive_at_end": result["node_alive_at_end"],
    }


def rss_summary(result: dict[str, Any], *, warmup_s: float) -> dict[str, Any]:
    samples = result["rss_kib"]
    after = [(t, kib) for t, kib in samples if t >= warmup_s]
    if not after:
        return {"samples": 0}
    values = np.array([kib for _, kib in after], np.float64) / 1024.0
    start, end = values[0], values[-1]
    return {
        "samples": int(values.size),
        "warmup_s": warmup_s,
        "start_mib": float(start),
        "end_mib": float(end),
        "min_mib": float(values.min()),
        "max_mib": float(values.max()),
        "max_dev_pct": float(100.0 * np.abs(values - start).max() / start),
        "end_vs_start_pct": float(100.0 * (end - start) / start),
        "flat_5pct": bool(np.abs(values - start).max() <= 0.05 * start),
        "series_mib": [[round(t, 2), round(kib / 1024.0, 2)] for t, kib in samples],
    }


def fmt(s: dict[str, float], key: str = "p50") -> str:
    return f"{s[key]:8.1f}" if s.get("n") else "     n/a"


def format_table(report: dict[str, Any]) -> str:
    m = report["machine"]
    lines = [
        "Sorter node vs per-callback baseline, 1280x720 rgb8 over the Fast DDS SHM profile",
        f"machine: {m['cpu']}, {m['usable_cpus']} usable CPUs, no GPU ({m['platform']}); "
        f"backend onnxruntime CPU",
        "",
        "1) mmsag_effl0_224 at 30 Hz: end-to-end ms (publish stamp -> MultiLabel receipt)",
        f"   {'case':<26}{'p50':>8}{'p95':>8}{'p99':>8}{'max':>8}  labels/published",
    ]
    for key in ("s1_sorter_timed", "s1_sorter", "s1_baseline"):
        s = report["cases"][key]
        e = s["e2e_ms"]
        lines.append(
            f"   {key:<26}{fmt(e)}{fmt(e, 'p95')}{fmt(e, 'p99')}{fmt(e, 'max')}"
            f"  {s['labels']}/{s['published']}"
        )
    lines += ["", "   stage breakdown, p50 / p95 ms (per-frame, joined on frame index)"]
    lines.append(f"   {'stage':<30}{'sorter':>18}{'baseline':>18}")
    sb, bb = report["breakdown"]["s1_sorter_timed"], report["breakdown"]["s1_baseline"]
    names = {
        "transport_in": "transport+queue (pub->callback)",
        "slot_wait": "slot wait (callback->worker)",
        "conversion": "conversion (msg->array)",
        "preprocess": "preprocessing",
        "inference": "inference",
        "postprocess": "postprocess (scores, peaks)",
        "publish_call": "publish: build msg + publish()",
        "delivery": "publish() return -> receipt",
        "other": "other (unaccounted)",
        "node_beyond_inference": "node cost beyond inference",
        "e2e": "end to end",
    }
    for key, label in names.items():
        a, b = sb["stages_ms"][key], bb["stages_ms"][key]
        lines.append(f"   {label:<30}{fmt(a)} /{fmt(a, 'p95')}{fmt(b)} /{fmt(b, 'p95')}")
    off = report["offline_stages"]
    lines.append(
        f"   (same frame in the bench process: zero-copy view {off['view']['p50']:.3f} ms, "
        f"per-frame copy {off['copy']['p50']:.2f} ms, preprocess -> {off['input_size']} px "
        f"{off['preprocess']['p50']:.2f} ms, p50)"
    )
    verdict = sb["stages_ms"]["node_beyond_inference"]
    if verdict.get("n"):
        lines.append(
            f"   node cost beyond inference p50 {verdict['p50']:.2f} ms "
            f"(target <= 3 ms: {'met' if verdict['p50'] <= 3.0 else 'NOT met'})"
        )
    lines += ["", "2) untrained mmsag_r50_448 at 30 Hz, 60 s: end-to-end ms"]
    lines.append(
        f"   {'case':<14}{'infer p50':>10}{'p50':>8}{'p95':>8}{'p99':>8}{'bound':>8}  verdict"
        "   labels/published  dropped"
    )
    for key in ("s2_sorter", "s2_baseline"):
        s = report["cases"][key]
        e, inf = s["e2e_ms"], s["inference_ms"]
        bound = s["p99_bound_ms"]
        ok = "ok" if s["no_backlog"] else "BACKLOG"
        dropped = s["diag_dropped"] if s["diag_dropped"] is not None else s["not_labelled"]
        lines.append(
            f"   {key:<14}{fmt(inf)}  {fmt(e)}{fmt(e, 'p95')}{fmt(e, 'p99')}{bound:8.1f}  "
            f"{ok:<8}  {s['labels']:>6}/{s['published']:<6}  {dropped}"
        )
    r = report["memory"]
    s3 = report["cases"]["s3_sorter"]
    lines += [
        "",
        f"3) sorter RSS over {s3['published']} camera frames at {s3['camera_rate_hz']:.0f} Hz "
        f"({s3['labels']} labelled, {s3['diag_dropped']} dropped by the latest-frame policy, "
        f"{s3['published'] - (s3['diag_received'] or 0)} never reached the callback: "
        "best-effort keep-last-1 reader)",
        f"   after {r.get('warmup_s', 0):.0f} s warm-up: start {r.get('start_mib', 0):.1f} MiB, "
        f"end {r.get('end_mib', 0):.1f}, min {r.get('min_mib', 0):.1f}, max "
        f"{r.get('max_mib', 0):.1f} (max deviation {r.get('max_dev_pct', 0):.2f} %, "
        f"{'flat within 5 %' if r.get('flat_5pct') else 'NOT flat'}; "
        f"{r.get('samples', 0)} samples)",
    ]
    return "\n".join(lines)
