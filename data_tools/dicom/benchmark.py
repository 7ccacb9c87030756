"""Benchmark ``medseg-data dicom2nifti`` against dcm2niix and SimpleITK on one series, in paired interleaved runs.

Run as ``python -m data_tools.dicom.benchmark SEED_SERIES WORK_DIR [--slices 134] [--rounds 7]``. It builds an
uncompressed CT series of ``--slices`` slices in ``WORK_DIR/series`` from the decoded pixels and the full headers of
the real series in ``SEED_SERIES`` (cycling through its slices; new UIDs, 2 mm apart), then runs, in each round and
in a rotating order, three converters as fresh processes writing gzip NIfTI:

* ``medseg-data dicom2nifti`` (this package; default options),
* ``dcm2niix -z y`` (Rorden's dcm2niix; with pigz on the PATH it compresses in parallel at level 6),
* SimpleITK ``ImageSeriesReader`` + ``WriteImage(useCompression=True)`` (GDCM read, ITK NIfTI writer).

CPU is user + system time of the process and its children (``getrusage(RUSAGE_CHILDREN)``), wall the elapsed time.
Each round gives one ratio per converter against medseg; the table reports medians and ranges over rounds, with the
load average, since on a shared machine only ratios measured side by side mean anything.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

__all__ = ["main", "make_series"]

_SITK = (
    "import sys, SimpleITK as sitk\n"
    "r = sitk.ImageSeriesReader()\n"
    "r.SetFileNames(r.GetGDCMSeriesFileNames(sys.argv[1]))\n"
    "sitk.WriteImage(r.Execute(), sys.argv[2], useCompression=True)\n"
)


def make_series(seed: Path, out: Path, slices: int) -> Path:
    """Write ``slices`` uncompressed CT files to ``out`` from the real series in ``seed`` (see the module docstring)."""
    import pydicom
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    files = sorted(p for p in seed.iterdir() if p.is_file())
    datasets = [pydicom.dcmread(p) for p in files]
    datasets = [d for d in datasets if "PixelData" in d]
    datasets.sort(key=lambda d: float(d.ImagePositionPatient[2]))
    pixels = [d.pixel_array for d in datasets]
    series, study, frame = generate_uid(), generate_uid(), generate_uid()
    x0, y0, z0 = (float(v) for v in datasets[0].ImagePositionPatient)
    out.mkdir(parents=True, exist_ok=True)
    for k in range(slices):
        ds = pydicom.dcmread(files[0])
        values = pixels[k % len(pixels)]
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.PixelData = values.astype(values.dtype.newbyteorder("<")).tobytes()
        ds.SeriesInstanceUID, ds.StudyInstanceUID, ds.FrameOfReferenceUID = series, study, frame
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.ImagePositionPatient = [x0, y0, z0 + 2.0 * k]
        ds.InstanceNumber = slices - k
        ds.save_as(out / f"IM{k:04d}.dcm", enforce_file_format=True)
    return out


def _run(cmd: list[str], out: Path, env: dict[str, str] | None = None) -> tuple[float, float, int]:
    """Run ``cmd`` writing into the fresh folder ``out``; CPU s, wall s, bytes written."""
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    # cwd: a neutral folder, so that ``python -m`` imports the package from the environment (or PYTHONPATH),
    # never from the folder the benchmark was started in.
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, cwd=out.parent)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    size = sum(p.stat().st_size for p in out.glob("*.nii.gz"))
    return cpu, wall, size


def _stats(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f})"


def main(argv: list[str] | None = None) -> int:
    """Build the series, run the rounds, write a Markdown table to stdout."""
    parser = argparse.ArgumentParser(prog="python -m data_tools.dicom.benchmark", description=__doc__)
    parser.add_argument("seed", type=Path, help="folder with a real DICOM series to take pixels and headers from")
    parser.add_argument("work", type=Path, help="scratch folder (the series and the outputs go there)")
    parser.add_argument("--slices", type=int, default=134, help="slices of the benchmark series")
    parser.add_argument("--rounds", type=int, default=7, help="interleaved rounds")
    parser.add_argument(
        "--baseline-checkout",
        type=Path,
        default=None,
        help="another checkout of this project: its dicom2nifti joins the rounds (e.g. the previous version)",
    )
    args = parser.parse_args(argv)
    series = args.work / "series"
    if not series.is_dir():
        make_series(args.seed, series, args.slices)
    key = args.work / "uid_key"
    medseg = [sys.executable, "-m", "data_tools", "dicom2nifti", str(series), "OUT", "--no-progress"]
    tools = {
        "medseg-data dicom2nifti": [*medseg, "--key-file", str(key)],
        "dcm2niix -z y": ["dcm2niix", "-z", "y", "-o", "OUT", str(series)],
        "SimpleITK read+write": [sys.executable, "-c", _SITK, str(series), "OUT/sitk.nii.gz"],
    }
    envs: dict[str, dict[str, str] | None] = dict.fromkeys(tools)
    if args.baseline_checkout is not None:
        tools["baseline dicom2nifti"] = medseg
        envs["baseline dicom2nifti"] = {**os.environ, "PYTHONPATH": str(args.baseline_checkout.resolve())}
    _run([c.replace("OUT", str(args.work / "warm")) for c in tools["medseg-data dicom2nifti"]], args.work / "warm")
    results: dict[str, list[tuple[float, float, int]]] = {name: [] for name in tools}
    loads = [os.getloadavg()[0]]
    names = list(tools)
    for r in range(args.rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        for name in order:
            out = args.work / "out"
            results[name].append(_run([c.replace("OUT", str(out)) for c in tools[name]], out, envs[name]))
        loads.append(os.getloadavg()[0])
    ours = results[names[0]]
    lines = [
        f"{args.slices} x 512 x 512 uncompressed CT, {args.rounds} interleaved rounds, {os.cpu_count()} CPUs, "
        f"1-min load average {min(loads):.1f}-{max(loads):.1f}",
        "",
        "| converter | CPU s | wall s | CPU ratio medseg/it | wall ratio medseg/it | output MB |",
        "|---|---|---|---|---|---|",
    ]
    for name in names:
        rows = results[name]
        cpu_ratio = [o[0] / t[0] for o, t in zip(ours, rows, strict=True)]
        wall_ratio = [o[1] / t[1] for o, t in zip(ours, rows, strict=True)]
        lines.append(
            f"| {name} | {_stats([t[0] for t in rows])} | {_stats([t[1] for t in rows])} | {_stats(cpu_ratio)} | "
            f"{_stats(wall_ratio)} | {rows[0][2] / 1e6:.1f} |"
        )
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
