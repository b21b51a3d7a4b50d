"""``lungcad data prepare --format jsrt`` against the physical floor: reading the same bytes.

The benchmark writes 247 JSRT-format raw ``.IMG`` files (2048x2048, 12-bit big-endian, the
full JSRT count) into a temporary folder: the 198 shared JSRT PNGs (``../shared/data/jsrt``,
read only), cycled, upsampled to 2048 px with ``lungcad.preprocess.resize_area`` and written
with ``lungcad.io.jsrt.write_jsrt_raw``, plus a Kaggle-style ``jsrt_metadata.csv`` made from the
shared labels. Then, side by side:

- floor: read every ``.IMG`` fully (``read()`` of the whole file), one after another;
- prepare: ``python -m lungcad data prepare SRC --format jsrt --out OUT --size 512`` (its
  default ``--workers``), wall time of the whole command (Python start-up included).

Both are measured with the page cache warm (the files were just written / read) and, with
``--cold``, also cold: before each measurement the files' cached pages are dropped with
``posix_fadvise(POSIX_FADV_DONTNEED)`` (only this benchmark's files; no root, nothing else on
the machine is touched). Goal: prepare <= 3x the floor.

    .venv/bin/python benchmarks/data_prepare.py [--files 247] [--cold]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import describe, provisional_note  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("LUNGCAD_SHARED_DATA", ROOT.parent / "shared" / "data"))
JSRT_COUNT = 247
GOAL_RATIO = 3.0


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=JSRT_COUNT)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--workers", type=int, default=None,
                        help="--workers for data prepare (default: its own default)")
    parser.add_argument("--cold", action="store_true",
                        help="also measure with the files' page cache dropped")
    parser.add_argument("--tmp", type=Path, default=None, help="folder for the temporary files")
    parser.add_argument("--profile", type=int, default=8, metavar="N",
                        help="time each step of prepare on N files, one core (0: skip)")
    return parser.parse_args()


def profile_steps(files: list[Path], size: int) -> None:
    """Median ms per file of each step of ``convert_one``, one core, page cache warm: read the
    bytes, decode (``load_image``, reading included), area resize, PNG write at zlib level 6
    (Pillow's default), at the level prepare uses and at 0 (stored, no compression)."""
    import statistics

    from PIL import Image

    from lungcad.data.prepare import PNG_COMPRESS_LEVEL, _write_png
    from lungcad.io import load_image
    from lungcad.preprocess import resize_area

    steps: dict[str, list[float]] = {}

    def timed(name, call):
        started = time.perf_counter()
        value = call()
        steps.setdefault(name, []).append((time.perf_counter() - started) * 1000)
        return value

    with tempfile.TemporaryDirectory(prefix="lungcad-prepare-profile-") as tmp:
        sizes = {}
        for i, path in enumerate(files):
            timed("read bytes", path.read_bytes)
            loaded = timed("decode (load_image)", lambda: load_image(path))
            small = timed(f"resize {loaded.array.shape[0]} -> {size}",
                          lambda: resize_area(loaded.array, size))
            pixels = Image.fromarray(np.round(np.clip(small, 0, 1) * 65535).astype(np.uint16))
            for level in sorted({6, PNG_COMPRESS_LEVEL, 0}, reverse=True):
                target = Path(tmp) / f"{i}-{level}.png"
                timed(f"PNG write, zlib level {level}",
                      lambda: pixels.save(target, compress_level=level))
                sizes.setdefault(level, []).append(target.stat().st_size)
            timed("prepare's _write_png (as used)",
                  lambda: _write_png(small, Path(tmp) / f"{i}.png", sixteen_bit=True))
    print(f"\nwhere a file's time goes ({len(files)} files, one core, page cache warm; median):")
    print("| step | ms per file |\n|---|---|")
    for name, values in steps.items():
        print(f"| {name} | {statistics.median(values):.1f} |")
    for level, values in sizes.items():
        print(f"PNG at zlib level {level}: {statistics.mean(values) / 1e3:.0f} kB a file")


def write_sources(folder: Path, count: int) -> list[Path]:
    """``count`` JSRT .IMG files cycled from the shared PNGs, and jsrt_metadata.csv."""
    import pandas as pd

    from lungcad.io import load_image
    from lungcad.jsrt_geometry import JSRT_MATRIX
    from lungcad.io.jsrt import write_jsrt_raw
    from lungcad.preprocess import resize_area

    labels = pd.read_csv(SHARED / "jsrt" / "labels.csv", dtype=str, keep_default_na=False)
    state = {"malignant": "malignant", "benign": "benign", "non_nodule": "non-nodule"}
    rows, files = [], []
    for i in range(count):
        source = labels.iloc[i % len(labels)]
        stem = Path(source["path"]).stem if i < len(labels) else f"BENCH{i:03d}"
        image = resize_area(load_image(SHARED / "jsrt" / source["path"]).array, JSRT_MATRIX)
        files.append(write_jsrt_raw(np_clip01(image), folder / f"{stem}.IMG"))
        rows.append({"study_id": f"{stem}.IMG", "subtlety": source["subtlety"],
                     "size": source["size_mm"], "age": source["age"], "gender": source["sex"],
                     "x": source["x_2048"], "y": source["y_2048"],
                     "state": state[source["label"]], "position": source["position"],
                     "diagnosis": source["diagnosis"]})
    pd.DataFrame(rows).to_csv(folder / "jsrt_metadata.csv", index=False)
    return files


def np_clip01(image):
    import numpy as np

    return np.clip(image, 0.0, 1.0)  # bilinear enlarging stays in range; guard rounding


def drop_cache(files: list[Path]) -> None:
    for path in files:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)  # dirty pages cannot be dropped
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def read_floor(files: list[Path]) -> tuple[float, int]:
    started = time.perf_counter()
    total = 0
    for path in files:
        with open(path, "rb", buffering=0) as f:
            total += len(f.read())
    return time.perf_counter() - started, total


