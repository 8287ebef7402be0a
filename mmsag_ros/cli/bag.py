"""``mmsag bag``: make a bag from a dataset split, replay a bag, evaluate a bundle on a bag."""

from __future__ import annotations

import argparse
import itertools
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from mmsag_ros.bag.writer import STORAGES

if TYPE_CHECKING:
    import numpy as np

    from mmsag_ros.live.results import LiveLabel

__all__ = ["add_arguments", "run"]

DEFAULT_GT_TOPIC = "/waste/labels_gt"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the sub-commands ``make``, ``play``, ``eval`` and ``export-frames``."""
    actions = parser.add_subparsers(dest="bag_action", metavar="ACTION", required=True)
    _add_make(actions)
    _add_play(actions)
    _add_eval(actions)
    _add_export_frames(actions)


def _add_make(actions: argparse._SubParsersAction) -> None:
    """``bag make``: a dataset split written as a bag of frames and truth."""
    make = actions.add_parser(
        "make", allow_abbrev=False, help="write a dataset split as frames + ground truth"
    )
    make.add_argument("--data", type=Path, required=True, help="VOC root of the dataset")
    make.add_argument("--out", type=Path, required=True, help="new bag folder (never overwritten)")
    make.add_argument("--split", default="test", help="image set to write (default: test)")
    make.add_argument("--storage", choices=STORAGES, default="mcap")
    make.add_argument("--fps", type=float, default=10.0, help="frame rate of the stamps")
    make.add_argument("--compressed", action="store_true", help="JPEG CompressedImage frames")
    make.add_argument("--topic", help="frame topic (default /camera/image_raw[/compressed])")
    make.add_argument("--gt-topic", default=DEFAULT_GT_TOPIC, help="ground-truth topic")
    make.add_argument("--frame-id", default="camera_optical_frame", help="header.frame_id")


def _add_play(actions: argparse._SubParsersAction) -> None:
    """``bag play``: a bag's image topics published with their recorded timing."""
    play = actions.add_parser(
        "play", allow_abbrev=False, help="publish a bag's image topics with recorded timing"
    )
    play.add_argument("bag", type=Path, help="rosbag2 folder or .mcap/.db3 file")
    play.add_argument("--rate", type=float, default=1.0, help="speed factor (default 1.0)")
    play.add_argument("--loop", action="store_true", help="start over at the end (Ctrl-C stops)")
    play.add_argument("--topics", nargs="+", help="image topics to publish (default: all)")
    play.add_argument(
        "--restamp",
        action="store_true",
        help="stamp each frame with the time it is published (frame_id unchanged), so a "
        "node's latency_ms measures the node, not the bag's age",
    )
    play.add_argument(
        "--clock",
        type=float,
        nargs="?",
        const=40.0,
        default=0.0,
        metavar="HZ",
        help="publish the recorded time on /clock (default 40 Hz when given), for nodes "
        "started with use_sim_time",
    )
    play.add_argument(
        "--wait-for-subscribers",
        type=float,
        default=2.0,
        metavar="SECONDS",
        help="wait up to this long for subscribers before publishing (default 2)",
    )


