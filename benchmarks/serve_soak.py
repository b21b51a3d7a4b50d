"""Soak benchmark of `lungcad serve`: N clients for T minutes, mixed good, bad and heatmap requests.

Starts one real server (`python -m lungcad serve`, the bundled models unless --model is given)
on 127.0.0.1 in a child process, with a small --max-in-flight so that overload shows, and drives
it with httpx async clients, all on loopback. Each client loops until the time is up (then stops
by itself): mostly predictions on a model taken in turn, heatmaps on the classifiers, and bad
requests (not an image, empty, unknown model, a decompression bomb, an RGBA image over the
decode budget, two files, a cross-origin POST, an upload that stalls part-way). A client told
503 waits the Retry-After it was given (at most 5 s) and goes on.

    .venv/bin/python benchmarks/serve_soak.py [--clients 16] [--minutes 10] [--max-in-flight 2]
        [--model DIR ...] [--image FILE] [--upload-timeout 5]

Prints throughput, p50/p99 per model and kind, answers by status, the 503s with their
Retry-After, and the server's RSS every 30 s. The goal: RSS after T minutes within 15% of its
value after the first minute, no 5xx but the bounded queue's 503, and 503 + Retry-After seen.
This script prints figures; it never fails on a time.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import struct
import sys
import tempfile
import time
import zlib
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
from machine import describe, provisional_note
from serve_common import default_image, free_port, rss_mb, start_server

RSS_EVERY_S = 30.0
RSS_GOAL = 0.15
# Of every 20 requests a client sends: 11 plain predictions, 4 heatmaps, 5 bad requests.
PLAN = ["good"] * 11 + ["heatmap"] * 4 + ["bad"] * 5
BAD = ["not-an-image", "empty", "unknown-model", "bomb", "rgba-over-budget", "two-files",
       "cross-origin", "stall"]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--max-in-flight", type=int, default=2,
                        help="the server's --max-in-flight (default 2: small, so that 503s show)")
    parser.add_argument("--upload-timeout", type=float, default=5.0,
                        help="the server's --upload-timeout, which the stalled uploads meet")
    parser.add_argument("--model", action="append", default=[],
                        help="model directory or bundled name (default: the bundled models)")
    parser.add_argument("--image", help="image file to post (default: a real CT slice)")
    parser.add_argument("--threads", type=int, default=None, help="the server's --threads")
    return parser.parse_args()


def png_claiming(width: int, height: int, colour_type: int) -> bytes:
    """A few hundred bytes whose PNG header claims width x height pixels."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    header = struct.pack(">IIBBBBB", width, height, 8, colour_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(b"\x00" * 1024)) + chunk(b"IEND", b""))


class Tally:
    def __init__(self) -> None:
        self.latency: dict[tuple[str, str], list[float]] = defaultdict(list)
        self.status: Counter = Counter()
        self.by_kind: Counter = Counter()
        self.busy = 0
        self.busy_with_retry_after = 0
        self.retry_after: list[int] = []
        self.failures: Counter = Counter()  # transport errors, 5xx other than 503: messages

    def record(self, model: str, kind: str, status: int, seconds: float, response=None) -> None:
        self.status[status] += 1
        self.by_kind[(kind, status)] += 1
        if status == 200:
            self.latency[(model, kind)].append(seconds)
        elif status == 503:
            self.busy += 1
            value = response.headers.get("retry-after") if response is not None else None
            if value is not None and value.isdigit():
                self.busy_with_retry_after += 1
                self.retry_after.append(int(value))
        elif status >= 500 and response is not None:
            self.failures[f"{kind}: HTTP {status}: {response.text[:160]}"] += 1


