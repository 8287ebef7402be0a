"""``mmsag export``: turn a checkpoint into a deployable bundle and print what was written.

``--precision fp32,fp16,int8`` writes one ONNX per variant; each reduced variant is scored
against fp32 on a validation split and refused (file not kept, numbers in the manifest) when it
misses its bar. By default that split is the training run's own validation split and int8 is
calibrated on its training split, both rebuilt from the config the checkpoint records; a
``--val-data`` split that holds images the checkpoint was trained on is refused. A refused
variant prints its numbers and makes the command exit 1, after the bundle with the accepted
variants has been written. TensorRT engines are built on the target with ``mmsag engine``.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mmsag_ros.bundle.schema import Bundle
    from mmsag_ros.data.dataset import AnnotatedSplit

__all__ = ["add_arguments", "format_summary", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the options of ``mmsag export``."""
    from mmsag_ros.export.settings import (
        CALIBRATION_METHODS,
        DEFAULT_BARS,
        DEFAULT_CALIBRATION_IMAGES,
    )

    parser.add_argument("--checkpoint", type=Path, required=True, help="best.pt or last.pt")
    parser.add_argument("--out", type=Path, required=True, help="bundle directory to write")
    parser.add_argument(
        "--no-attention",
        dest="attention",
        action="store_false",
        help="leave out the attention maps (logits only: a minimal engine)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace a bundle in --out")
    parser.add_argument("--rtol", type=float, default=1e-4, help="ONNX parity tolerance")
    variants = parser.add_argument_group("precision variants (scored against fp32)")
    variants.add_argument(
        "--precision",
        default="fp32",
        help="comma-separated ONNX variants: fp32 (always written), fp16, int8 (default: fp32)",
    )
    variants.add_argument(
        "--val-data",
        type=Path,
        help="dataset holding a held-out validation split (default: the training run's own)",
    )
    variants.add_argument("--val-format", choices=["voc", "coco", "csv"], default="voc")
    variants.add_argument("--val-split", default="val", help="validation split (default: val)")
    variants.add_argument("--val-image-root", type=Path, help="image folder of COCO/CSV data")
    variants.add_argument(
        "--fp16-bar",
        type=float,
        default=DEFAULT_BARS["fp16"],
        help=f"largest fp16 mAP drop in points (default {DEFAULT_BARS['fp16']})",
    )
    variants.add_argument(
        "--int8-bar",
        type=float,
        default=DEFAULT_BARS["int8"],
        help=f"largest int8 mAP drop in points (default {DEFAULT_BARS['int8']})",
    )
    int8 = parser.add_argument_group("int8 calibration")
    int8.add_argument(
        "--calib-data",
        type=Path,
        help="training images: a VOC dataset (its train split) or a folder; never test data "
        "(default: the training run's own training split)",
    )
    int8.add_argument("--calib-split", help="VOC split of --calib-data (default: train)")
    int8.add_argument(
        "--calib-images",
        type=int,
        default=DEFAULT_CALIBRATION_IMAGES,
        help=f"calibration images, spread over the split (default {DEFAULT_CALIBRATION_IMAGES})",
    )
    int8.add_argument(
        "--calib-method",
        choices=CALIBRATION_METHODS,
        default="minmax",
        help="activation range estimate (default minmax)",
    )
    int8.add_argument(
        "--fp32-head",
        action="store_true",
        help="keep the attention/fusion/graph head in fp32 (default: try it in int8 first, "
        "then in fp32 if that misses the bar)",
    )


def _size(path: Path) -> str:
    size = path.stat().st_size
    return f"{size / 2**20:.1f} MiB" if size >= 2**20 else f"{size / 2**10:.1f} KiB"


def _variant_lines(bundle: Bundle) -> list[tuple[str, str]]:
    from mmsag_ros.export.variant_score import describe_accuracy

    rows = []
    for precision, entry in bundle.manifest.get("variants", {}).items():
        verdict = "accepted" if entry.get("accepted") else "REFUSED, file not kept"
        rows.append((precision, f"{verdict}: {describe_accuracy(entry)}"))
    return rows


def _reference_line(bundle: Bundle) -> str:
    reference = bundle.reference
    if reference is None:
        return "none (no validation split at hand): the node's drift watch stays off"
    return (
        f"class rates from the {reference.scores_from}; brightness {reference.brightness:.0f}, "
        f"contrast {reference.contrast:.0f} from the {reference.input_from}"
    )