def _add_eval(actions: argparse._SubParsersAction) -> None:
    """``bag eval``: a bundle scored on a bag's frames, in-process or live."""
    evaluate = actions.add_parser(
        "eval",
        allow_abbrev=False,
        help="score a bundle on a bag's frames; without ground truth, label them",
        description="Score a bundle on a bag's frames against ground truth. A bag without "
        "ground truth on /waste/labels_gt (and no --gt-topic or --gt-csv given) is labelled "
        "instead: predictions.csv (the --gt-csv layout, to correct and evaluate against), "
        "scores.csv, a labels bag and contact_sheet.png.",
    )
    evaluate.add_argument("bag", type=Path, help="rosbag2 folder or .mcap/.db3 file")
    evaluate.add_argument("--bundle", type=Path, required=True, help="exported bundle folder")
    truth = evaluate.add_mutually_exclusive_group()
    truth.add_argument(
        "--gt-topic", help=f"in-bag ground truth (default {DEFAULT_GT_TOPIC}, if the bag has it)"
    )
    truth.add_argument(
        "--gt-csv", type=Path, help="stamp_ns[,frame_id],<class>... ground-truth table"
    )
    evaluate.add_argument("--topics", nargs="+", help="image topics to score (default: all)")
    evaluate.add_argument("--out", type=Path, help="report folder (default: <bag>_eval)")
    evaluate.add_argument(
        "--backend", help="auto, onnxruntime, torch, tensorrt (default: auto, or the node's file)"
    )
    evaluate.add_argument(
        "--device", help="cpu, cuda, cuda:N or auto (default: cpu, or the node's file)"
    )
    evaluate.add_argument(
        "--precision", help="bundle variant fp32, fp16 or int8 (default: fp32, or the node's file)"
    )
    evaluate.add_argument("--batch-size", type=int, default=8, help="offline frames per call")
    evaluate.add_argument(
        "--boxes",
        type=Path,
        metavar="VOC_ROOT",
        help="dataset with the frames' boxes, to score the attention peaks (default: the one "
        "`mmsag bag make` recorded in the bag)",
    )

    live = evaluate.add_argument_group(
        "live mode", "replay the bag through a sorter node process instead of scoring in-process"
    )
    live.add_argument("--live", action="store_true", help="start a sorter node and replay into it")
    live.add_argument("--rate", type=float, default=1.0, help="replay speed factor (default 1.0)")
    live.add_argument("--record", type=Path, help="also write the node's labels to this new bag")
    live.add_argument(
        "--sorter-params",
        type=Path,
        metavar="YAML",
        help="the cell's sorter parameter file (thresholds, batch, QoS, rate cap) to replay with",
    )
    live.add_argument("--quiet", action="store_true", help="do not print each label as it arrives")


def _add_export_frames(actions: argparse._SubParsersAction) -> None:
    """``bag export-frames``: capture bags turned into images and a CSV."""
    export = actions.add_parser(
        "export-frames",
        allow_abbrev=False,
        help="capture bags -> images and a CSV of the model's decisions, to correct and train on",
    )
    export.add_argument("bags", type=Path, nargs="+", help="bags with frames and MultiLabel")
    export.add_argument("--out", type=Path, required=True, help="new labelling folder")
    export.add_argument(
        "--labels-topic", default="/waste/labels", help="MultiLabel topic (default /waste/labels)"
    )


@contextmanager
def _stop_on_sigint() -> Iterator[threading.Event]:
    """An event Ctrl-C sets (instead of raising), so a replay can end cleanly and report."""
    stop = threading.Event()
    previous = signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        yield stop
    finally:
        signal.signal(signal.SIGINT, previous)


def _make(args: argparse.Namespace) -> int:
    from mmsag_ros.bag.make import make_bag

    summary = make_bag(
        args.data,
        args.out,
        split=args.split,
        storage=args.storage,
        fps=args.fps,
        compressed=args.compressed,
        topic=args.topic,
        gt_topic=args.gt_topic,
        frame_id=args.frame_id,
    )
    print(
        f"wrote {summary.frames} frames on {summary.image_topic} and ground truth on "
        f"{summary.gt_topic} to {summary.path}"
    )
    return 0


def _play(args: argparse.Namespace) -> int:
    from mmsag_ros.live.play import play_bag

    with _stop_on_sigint() as stop:
        summary = play_bag(
            args.bag,
            rate=args.rate,
            loop=args.loop,
            topics=args.topics,
            wait_for_subscribers_s=args.wait_for_subscribers,
            stop=stop,
            restamp=args.restamp,
            clock_hz=args.clock,
        )
    topics = ", ".join(f"{topic}: {count}" for topic, count in sorted(summary.published.items()))
    ending = "interrupted" if summary.interrupted else "done"
    print(f"{ending}: published {summary.total} messages ({topics or 'none'})")
    return 0


def _has_ground_truth(bag: Path, topic: str) -> bool:
    from mmsag_ros.bag.frames import MULTILABEL_TYPE, open_bag

    with open_bag(bag) as reader:
        return any(c.topic == topic and c.msgtype == MULTILABEL_TYPE for c in reader.connections)