async def stalled_upload(port: int, model: str) -> int:
    """Headers and the start of a body, then nothing: the server's answer's status (408)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(f"POST /api/v1/predict?model={model} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     "Content-Type: multipart/form-data; boundary=b\r\n"
                     "Content-Length: 100000\r\n\r\n--b\r\n".encode())
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), 120)
        return int(line.split()[1]) if len(line.split()) > 1 else 0
    finally:
        writer.close()


async def client_loop(number: int, port: int, payload: bytes, name: str, models: dict[str, str],
                      stop: float, tally: Tally) -> None:
    import httpx

    url = f"http://127.0.0.1:{port}/api/v1/predict"
    ids = list(models)
    classifiers = [m for m, kind in models.items() if kind == "classifier"]
    bomb, rgba = png_claiming(20_000, 20_000, 0), png_claiming(6300, 6300, 6)
    plan = itertools.cycle(PLAN[number % len(PLAN):] + PLAN[:number % len(PLAN)])
    bad = itertools.cycle(BAD[number % len(BAD):] + BAD[:number % len(BAD)])
    turn = itertools.count(number)
    async with httpx.AsyncClient(timeout=180) as client:
        while time.monotonic() < stop:
            kind = next(plan)
            model = (classifiers if kind == "heatmap" else ids)[next(turn) % (
                len(classifiers) if kind == "heatmap" else len(ids))]
            params, headers, files = {"model": model}, {}, {"file": (name, payload)}
            label = kind
            if kind == "heatmap":
                params["heatmap"] = "true"
            elif kind == "bad":
                label = next(bad)
                if label == "stall":
                    start = time.perf_counter()
                    status = await stalled_upload(port, model)
                    tally.record(model, label, status, time.perf_counter() - start)
                    continue
                files = {"not-an-image": {"file": ("x.png", b"this is not an image")},
                         "empty": {"file": ("x.png", b"")},
                         "bomb": {"file": ("bomb.png", bomb)},
                         "rgba-over-budget": {"file": ("rgba.png", rgba)},
                         "two-files": [("file", (name, payload)), ("file", (name, payload))],
                         }.get(label, files)
                if label == "unknown-model":
                    params["model"] = "no-such-model"
                if label == "cross-origin":
                    headers["origin"] = "http://evil.example"
            start = time.perf_counter()
            try:
                response = await client.post(url, params=params, files=files, headers=headers)
            except httpx.HTTPError as error:
                tally.failures[f"{label}: {type(error).__name__}: {error}"] += 1
                continue
            tally.record(model, label, response.status_code, time.perf_counter() - start,
                         response)
            if response.status_code == 503:
                wait = response.headers.get("retry-after", "1")
                await asyncio.sleep(min(5.0, float(wait) if wait.isdigit() else 1.0))


async def soak(port: int, pid: int, payload: bytes, name: str, args) -> tuple[Tally, list, float]:
    import httpx

    async with httpx.AsyncClient() as client:
        listed = (await client.get(f"http://127.0.0.1:{port}/api/v1/models")).json()["models"]
    models = {m["id"]: m["kind"] for m in listed}
    print(f"models: {', '.join(f'{m} ({k})' for m, k in models.items())}", flush=True)
    tally, samples = Tally(), []
    began = time.monotonic()
    stop = began + args.minutes * 60

    async def sample_rss() -> None:
        while True:
            await asyncio.sleep(RSS_EVERY_S)
            elapsed = time.monotonic() - began
            samples.append((elapsed, rss_mb(pid)))
            answered = sum(tally.status.values())
            five = sum(n for s, n in tally.status.items() if s >= 500 and s != 503)
            print(f"  {elapsed / 60:5.1f} min: server RSS {samples[-1][1]:7.1f} MB, "
                  f"{answered} answers, {tally.busy} x 503, {five} other 5xx", flush=True)
            if elapsed >= args.minutes * 60:
                return

    sampler = asyncio.create_task(sample_rss())
    await asyncio.gather(*(client_loop(i, port, payload, name, models, stop, tally)
                           for i in range(args.clients)))
    elapsed = time.monotonic() - began
    await sampler
    return tally, samples, elapsed


def report(tally: Tally, samples: list, elapsed: float) -> None:
    answered = sum(tally.status.values())
    ok = tally.status.get(200, 0)
    print(f"\nthroughput: {answered / elapsed:.2f} answers/s ({ok / elapsed:.2f}/s answered 200) "
          f"over {elapsed / 60:.1f} min, {answered} answers")
    print("latency of 200 answers per model and kind (p50 / p99 ms, count):")
    for (model, kind), values in sorted(tally.latency.items()):
        p50, p99 = np.percentile(values, [50, 99]) * 1000
        print(f"  {model:24s} {kind:8s} {p50:8.0f} / {p99:8.0f}  n={len(values)}")
    print("answers by status: " + ", ".join(f"{s}: {n}" for s, n in sorted(tally.status.items())))
    print("answers by kind and status: " + ", ".join(
        f"{k} {s}: {n}" for (k, s), n in sorted(tally.by_kind.items())))
    waits = tally.retry_after
    print(f"503 (busy): {tally.busy}, with a Retry-After header: {tally.busy_with_retry_after}"
          + (f" (Retry-After {min(waits)}..{max(waits)} s, median {np.median(waits):g})"
             if waits else ""))
    for message, count in tally.failures.most_common(5):
        print(f"  failure x{count}: {message}")
    five = sum(n for s, n in tally.status.items() if s >= 500 and s != 503)
    first = next((mb for t, mb in samples if t >= 60 - 1), float("nan"))
    last = samples[-1][1] if samples else float("nan")
    change = (last - first) / first if first else float("nan")
    print(f"server RSS: {first:.1f} MB after the first minute, {last:.1f} MB at the end "
          f"({100 * change:+.1f}%)")
    verdicts = [(f"RSS at the end within {100 * RSS_GOAL:.0f}% of after 1 min",
                 abs(change) <= RSS_GOAL),
                ("no 5xx but 503, no transport failure", five == 0 and not tally.failures),
                ("503 with Retry-After seen under overload",
                 tally.busy > 0 and tally.busy_with_retry_after == tally.busy)]
    for text, met in verdicts:
        print(f"goal: {text}: {'met' if met else 'NOT met'}")


def main() -> int:
    args = parse_args()
    print(describe(("lungcad", "torch", "numpy", "fastapi", "starlette", "uvicorn", "httpx")))
    with tempfile.TemporaryDirectory(prefix="lungcad-soak-") as tmp:
        image = Path(args.image) if args.image else default_image(Path(tmp))
        payload = image.read_bytes()
        print(f"image: {image.name} ({len(payload):,} bytes); clients: {args.clients}, "
              f"{args.minutes:g} min, --max-in-flight {args.max_in_flight}", flush=True)
        port = free_port()
        server = start_server([*args.model, "--max-in-flight", str(args.max_in_flight),
                               "--upload-timeout", str(args.upload_timeout)]
                              + (["--threads", str(args.threads)] if args.threads else []), port)
        try:
            print(f"server RSS after start: {rss_mb(server.pid):.1f} MB", flush=True)
            tally, samples, elapsed = asyncio.run(soak(port, server.pid, payload, image.name,
                                                       args))
        finally:
            server.terminate()
            server.wait(timeout=60)
    report(tally, samples, elapsed)
    print(provisional_note())
    return 0


if __name__ == "__main__":
    sys.exit(main())
