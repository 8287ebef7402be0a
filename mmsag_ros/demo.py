"""The end-to-end demo: conveyor data to live labels from a sorter node, one call.

Every step is the product's own: :func:`~mmsag_ros.data.synth.generate_dataset` (or, with
``photos``, :func:`~mmsag_ros.data.compose.compose_dataset` on real single-object photos), the
trainer (``mmsag_effl0_224`` with its packaged ImageNet trunk, fine-tuned briefly), the bundle
exporter, :func:`~mmsag_ros.bag.make.make_bag` on the held-out test split,
:func:`~mmsag_ros.live.live_eval.evaluate_bag_live`, which starts a real sorter node process and
replays the bag through it, and the pointing scores of the attention peaks on the test boxes.
The defaults take about 7 to 8 minutes on a 2-core CPU machine.

By default the data are drawn, not photographed: the scores show the pipeline works, not how
well a model sorts real waste. Composed scenes hold real objects on a drawn belt.
"""

from __future__ import annotations

import itertools
import json
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mmsag_ros.errors import ConfigError

if TYPE_CHECKING:
    import numpy as np

    from mmsag_ros.live.results import LiveLabel

__all__ = ["DemoOptions", "DemoResult", "run_demo"]

_MARKER = "demo.json"


@dataclass
class DemoOptions:
    """What the demo does; the defaults are the README's first command.

    Attributes:
        out: Folder for everything the demo writes (a previous demo there is replaced).
        photos: An image-folder dataset (``<class>/*.jpg``, one object per photo) to compose
            the scenes from (:mod:`mmsag_ros.data.compose`) instead of drawing them.
        trainval: Training + validation images (a fifth of the drawn ones validation, a sixth
            of the composed ones).
        test: Held-out test images, replayed as the bag.
        image_size: (width, height) of the synthetic frames.
        epochs: Fine-tuning epochs.
        time_budget_min: Stop training after this long, whatever ``epochs`` says.
        fps: Frame rate of the bag (and of its replay).
        seed: Seed of the data and the training.
        overrides: Extra ``key=value`` training overrides.
        show_labels: Print each label as the node publishes it.
    """

    out: Path = Path("runs/demo")
    photos: Path | None = None
    trainval: int = 1200
    test: int = 200
    image_size: tuple[int, int] = (320, 240)
    epochs: int = 8
    time_budget_min: float = 6.0
    fps: float = 10.0
    seed: int = 0
    overrides: Sequence[str] = ()
    show_labels: bool = True


@dataclass
class DemoResult:
    """Where the demo wrote things and what it measured."""

    out: Path
    bundle: Path
    bag: Path
    report_dir: Path
    val_map: float
    live_map: float
    latency_ms: dict[str, float | None]
    frames_sent: int
    frames_labelled: int
    pointing_accuracy: float | None = None
    step_seconds: dict[str, float] = field(default_factory=dict)


@contextmanager
def _step(title: str, timings: dict[str, float], say: Callable[[str], None]) -> Iterator[None]:
    say(f"\n== {len(timings) + 1}. {title}")
    started = time.monotonic()
    yield
    timings[title] = round(time.monotonic() - started, 1)
    say(f"   ({timings[title]:.0f} s)")


def _prepare_out(out: Path) -> None:
    if out.exists() and any(out.iterdir()):
        earlier = ("synthetic.json", "composed.json")
        if not (out / _MARKER).is_file() and not any((out / "data" / m).is_file() for m in earlier):
            raise ConfigError(
                f"{out} exists and holds something other than a previous demo; choose another --out"
            )
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)