def _label(args: argparse.Namespace, out_dir: Path) -> int:
    from mmsag_ros.bag.label import label_bag, write_bag_labelling
    from mmsag_ros.errors import ConfigError

    if args.live or args.boxes:
        raise ConfigError(
            f"bag {args.bag} has no ground truth on {DEFAULT_GT_TOPIC}, so it is labelled "
            "offline; --live and --boxes need ground truth (give --gt-topic or --gt-csv)"
        )
    labelling = label_bag(
        args.bag,
        args.bundle,
        image_topics=args.topics,
        backend=args.backend or "auto",
        device=args.device or "cpu",
        precision=args.precision or "fp32",
        batch_size=args.batch_size,
    )
    print(write_bag_labelling(labelling, out_dir))
    files = [
        f"decisions: {out_dir / 'predictions.csv'} (the --gt-csv layout)",
        f"scores: {out_dir / 'scores.csv'}",
        f"labels bag: {out_dir / 'labels'}",
    ]
    if labelling.sheet is not None:
        files.append(f"contact sheet: {out_dir / 'contact_sheet.png'}")
    print("  ".join(files))
    return 0


def _eval(args: argparse.Namespace) -> int:
    from mmsag_ros.bag.bag_eval import evaluate_bag, write_bag_evaluation
    from mmsag_ros.bundle.manifest import load_bundle
    from mmsag_ros.errors import ConfigError
    from mmsag_ros.live.live_eval import evaluate_bag_live

    out_dir = args.out or args.bag.parent / f"{args.bag.name}_eval"
    if not args.live and (args.record or args.sorter_params or args.rate != 1.0):
        raise ConfigError("--rate, --record and --sorter-params replay through a node: add --live")
    if args.gt_topic is None and args.gt_csv is None:
        # Truth asked for by name must be there; the default topic only where the bag has it.
        if not _has_ground_truth(args.bag, DEFAULT_GT_TOPIC):
            print(f"no ground truth on {DEFAULT_GT_TOPIC}: labelling the frames instead")
            return _label(args, out_dir)
        args.gt_topic = DEFAULT_GT_TOPIC
    if args.live:
        from mmsag_ros.live.results import format_live_label

        names = load_bundle(args.bundle, verify=False).labels.display_names
        arrived = itertools.count(1)

        def show(label: LiveLabel, target: np.ndarray | None) -> None:
            print(format_live_label(next(arrived), label, target, names), flush=True)

        out_dir.mkdir(parents=True, exist_ok=True)
        with _stop_on_sigint() as stop:
            evaluation = evaluate_bag_live(
                args.bag,
                args.bundle,
                gt_topic=args.gt_topic,
                gt_csv=args.gt_csv,
                image_topics=args.topics,
                rate=args.rate,
                backend=args.backend,
                device=args.device,
                precision=args.precision,
                params_file=args.sorter_params,
                record=args.record,
                log_path=out_dir / "sorter.log",
                on_label=None if args.quiet else show,
                stop=stop,
                boxes_root=args.boxes,
            )
    else:
        evaluation = evaluate_bag(
            args.bag,
            args.bundle,
            gt_topic=args.gt_topic,
            gt_csv=args.gt_csv,
            image_topics=args.topics,
            backend=args.backend or "auto",
            device=args.device or "cpu",
            precision=args.precision or "fp32",
            batch_size=args.batch_size,
            boxes_root=args.boxes,
        )
    print(write_bag_evaluation(evaluation, out_dir))
    files = [f"report: {out_dir / 'report.json'}", f"PR curves: {out_dir / 'pr_curves.png'}"]
    if evaluation.pointing is not None:
        files.append(f"peaks and boxes: {out_dir / 'pointing_examples.png'}")
    if evaluation.live is not None:
        files.append(f"latency histogram: {out_dir / 'latency_histogram.png'}")
        if evaluation.live.recorded is not None:
            files.append(f"labels recorded to {evaluation.live.recorded}")
    print("  ".join(files))
    return 0


def _export_frames(args: argparse.Namespace) -> int:
    from mmsag_ros.bag.export_frames import export_frames

    summary = export_frames(args.bags, args.out, labels_topic=args.labels_topic)
    skipped = (
        f", {summary.without_label} frames without a label skipped" if summary.without_label else ""
    )
    if summary.undecodable:
        skipped += (
            f", {summary.undecodable} frames that do not decode skipped (first: "
            f"{summary.first_undecodable})"
        )
    print(
        f"exported {summary.frames} frames{skipped} to {summary.out / 'images'}; the model's "
        f"decisions in {summary.out / 'labels.csv'}: correct them, then train with "
        f'--set "data.extra_train=[{summary.out / "labels.csv"}]" beside your data'
    )
    return 0


def run(args: argparse.Namespace) -> int:
    """Run the chosen bag action."""
    actions = {"make": _make, "play": _play, "eval": _eval, "export-frames": _export_frames}
    return actions[args.bag_action](args)
