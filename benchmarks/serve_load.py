"""Load benchmark of `lungcad serve`: N concurrent clients posting one image for T seconds.

Starts the real server (`python -m lungcad serve MODEL`) on 127.0.0.1 in a child process, drives
it with httpx async clients, and prints throughput, p50/p99 latency and errors beside the bare
model's throughput measured in this process with the same torch thread count: model.predict
on the same image file (decode + predict, the work the server does per request; in the main
thread and in a worker thread, the faster counting) and on the decoded array (the network
alone). Bare and server runs alternate in rounds so that a shared machine's changing load falls
on both alike.

    .venv/bin/python benchmarks/serve_load.py [--model DIR] [--image FILE] [--clients 8]
        [--seconds 20] [--threads N] [--heatmap] [--runtime torch|onnx]

Without --model, an untrained ct-cnn at its default input size is saved in a temporary folder
(the weights do not change the speed). Without --image, the first IQ-OTH/NCCD slice of
../shared/data is used (read only), or a synthetic 512x512 PNG where that folder is absent.
The goal: 0 errors with 8 clients and server throughput >= 80% of the bare model's. This script
prints figures; it never fails on a time.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from importlib import metadata
from pathlib import Path

import numpy as np
from serve_common import default_image, free_port, start_server

GOAL_RATIO = 0.8


def parse_args() -> argparse.Namespace:
    from lungcad.commands.serve import available_cpus

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="model directory (default: an untrained ct-cnn)")
    parser.add_argument("--image", help="image file to post (default: a real CT slice)")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--threads", type=int, default=available_cpus(),
                        help="torch threads, for the server and the bare model alike "
                             "(default: the CPUs available, as `lungcad serve` uses)")
    parser.add_argument("--heatmap", action="store_true", help="ask for a heatmap each time")
    parser.add_argument("--runtime", choices=("torch", "onnx"), default="torch",
                        help="the server's --runtime; the bare model is loaded the same way")
    parser.add_argument("--rounds", type=int, default=4,
                        help="alternate bare-model and server runs this many times, each "
                             "seconds/rounds long (default 4)")
    return parser.parse_args()


def machine() -> str:
    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    from lungcad.commands.serve import available_cpus

    versions = []
    for package in ("lungcad", "torch", "numpy", "fastapi", "starlette", "uvicorn", "httpx",
                    "pillow"):
        try:
            versions.append(f"{package} {metadata.version(package)}")
        except metadata.PackageNotFoundError:
            pass
    return (f"{cpu}; {os.cpu_count()} logical CPUs ({available_cpus()} available); "
            f"Python {platform.python_version()} on {platform.system()} {platform.release()}\n"
            f"  {', '.join(versions)}")


def default_model(folder: Path) -> Path:
    import torch

    from lungcad.model_dir import ModelSpec, save_model_dir
    from lungcad.models import create_model, model_info
    from lungcad.preprocess import Preprocessing

    info = model_info("ct-cnn")
    torch.manual_seed(0)
    spec = ModelSpec(name="ct-cnn-untrained", architecture="ct-cnn",
                     task="ct-normal-vs-abnormal", classes=["normal", "abnormal"],
                     preprocessing=Preprocessing(size=info.input_size, channels=info.in_channels,
                                                 mean=info.mean, std=info.std),
                     threshold=0.5, modality="ct")
    return save_model_dir(folder / "ct-cnn-untrained", create_model("ct-cnn", 2), spec,
                          card="Untrained ct-cnn for the load benchmark.")


def bare_run(model, source, seconds: float, in_thread: bool = False) -> tuple[int, float]:
    """Predictions done one after another in ``seconds``, and the time they took; in the main
    thread, or in a worker thread as the server runs them (PyTorch's OpenMP threads can behave
    differently in each on a busy machine, so both are measured and the faster one counts)."""
    if in_thread:
        with ThreadPoolExecutor(max_workers=1) as pool:
            return pool.submit(bare_run, model, source, seconds).result()
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        model.predict(source)
        count += 1
    return count, time.perf_counter() - start


async def load(url: str, payload: bytes, name: str, clients: int, seconds: float,
               heatmap: bool) -> tuple[list[float], list[str], float]:
    import httpx

    latencies: list[float] = []
    errors: list[str] = []
    params = {"heatmap": "true"} if heatmap else {}
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(timeout=120, limits=limits) as client:
        async def one() -> None:
            start = time.perf_counter()
            try:
                response = await client.post(url, params=params,
                                             files={"file": (name, payload)})
                if response.status_code != 200:
                    errors.append(f"HTTP {response.status_code}: {response.text[:200]}")
                    return
            except httpx.HTTPError as error:
                errors.append(f"{type(error).__name__}: {error}")
                return
            latencies.append(time.perf_counter() - start)

        for _ in range(2):  # warm-up, not counted
            await one()
        latencies.clear()
        stop = time.perf_counter() + seconds

        async def worker() -> None:
            while time.perf_counter() < stop:
                await one()

        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        elapsed = time.perf_counter() - began
    return latencies, errors, elapsed


def main() -> int:
    import torch

    from lungcad import load_model

    args = parse_args()
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="lungcad-serve-load-") as tmp:
        model_dir = Path(args.model) if args.model else default_model(Path(tmp))
        image = Path(args.image) if args.image else default_image(Path(tmp))
        model = load_model(model_dir, args.runtime, args.threads)
        payload = image.read_bytes()
        print(f"machine: {machine()}")
        print(f"load average at start: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
        print(f"model: {model.spec.name} ({model.spec.architecture}, input "
              f"{model.spec.preprocessing.size} px), image: {image.name} "
              f"({len(payload):,} bytes), torch threads: {args.threads}, clients: "
              f"{args.clients}, {args.seconds:g} s, heatmap: {args.heatmap}, runtime: "
              f"{args.runtime}")

        from lungcad.io import load_image

        array = load_image(image).array
        for source in (image, array):  # warm-up
            model.predict(source)
        count, spent = bare_run(model, array, min(5.0, args.seconds / 4))
        from_array = count / spent

        port = free_port()
        server = start_server([str(model_dir), "--threads", str(args.threads),
                               "--runtime", args.runtime], port, wait_s=180)
        url = f"http://127.0.0.1:{port}/api/v1/predict"
        # Bare and server runs alternate, so that a change in the machine's load (other jobs on
        # a shared machine) falls on both alike.
        bare = {"main thread": [0, 0.0], "worker thread": [0, 0.0]}
        elapsed = client_cpu = 0.0
        latencies: list[float] = []
        errors: list[str] = []
        try:
            for _ in range(args.rounds):
                for where, totals in bare.items():
                    count, spent = bare_run(model, image, args.seconds / args.rounds,
                                            in_thread=where == "worker thread")
                    totals[0] += count
                    totals[1] += spent
                cpu_before = time.process_time()
                round_latencies, round_errors, round_time = asyncio.run(load(
                    url, payload, image.name, args.clients, args.seconds / args.rounds,
                    args.heatmap))
                client_cpu += time.process_time() - cpu_before
                latencies += round_latencies
                errors += round_errors
                elapsed += round_time
        finally:
            server.terminate()
            server.wait(timeout=30)
    rates = {where: count / spent for where, (count, spent) in bare.items()}
    from_file = max(rates.values())
    print("bare model, lungcad.load_model(...).predict(file) (decode + predict), one after another: "
          + ", ".join(f"{rate:.1f} img/s in the {where}" for where, rate in rates.items())
          + f"; {from_array:.1f} img/s on the decoded array (main thread)")

    done = len(latencies)
    rate = done / elapsed
    p50, p99 = (np.percentile(latencies, [50, 99]) * 1000) if done else (float("nan"),) * 2
    print(f"server: {rate:.1f} req/s over {elapsed:.1f} s ({done} answered 200), "
          f"p50 {p50:.0f} ms, p99 {p99:.0f} ms, errors: {len(errors)}")
    for message in sorted(set(errors))[:5]:
        print(f"  error: {message}")
    print(f"load clients used {client_cpu:.1f} s of CPU in this process "
          f"({100 * client_cpu / elapsed:.0f}% of one core)")
    print(f"load average at end: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    ratio = rate / from_file if from_file else float("nan")
    met = not errors and ratio >= GOAL_RATIO
    verdict = ("not applicable: with --heatmap the server also computes a Grad-CAM and its "
               "PNG per request, the bare figure is prediction only") if args.heatmap else (
        "met" if met else "NOT met")
    print(f"server / faster bare (decode + predict): {100 * ratio:.0f}%; goal (0 errors, >= "
          f"{100 * GOAL_RATIO:.0f}%): {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
