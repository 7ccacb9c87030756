"""``medseg-data endovis``: EndoVis 2017 frames + part masks -> label maps + datalist; or a video -> PNG frames."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from medseg.console import CliError, existing_path, progress_enabled

HELP = "EndoVis 2017 frames/masks -> binary or parts label maps + datalist; a video file -> PNG frames"
DESCRIPTION = (
    "SRC a folder: merge the per-instrument part masks (10/20/30/40 = shaft/wrist/claspers/probe) of every "
    "frame into one label map (--task parts: 1..4, --task binary: 0/1) and write OUT_DIR/images, "
    "OUT_DIR/labels_<task> and a datalist. Reads the challenge layout (instrument_dataset_N/left_frames + "
    "ground_truth/*_labels) and the flat sample layout (frame.png + left_frame.png, right_frame.png). "
    "SRC a video file (or --video): write every --stride-th frame as PNG plus a datalist with a 'test' list. "
    "--crop-roi crops 1920x1080 frames to the challenge's 1280x1024 region at (x=320, y=28)."
)

_VIDEO_ONLY = ("stride", "max_frames", "start")
_FOLDER_ONLY = ("task", "include_other")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("src", metavar="SRC", type=existing_path, help="EndoVis folder, or a video file")
    parser.add_argument("out_dir", metavar="OUT_DIR", type=Path, help="output folder")
    parser.add_argument(
        "--task", choices=("binary", "parts"), default=None, help="label task for folders (default: parts)"
    )
    parser.add_argument("--crop-roi", action="store_true", help="crop to the 1280x1024 ROI at (x=320, y=28)")
    parser.add_argument(
        "--include-other",
        action="store_true",
        default=None,
        help="also merge Other_labels folders (default: background, as in the challenge tasks)",
    )
    parser.add_argument("--video", action="store_true", help="treat SRC as a video file (default: by suffix)")
    parser.add_argument("--stride", type=int, default=None, help="video: keep every N-th frame (default: 1)")
    parser.add_argument("--max-frames", type=int, default=None, help="video: stop after N frames (default: all)")
    parser.add_argument("--start", type=int, default=None, help="video: first frame number (default: 0)")
    parser.add_argument("--datalist", default="datalist.json", help="datalist file name inside OUT_DIR")


def run(args: argparse.Namespace) -> int:
    from data_tools.endovis import VIDEO_SUFFIXES, convert_endovis, extract_video_frames

    src: Path = args.src
    video = args.video or (src.is_file() and src.name.lower().endswith(VIDEO_SUFFIXES))
    if video:
        if not src.is_file():
            raise CliError(f"--video: SRC {str(src)!r} is a folder; give the video file")
        given = [f"--{k.replace('_', '-')}" for k in _FOLDER_ONLY if getattr(args, k) is not None]
        if given:
            raise CliError(f"{', '.join(given)} apply to EndoVis folders, not to a video file; drop them")
        report = extract_video_frames(
            src,
            args.out_dir,
            stride=1 if args.stride is None else args.stride,
            max_frames=args.max_frames,
            start=0 if args.start is None else args.start,
            crop=args.crop_roi,
            datalist_name=args.datalist,
            progress=progress_enabled(args),
        )
        sys.stdout.write(f"extracted {report.converted} frames -> {report.datalist}\n")
        return 0
    if src.is_file():
        raise CliError(
            f"SRC {str(src)!r} is a file without a video suffix ({', '.join(VIDEO_SUFFIXES)}); "
            "give an EndoVis folder, or add --video"
        )
    given = [f"--{k.replace('_', '-')}" for k in _VIDEO_ONLY if getattr(args, k) is not None]
    if given:
        raise CliError(f"{', '.join(given)} apply to video files only; drop them for an EndoVis folder")
    report = convert_endovis(
        src,
        args.out_dir,
        task=args.task or "parts",
        crop=args.crop_roi,
        include_other=bool(args.include_other),
        datalist_name=args.datalist,
        progress=progress_enabled(args),
    )
    for line in report.failure_lines():
        sys.stderr.write(f"failed: {line}\n")
    if report.converted == 0:
        raise CliError(f"no frame converted ({len(report.failures)} failed); nothing written")
    sys.stdout.write(f"converted {report.converted} frames -> {report.datalist}\n")
    if report.failures:
        raise CliError(f"{len(report.failures)} frame(s) failed (listed above); the datalist has the others")
    return 0
