"""``lungcad predict --engine ray`` against plain ``lungcad predict``, in one run, same images.

The first ``--images`` radiographs of the shared JSRT set (``../shared/data/jsrt``, read in
place) are predicted by ``--model`` (default jsrt-nodules, the detector) four ways, each as the
whole command a user types (``python -m lungcad predict ...``, Python start-up included):

- plain, one image (its fixed cost: start-up and model load) and plain, all images; twice:
  with the environment as it is (OMP_NUM_THREADS unset unless the shell sets it: torch takes
  a thread a core) and with ``OMP_NUM_THREADS=1`` (one torch thread, as a 1-CPU Ray actor);
- ``--engine ray --workers 1 --cpus-per-worker C`` and ``--workers 2 --cpus-per-worker C/2``
  (C: this machine's cores, so that every run has the same cores), a local Ray started by the
  command and shut down after.

Figures: end-to-end wall time and images/s; the steady rate (plain: the extra images over the
extra time of the two plain runs; Ray: images in the shards written after the first one over
the span of the shards' write times, so Ray's start-up and the actors' model loads are out);
Ray's overhead against plain on both; and the time for one million radiographs on N workers
from the measured per-worker steady rate.

    .venv/bin/python benchmarks/ray_predict.py [--images 16] [--model jsrt-nodules]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import describe, load_average, provisional_note  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("LUNGCAD_SHARED_DATA", ROOT.parent / "shared" / "data"))
MILLION = 1_000_000


def run(command: list[str], expect_out: Path, extra_env: dict | None = None) -> float:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src") + os.pathsep
           + os.environ.get("PYTHONPATH", ""), **(extra_env or {})}
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "lungcad", *command], env=env,
                          capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0 or not expect_out.exists():
        raise SystemExit(f"failed (exit {done.returncode}): {' '.join(command)}\n"
                         f"{done.stderr[-3000:]}")
    return seconds


def shard_rate(out: Path) -> tuple[float, int]:
    """(images per second between the first and the last shard written, shards)."""
    import pandas as pd

    shards = sorted((p for p in (out / "shards").iterdir() if p.is_dir()),
                    key=lambda p: (p / "inputs.parquet").stat().st_mtime)
    times = [(p / "inputs.parquet").stat().st_mtime for p in shards]
    images = sum(len(pd.read_parquet(p / "inputs.parquet")) for p in shards[1:])
    span = times[-1] - times[0]
    return (images / span if span > 0 else float("nan")), len(shards)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--model", default="jsrt-nodules")
    parser.add_argument("--batch-size", type=int, default=4)
    args = parser.parse_args()
    labels = SHARED / "jsrt" / "labels.csv"
    if not labels.is_file():
        print(f"the JSRT data is not at {SHARED / 'jsrt'}; set LUNGCAD_SHARED_DATA")
        return 1
    import pandas as pd

    paths = [str(SHARED / "jsrt" / p) for p in pd.read_csv(labels)["path"][:args.images]]
    cores = os.cpu_count() or 1
    print(describe(("lungcad", "torch", "ray", "pyarrow")))
    print(f"{len(paths)} JSRT radiographs, model {args.model}, batch size {args.batch_size}, "
          f"{cores} cores")
    rows = []
    with tempfile.TemporaryDirectory(prefix="lungcad-ray-bench-") as tmp:
        tmp = Path(tmp)
        # plain runs once as the user's shell has it (torch: one thread a core unless
        # OMP_NUM_THREADS is set) and once with OMP_NUM_THREADS=1 (torch: one thread), which
        # is what Ray gives a 1-CPU actor
        for name, extra in (("plain `lungcad predict`", None),
                            ("plain, OMP_NUM_THREADS=1", {"OMP_NUM_THREADS": "1"})):
            one = run(["predict", args.model, paths[0], "--out", str(tmp / "one.csv")],
                      tmp / "one.csv", extra)
            plain = run(["predict", args.model, *paths, "--out", str(tmp / "plain.csv"),
                         "--batch-size", str(args.batch_size)], tmp / "plain.csv", extra)
            rows.append((name, 1, plain, (len(paths) - 1) / (plain - one)))
            print(f"  {name}: 1 image {one:.1f} s, {len(paths)} images {plain:.1f} s; "
                  f"load {load_average()}", flush=True)
        for workers in (1, 2):
            out = tmp / f"ray{workers}"
            seconds = run(["predict", args.model, *paths, "--engine", "ray", "--workers",
                           str(workers), "--cpus-per-worker", f"{cores / workers:g}",
                           "--batch-size", str(args.batch_size), "--out", str(out)],
                          out / "predictions.csv")
            rate, shards = shard_rate(out)
            rows.append((f"`--engine ray --workers {workers}`", workers, seconds, rate))
            print(f"  ray, {workers} worker(s): {seconds:.1f} s, {shards} shards; "
                  f"load {load_average()}", flush=True)
    # overheads against the faster plain run (the fairer baseline for Ray)
    best = min(rows[:2], key=lambda row: row[2])
    base_wall, base_rate = best[2], best[3]
    print(f"\nbaseline for the overheads: {best[0]}")
    print("| run | actors | wall (s) | images/s end to end | steady images/s | overhead vs "
          "plain, end to end | overhead vs plain, steady |")
    print("|---|---|---|---|---|---|---|")
    for name, workers, seconds, rate in rows:
        print(f"| {name} | {workers if 'ray' in name else '-'} | {seconds:.1f} | "
              f"{len(paths) / seconds:.2f} | {rate:.2f} | {seconds / base_wall - 1:+.0%} | "
              f"{base_rate / rate - 1:+.0%} |")
    per_worker = rows[-1][3] / 2
    print(f"\nper-worker steady rate (2 actors, {cores / 2:g} CPU each): {per_worker:.2f} "
          "images/s")
    print("| workers | one million radiographs |\n|---|---|")
    for n in (1, 2, 8, 32, 128):
        hours = MILLION / (per_worker * n) / 3600
        print(f"| {n} | {hours:,.1f} h ({hours / 24:,.1f} days) |")
    print(provisional_note())
    return 0


if __name__ == "__main__":
    sys.exit(main())
