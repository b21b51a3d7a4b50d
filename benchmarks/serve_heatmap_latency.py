"""Heatmap latency and memory of `lungcad serve`: N sequential heatmap requests to one server.

Starts the real server (`python -m lungcad serve MODEL`) on a free port of 127.0.0.1 in a child
process, posts one image N times to ``POST /api/v1/predict?heatmap=true`` one after another, and
prints the median and p90 latency and the growth of the server's resident memory (VmRSS from
/proc) between the end of the warm-up and the last request. A heatmap that leaks (a network copy
per request) shows as RSS growing with N.

    .venv/bin/python benchmarks/serve_heatmap_latency.py [--model NAME_OR_DIR] [--image FILE]
        [--requests 60] [--warmup 3] [--threads N]

Only HTTP and the CLI are used, so the same script measures any version of lungcad: run it with
``PYTHONPATH=OTHER_CHECKOUT/src`` to measure another tree (the server is started with the same
interpreter and environment). Without --image, the first IQ-OTH/NCCD slice of ../shared/data is
used (read only), or a synthetic 512x512 PNG where that folder is absent. It prints figures; it
never fails on a time.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from serve_common import default_image, free_port, rss_mb, start_server



def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="ct-normal-vs-abnormal",
                        help="bundled model name or model directory (default "
                             "ct-normal-vs-abnormal)")
    parser.add_argument("--image", help="image file to post (default: a real CT slice)")
    parser.add_argument("--requests", type=int, default=60, help="timed requests (default 60)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed requests first (default 3)")
    parser.add_argument("--threads", type=int, default=None,
                        help="the server's --threads (default: its own, the CPUs available)")
    return parser.parse_args()


def machine() -> str:
    sys.path.insert(0, str(Path(__file__).parent))
    try:
        from machine import describe, provisional_note

        return f"{describe(('torch', 'monai', 'fastapi', 'uvicorn'))}\n{provisional_note()}"
    except ImportError:
        return f"{os.cpu_count()} logical CPUs, load average {os.getloadavg()}"


def main() -> int:
    import httpx

    args = parse_args()
    with tempfile.TemporaryDirectory(prefix="lungcad-heatmap-bench-") as tmp:
        image = Path(args.image) if args.image else default_image(Path(tmp))
        payload = image.read_bytes()
        port = free_port()
        server = start_server([args.model] + (["--threads", str(args.threads)]
                                              if args.threads else []), port, wait_s=180)
        url = f"http://127.0.0.1:{port}/api/v1/predict"
        times = []
        try:
            with httpx.Client(timeout=300) as client:
                def one() -> float:
                    started = time.perf_counter()
                    response = client.post(url, params={"heatmap": "true"},
                                           files={"file": (image.name, payload)})
                    elapsed = time.perf_counter() - started
                    body = response.json()
                    if response.status_code != 200 or "heatmap_png" not in body:
                        raise SystemExit(f"request failed ({response.status_code}): "
                                         f"{str(body)[:300]}")
                    return elapsed

                for _ in range(args.warmup):
                    one()
                rss_start = rss_mb(server.pid)
                for _ in range(args.requests):
                    times.append(one())
                rss_end = rss_mb(server.pid)
        finally:
            server.terminate()
            server.wait(timeout=30)
    ms = np.asarray(times) * 1000
    print(machine())
    print(f"model {args.model}, image {image.name} ({len(payload)} bytes), "
          f"{args.requests} sequential heatmap requests after {args.warmup} warm-up")
    print(f"latency: median {statistics.median(ms):.0f} ms, p90 {np.percentile(ms, 90):.0f} ms, "
          f"min {ms.min():.0f} ms, max {ms.max():.0f} ms")
    print(f"server RSS: {rss_start:.0f} MB after warm-up -> {rss_end:.0f} MB after the timed "
          f"requests: {rss_end - rss_start:+.0f} MB "
          f"({(rss_end - rss_start) / max(1, args.requests):+.1f} MB a request)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