def run_prepare(source: Path, out: Path, size: int, workers: int | None) -> float:
    command = [sys.executable, "-m", "lungcad", "data", "prepare", str(source), "--format", "jsrt",
               "--out", str(out), "--size", str(size)]
    if workers:
        command += ["--workers", str(workers)]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"lungcad data prepare failed (exit {result.returncode}):\n"
                         f"{result.stderr[-3000:]}")
    written = len(list((out / "images").glob("*.png")))
    if written != len(list(source.glob("*.IMG"))):
        raise SystemExit(f"data prepare wrote {written} images for {len(list(source.glob('*.IMG')))} "
                         f"sources:\n{result.stderr[-2000:]}")
    return seconds


def main() -> int:
    args = parse_args()
    if not (SHARED / "jsrt" / "labels.csv").is_file():
        print(f"the JSRT data is not at {SHARED / 'jsrt'}; set LUNGCAD_SHARED_DATA")
        return 1
    print(describe(("lungcad", "numpy", "pillow", "pandas")))
    with tempfile.TemporaryDirectory(prefix="lungcad-prepare-bench-", dir=args.tmp) as tmp:
        source = Path(tmp) / "jsrt_raw"
        source.mkdir()
        started = time.perf_counter()
        files = write_sources(source, args.files)
        gigabytes = sum(p.stat().st_size for p in files) / 1e9
        print(f"wrote {len(files)} JSRT .IMG files ({gigabytes:.2f} GB) in "
              f"{time.perf_counter() - started:.0f} s (not timed); prepare to {args.size} px, "
              f"workers: {args.workers or 'data prepare default'}")
        if args.profile:
            profile_steps(files[:args.profile], args.size)
        results = []
        conditions = ["warm"] + (["cold"] if args.cold else [])
        for i, condition in enumerate(conditions):
            if condition == "warm":
                read_floor(files)  # make sure every page is cached
            else:
                drop_cache(files)
            floor, total = read_floor(files)
            if condition == "cold":
                drop_cache(files)
            prepare = run_prepare(source, Path(tmp) / f"out{i}", args.size, args.workers)
            results.append((condition, floor, total, prepare))
            print(f"  page cache {condition}: read floor {floor:.2f} s "
                  f"({total / 1e6 / floor:.0f} MB/s), data prepare {prepare:.2f} s "
                  f"({len(files) / prepare:.1f} img/s), ratio {prepare / floor:.1f}x", flush=True)
    print()
    print("| page cache | files | read floor (s) | read MB/s | data prepare (s) | img/s | ratio | "
          f"goal <= {GOAL_RATIO:g}x |")
    print("|---|---|---|---|---|---|---|---|")
    for condition, floor, total, prepare in results:
        ratio = prepare / floor
        print(f"| {condition} | {len(files)} | {floor:.2f} | {total / 1e6 / floor:.0f} | "
              f"{prepare:.2f} | {len(files) / prepare:.1f} | {ratio:.1f}x | "
              f"{'met' if ratio <= GOAL_RATIO else 'not met'} |")
    print(provisional_note())
    return 0


if __name__ == "__main__":
    sys.exit(main())
