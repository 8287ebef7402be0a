"""``mmsag export``: turn a checkpoint into a deployable bundle and print what was written."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mmsag_ros.export.manifest import Bundle

__all__ = ["add_arguments", "format_summary", "run"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the options of ``mmsag export``."""
    parser.add_argument("--checkpoint", type=Path, required=True, help="best.pt or last.pt")
    parser.add_argument("--out", type=Path, required=True, help="bundle directory to write")
    parser.add_argument(
        "--no-attention",
        dest="attention",
        action="store_false",
        help="leave out the attention maps (logits only: a minimal engine)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace a bundle in --out")
    parser.add_argument(
        "--calib-data",
        type=Path,
        help="calibration images: a folder, or a VOC dataset (its train split) - never test data",
    )
    parser.add_argument("--calib-split", help="VOC split of --calib-data (default: train)")
    parser.add_argument("--rtol", type=float, default=1e-4, help="ONNX parity tolerance")
    cpu = parser.add_argument_group("static int8 ONNX for CPU targets")
    cpu.add_argument(
        "--int8-cpu",
        action="store_true",
        help="also write model.int8.onnx, kept only within --max-map-drop of fp32 on --val-data",
    )
    cpu.add_argument("--val-data", type=Path, help="dataset holding the validation split")
    cpu.add_argument("--val-format", choices=["voc", "coco", "csv"], default="voc")
    cpu.add_argument("--val-split", default="val", help="VOC validation split (default: val)")
    cpu.add_argument("--val-image-root", type=Path, help="image folder of COCO/CSV data")
    cpu.add_argument(
        "--max-map-drop", type=float, default=1.0, help="int8 bar in mAP points (default: 1)"
    )
    trt = parser.add_argument_group("TensorRT engine (run on the target GPU)")
    trt.add_argument("--engine", action="store_true", help="build an fp32 engine for this GPU")
    trt.add_argument("--fp16", action="store_true", help="build an fp16 engine (implies --engine)")
    trt.add_argument(
        "--int8",
        action="store_true",
        help="build an int8 engine calibrated on --calib-data (implies --engine)",
    )
    trt.add_argument("--max-batch", type=int, default=8, help="largest engine batch")
    trt.add_argument("--workspace-mb", type=int, default=2048, help="builder workspace (MiB)")


def _size(path: Path) -> str:
    size = path.stat().st_size
    return f"{size / 2**20:.1f} MiB" if size >= 2**20 else f"{size / 2**10:.1f} KiB"


def _int8_line(section: dict[str, Any] | None) -> str:
    if section is None:
        return "not requested (--int8-cpu)"
    verdict = "kept" if section["kept"] else "REJECTED, file not kept"
    return (
        f"{verdict}: mAP fp32 {100 * section['fp32_map']:.2f}, int8 "
        f"{100 * section['int8_map']:.2f} (drop {section['map_drop_points']:.2f} points, bar "
        f"{section['max_drop_points']:.2f}) on {section['validation']['images']} images of "
        f"{section['validation']['split']!r}"
    )


def format_summary(bundle: Bundle, *, total_s: float) -> str:
    """The table ``mmsag export`` prints: model id, files, parity, int8, engines, times."""
    manifest = bundle.manifest
    onnx = manifest["onnx"]
    parity = onnx.get("parity", {})
    errors = ", ".join(f"{k} {v:.2e}" for k, v in parity.get("max_error", {}).items())
    batches = " and ".join(str(b) for b in parity.get("batch_sizes", []))
    files = [bundle.onnx_path, bundle.torch_path, bundle.int8_onnx_path]
    if bundle.engines_dir.is_dir():
        files += sorted(bundle.engines_dir.glob("*.engine"))
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
        ("int8 cpu", _int8_line(manifest.get("int8_onnx"))),
        ("times", f"{times}; total {total_s:.1f} s"),
    ]
    width = max(len(label) for label, _ in rows)
    return "\n".join(f"{label:<{width}}  {value}" for label, value in rows)


def run(args: argparse.Namespace) -> int:
    """Export the bundle and print its summary."""
    from mmsag_ros.export.bundle import export_bundle

    validation = None
    if args.int8_cpu and args.val_data is not None:
        from mmsag_ros.train.checkpoint import load_checkpoint
        from mmsag_ros.train.config import DataConfig
        from mmsag_ros.train.splits import load_split

        data = DataConfig(
            format=args.val_format,
            path=str(args.val_data),
            image_root=str(args.val_image_root) if args.val_image_root else None,
        )
        labels = load_checkpoint(args.checkpoint).labels
        validation = load_split(data, args.val_split, labels=labels)
    start = time.perf_counter()
    bundle = export_bundle(
        args.checkpoint,
        args.out,
        attention=args.attention,
        int8=args.int8,
        calib_dir=args.calib_data,
        calib_split=args.calib_split,
        engine=args.engine,
        fp16=args.fp16,
        int8_cpu=args.int8_cpu,
        validation=validation,
        max_drop_points=args.max_map_drop,
        max_batch=args.max_batch,
        workspace_mb=args.workspace_mb,
        rtol=args.rtol,
        overwrite=args.overwrite,
    )
    print(format_summary(bundle, total_s=time.perf_counter() - start))
    return 0
