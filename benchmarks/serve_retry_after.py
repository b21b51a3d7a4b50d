"""Is `lungcad serve`'s Retry-After honest? N clients (default 16) post one image each, again and
again, for T seconds (default 60) to a real server on 127.0.0.1 (a child process, default
--max-in-flight 8, so about half of them are refused at any time).

A client answered 503 notes the Retry-After it was told (the first one of that wait) and then:

- a *patient* client (all of them by default) sleeps Retry-After and posts again, as many times
  as it is refused; its real wait runs from the first 503 to the post that is let in;
- an *eager* client (``--eager K`` of them) posts again every 0.25 s until let in: its real
  wait is how long a slot took to free for it, competing with every other client (eager clients
  take the slots patient ones were promised, so a mixed run measures both sides of the error).

After an answer it thinks for a random 0 to --think seconds before its next image. Prints, for
each kind, the median told value, the median real wait and their ratio (goal: patient median
real wait within 2x of the median told value), the attempts a wait took, and the load average
before and after (the machine may be shared). Loopback only; bounded by --seconds.

    python benchmarks/serve_retry_after.py [--clients 16] [--seconds 60] [--model DIR]
        [--image FILE] [--threads 1] [--think 0.5] [--eager 0]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from serve_common import default_image, free_port, start_server
from serve_load import default_model

POLL_S = 0.25


def client(url: str, payload: bytes, name: str, deadline: float, patient: bool, think: float,
           seed: int, waits: list, lock: threading.Lock, counts: dict) -> None:
    import httpx

    rng = random.Random(seed)
    with httpx.Client(timeout=120) as http:
        def post():
            with lock:
                counts["posts"] += 1
            return http.post(url, files={"file": (name, payload)})

        while time.monotonic() < deadline:
            answer = post()
            if answer.status_code != 503:
                with lock:
                    counts["ok" if answer.status_code == 200 else "errors"] += 1
                time.sleep(rng.uniform(0, think))
                continue
            told = float(answer.headers["retry-after"])
            first, attempts = time.monotonic(), 1
            while True:
                time.sleep(float(answer.headers["retry-after"]) if patient else POLL_S)
                if time.monotonic() >= deadline:
                    return  # an unfinished wait is not counted
                sent = time.monotonic()
                answer = post()
                attempts += 1
                if answer.status_code != 503:
                    break
            with lock:
                waits.append((patient, told, sent - first, attempts))
                counts["ok" if answer.status_code == 200 else "errors"] += 1
            time.sleep(rng.uniform(0, think))


def summary(kind: str, rows: list) -> None:
    if not rows:
        print(f"{kind}: no refused request")
        return
    told = [r[1] for r in rows]
    real = [r[2] for r in rows]
    attempts = [r[3] - 1 for r in rows]
    ratio = statistics.median(real) / statistics.median(told)
    print(f"{kind}: {len(rows)} waits; told median {statistics.median(told):.2f} s "
          f"(min {min(told):.0f}, max {max(told):.0f}); real wait median "
          f"{statistics.median(real):.2f} s (p10 {percentile(real, 10):.2f}, p90 "
          f"{percentile(real, 90):.2f}); real/told (medians) {ratio:.2f}; retries per wait "
          f"median {statistics.median(attempts):.0f}, max {max(attempts)}")


def percentile(values: list, q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--model", help="model directory (default: an untrained ct-cnn)")
    parser.add_argument("--image", help="image to post (default: as serve_load.py)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--eager", type=int, default=0,
                        help="clients that poll every 0.25 s instead of sleeping Retry-After")
    parser.add_argument("--think", type=float, default=0.5,
                        help="a client waits a random 0 to THINK s after an answer")
    args = parser.parse_args()
    if not 1 <= args.clients <= 64 or not 0 < args.seconds <= 600:
        raise SystemExit("--clients 1 to 64 and --seconds up to 600 (a bounded benchmark)")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        model = args.model or str(default_model(folder))
        image = Path(args.image) if args.image else default_image(folder)
        payload = image.read_bytes()
        port = free_port()
        server = start_server([model, "--threads", str(args.threads)], port)
        try:
            url = f"http://127.0.0.1:{port}/api/v1/predict"
            load_before = os.getloadavg()
            waits: list = []
            lock = threading.Lock()
            counts = {"posts": 0, "ok": 0, "errors": 0}
            deadline = time.monotonic() + args.seconds
            threads = [threading.Thread(target=client, args=(
                url, payload, image.name, deadline, i >= args.eager, args.think, i, waits, lock,
                counts)) for i in range(args.clients)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            load_after = os.getloadavg()
        finally:
            server.terminate()
            server.wait(30)
    print(f"{args.clients} clients ({args.eager} eager) for {args.seconds:g} s, think 0-{args.think:g} s, server "
          f"--threads {args.threads}, default --max-in-flight 8; image {image.name} "
          f"({len(payload):,} bytes); Python {sys.version.split()[0]}")
    print(f"load average before {load_before[0]:.1f}, after {load_after[0]:.1f} "
          f"({os.cpu_count()} CPUs)")
    print(f"{counts['posts']} posts, {counts['ok']} answered 200, {counts['errors']} other errors")
    summary("patient (sleeps Retry-After)", [w for w in waits if w[0]])
    summary("eager (posts every 0.25 s)", [w for w in waits if not w[0]])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