def _make_data(options: DemoOptions, data: Path, say: Callable[[str], None]) -> tuple[str, ...]:
    """Draw or compose the dataset; the training overrides that name its splits."""
    if options.photos is None:
        from mmsag_ros.data.synth import generate_dataset

        summary = generate_dataset(
            data,
            num_trainval=options.trainval,
            num_test=options.test,
            image_size=options.image_size,
            seed=options.seed,
            progress=True,
        )
        say(
            f"   {summary.images['train']} train, {summary.images['val']} validation, "
            f"{summary.images['test']} test images of {len(summary.classes)} MLKW classes"
        )
        return ()
    from mmsag_ros.data.compose import compose_dataset

    num_val = max(1, options.trainval // 6)
    composed = compose_dataset(
        options.photos,
        data,
        num_train=options.trainval - num_val,
        num_val=num_val,
        num_test=options.test,
        image_size=options.image_size,
        seed=options.seed,
        progress=True,
    )
    say(
        f"   {composed.images['train']} train, {composed.images['val']} validation, "
        f"{composed.images['test']} test scenes of {len(composed.classes)} classes "
        f"({', '.join(composed.classes)}), from photos no other split uses"
    )
    return ("data.train_split=train", "data.val_split=val")


def _train(
    options: DemoOptions,
    data: Path,
    splits: tuple[str, ...],
    run_dir: Path,
    say: Callable[[str], None],
) -> Any:
    """Fine-tune with TrainConfig's defaults (the CPU recipe); the training result."""
    from mmsag_ros.train.config import load_config
    from mmsag_ros.train.run import run_training

    overrides = [
        f"data.path={data}",
        *splits,
        f"epochs={options.epochs}",
        f"time_budget_min={options.time_budget_min}",
        f"seed={options.seed}",
        f"out_dir={run_dir}",
        *options.overrides,
    ]
    training = run_training(load_config(None, overrides))
    say(f"   best validation mAP {training.best_val_map:.3f} ({training.best_checkpoint})")
    return training


def _export(best_checkpoint: Path, bundle_dir: Path, say: Callable[[str], None]) -> Any:
    """Export every precision; the checkpoint and the bundle."""
    from mmsag_ros.bundle.schema import PRECISIONS
    from mmsag_ros.export.variant_score import describe_accuracy
    from mmsag_ros.export.write_bundle import export_bundle
    from mmsag_ros.model.checkpoint import load_checkpoint
    from mmsag_ros.train.dataset_splits import trainer_splits

    # Judged on the training run's own validation split, calibrated on its training split.
    checkpoint = load_checkpoint(best_checkpoint)
    trained, held_out = trainer_splits(checkpoint.train_config, labels=checkpoint.labels)
    bundle = export_bundle(
        best_checkpoint, bundle_dir, precisions=PRECISIONS, calib_dir=trained, validation=held_out
    )
    say(f"   {bundle.model_id}: {len(bundle.labels)} classes")
    for precision, entry in bundle.manifest["variants"].items():
        verdict = "accepted" if entry["accepted"] else "REFUSED"
        say(f"   {precision} {verdict}: {describe_accuracy(entry)}")
    return checkpoint, bundle


def _replay(
    options: DemoOptions, bag: Path, bundle: Any, out: Path, say: Callable[[str], None]
) -> Any:
    """Replay the test bag through a sorter node process; the live evaluation.

    The labels are recorded into ``out/labels_bag``, the node logs to ``out/sorter.log`` and
    the report goes to ``out/live_eval``.
    """
    from mmsag_ros.bag.bag_eval import write_bag_evaluation
    from mmsag_ros.live.live_eval import evaluate_bag_live
    from mmsag_ros.live.results import format_live_label

    names, arrived = bundle.labels.display_names, itertools.count(1)

    def show(label: LiveLabel, target: np.ndarray | None) -> None:
        say(format_live_label(next(arrived), label, target, names))

    evaluation = evaluate_bag_live(
        bag,
        bundle.root,
        record=out / "labels_bag",
        log_path=out / "sorter.log",
        on_label=show if options.show_labels else None,
    )
    say("")
    say(write_bag_evaluation(evaluation, out / "live_eval"))
    return evaluation


def _point(checkpoint: Any, data: Path, report_dir: Path, say: Callable[[str], None]) -> Any:
    """Score where the attention peaks point on the test boxes; None without attention."""
    from mmsag_ros.data.voc import read_voc, read_voc_boxes
    from mmsag_ros.train.checkpoint_eval import evaluate_checkpoint, write_pointing

    test = read_voc(data, "test", labels=checkpoint.labels)
    located = evaluate_checkpoint(
        checkpoint,
        test,
        boxes=read_voc_boxes(data, [sample.image_id for sample in test.samples]),
        workers=1,
    )
    table = write_pointing(located, checkpoint.labels, report_dir)
    if table is not None:
        say(table)
    return located.pointing


def run_demo(options: DemoOptions, *, say: Callable[[str], None] = print) -> DemoResult:
    """Run the whole demo; ``say`` receives every line meant for the user."""
    from mmsag_ros.bag.make import make_bag

    out = Path(options.out).absolute()
    _prepare_out(out)
    data, run_dir, bundle_dir = out / "data", out / "train", out / "bundle"
    bag, report_dir = out / "test_bag", out / "live_eval"
    timings: dict[str, float] = {}
    started = time.monotonic()
    if options.photos is None:
        say(
            "mmsag demo: SYNTHETIC data. The conveyor scenes are drawn, not photographed; the "
            "scores below show the pipeline working end to end, not how well a model sorts "
            "real waste."
        )
        title = f"synthetic conveyor dataset -> {data}"
    else:
        say(
            f"mmsag demo: COMPOSED scenes. Real photos from {options.photos}, cut out and laid "
            "on a drawn belt; the objects are real, the scenes and the camera are not."
        )
        title = f"belt scenes composed from the photos -> {data}"
    with _step(title, timings, say):
        splits = _make_data(options, data, say)
    with _step(f"fine-tune mmsag_effl0_224 -> {run_dir}", timings, say):
        training = _train(options, data, splits, run_dir, say)
    with _step(f"export the bundle, fp32 + fp16 + int8 -> {bundle_dir}", timings, say):
        checkpoint, bundle = _export(training.best_checkpoint, bundle_dir, say)
    with _step(f"the held-out test split as a rosbag of JPEG frames -> {bag}", timings, say):
        made = make_bag(data, bag, split="test", compressed=True, fps=options.fps)
        say(
            f"   {made.frames} frames at {options.fps:g} Hz on {made.image_topic}, ground truth "
            f"on {made.gt_topic}"
        )
    with _step("start the sorter node and replay the bag through it", timings, say):
        evaluation = _replay(options, bag, bundle, out, say)
    with _step("where the attention peaks point, on the test images' boxes", timings, say):
        pointing = _point(checkpoint, data, report_dir, say)
    live = evaluation.live
    assert live is not None  # evaluate_bag_live always sets it
    result = DemoResult(
        out=out,
        bundle=bundle_dir,
        bag=bag,
        report_dir=report_dir,
        val_map=float(training.best_val_map),
        live_map=float(evaluation.report.map),
        latency_ms=live.summary()["latency_ms"],
        frames_sent=live.sent,
        frames_labelled=len(live.labels),
        pointing_accuracy=None if pointing is None else pointing.accuracy,
        step_seconds=timings,
    )
    total_s = time.monotonic() - started
    (out / _MARKER).write_text(
        json.dumps({**asdict(result), "total_s": round(total_s, 1)}, indent=2, default=str) + "\n"
    )
    _say_done(result, options, total_s, live, pointing, say)
    return result


def _say_done(
    result: DemoResult,
    options: DemoOptions,
    total_s: float,
    live: Any,
    pointing: Any,
    say: Callable[[str], None],
) -> None:
    kind = "SYNTHETIC" if options.photos is None else "COMPOSED real-photo"
    latency = result.latency_ms
    pointed = (
        ""
        if pointing is None
        else f"; attention peaks inside a box of their class {100 * pointing.accuracy:.1f} %"
    )
    say(
        f"\nDone in {total_s / 60:.1f} min. On {live.sent} held-out {kind} frames replayed "
        f"through the sorter node: mAP {100 * result.live_map:.1f} %, latency p50 "
        f"{latency['p50']:.1f} ms / p99 {latency['p99']:.1f} ms (frame published -> label "
        f"received), {live.node.dropped + live.not_received} frames dropped{pointed}."
    )
    say(
        f"Look at {result.report_dir}/ (report.json, pr_curves.png, latency_histogram.png, "
        f"pointing_examples.png); the bundle is {result.bundle}. For a real cell, see "
        "docs/deployment.md, 'From the lab to the robot'."
    )