def format_summary(bundle: Bundle, *, total_s: float) -> str:
    """The table ``mmsag export`` prints: model id, files, parity, variants, times."""
    manifest = bundle.manifest
    onnx = manifest["onnx"]
    parity = onnx.get("parity", {})
    errors = ", ".join(f"{k} {v:.2e}" for k, v in parity.get("max_error", {}).items())
    batches = " and ".join(str(b) for b in parity.get("batch_sizes", []))
    files = [v.path for v in bundle.variants.values()] + [bundle.torch_path]
    timings = manifest.get("exporter", {}).get("timings_s", {})
    grid = bundle.attention_grid
    outputs = ", ".join(bundle.output_names) + (f" ({grid[0]}x{grid[1]} maps)" if grid else "")
    times = ", ".join(f"{k} {v:.1f} s" for k, v in timings.items())
    spec = bundle.spec
    rows = [
        ("bundle", str(bundle.root)),
        ("model id", bundle.model_id),
        ("classes", f"{bundle.num_classes}: {', '.join(bundle.labels.names)}"),
        ("input", f"{bundle.input_name} N x 3 x {spec.input_size} x {spec.input_size}"),
        ("outputs", outputs),
        ("parity", f"max error {errors} (batch {batches}; rtol {parity.get('rtol')})"),
        ("files", ", ".join(f"{p.relative_to(bundle.root)} {_size(p)}" for p in files if p)),
        *_variant_lines(bundle),
        ("drift ref", _reference_line(bundle)),
        ("times", f"{times}; total {total_s:.1f} s"),
    ]
    width = max(len(label) for label, _ in rows)
    return "\n".join(f"{label:<{width}}  {value}" for label, value in rows)


def _overlap(validation: AnnotatedSplit, train: AnnotatedSplit) -> list[str]:
    trained = {sample.image_path.resolve() for sample in train.samples}
    return [s.image_id for s in validation.samples if s.image_path.resolve() in trained]


def _splits(args: argparse.Namespace, *, calibrate: bool) -> tuple[Any, Any]:
    """The validation split and calibration source the variants are made and judged with."""
    from mmsag_ros.errors import ConfigError, MmsagError
    from mmsag_ros.model.checkpoint import load_checkpoint
    from mmsag_ros.train.config import DataConfig
    from mmsag_ros.train.dataset_splits import load_split, trainer_splits

    checkpoint = load_checkpoint(args.checkpoint)
    try:
        trained, held_out = trainer_splits(checkpoint.train_config, labels=checkpoint.labels)
    except MmsagError as err:
        if args.val_data is None or (calibrate and args.calib_data is None):
            raise
        logging.getLogger(__name__).warning(
            "the validation split is not checked against the training run: %s", err
        )
        trained = held_out = None
    validation = held_out
    if args.val_data is not None:
        data = DataConfig(
            format=args.val_format,
            path=str(args.val_data),
            image_root=str(args.val_image_root) if args.val_image_root else None,
        )
        validation = load_split(data, args.val_split, labels=checkpoint.labels)
        seen = _overlap(validation, trained) if trained is not None else []
        if seen:
            raise ConfigError(
                f"{len(seen)} of the {len(validation)} images of validation split "
                f"{args.val_split!r} (e.g. {seen[0]}) trained this checkpoint; leave out "
                "--val-data to use the training run's own validation split, or name a held-out "
                "split"
            )
    calibration = args.calib_data if args.calib_data is not None else trained
    return validation, calibration


def run(args: argparse.Namespace) -> int:
    """Export the bundle and print its summary; 1 when a requested variant was refused."""
    from mmsag_ros.errors import MmsagError
    from mmsag_ros.export.write_bundle import export_bundle, parse_precisions

    precisions = parse_precisions(args.precision)
    validation = calibration = None
    if len(precisions) > 1:
        validation, calibration = _splits(args, calibrate="int8" in precisions)
    else:
        # Only for the drift watch's reference statistics: without the data, export anyway.
        try:
            validation, calibration = _splits(args, calibrate=False)
        except MmsagError as err:
            logging.getLogger(__name__).warning(
                "no reference statistics for the drift watch (the validation split is not "
                "at hand: %s); give --val-data to record them",
                err,
            )
    start = time.perf_counter()
    bundle = export_bundle(
        args.checkpoint,
        args.out,
        attention=args.attention,
        precisions=precisions,
        calib_dir=calibration,
        calib_split=args.calib_split,
        calib_images=args.calib_images,
        calib_method=args.calib_method,
        int8_head=not args.fp32_head,
        validation=validation,
        bars={"fp16": args.fp16_bar, "int8": args.int8_bar},
        rtol=args.rtol,
        overwrite=args.overwrite,
    )
    print(format_summary(bundle, total_s=time.perf_counter() - start))
    for precision, reason in bundle.refused.items():
        print(
            f"mmsag export: error: the {precision} variant was refused ({reason}); the bundle "
            f"was written without it",
            file=sys.stderr,
        )
    return 1 if bundle.refused else 0
