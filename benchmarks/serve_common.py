"""What the serving benchmarks share: the image they post and a free localhost port."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("LUNGCAD_SHARED_DATA", ROOT.parent / "shared" / "data"))


def default_image(folder: Path) -> Path:
    """The first IQ-OTH/NCCD slice where the shared data is present, else a synthetic PNG."""
    slices = sorted((SHARED / "iqothnccd" / "images").glob("*/*.jpg"))
    if slices:
        return slices[0]
    from PIL import Image

    rng = np.random.default_rng(0)
    path = folder / "synthetic.png"
    Image.fromarray(rng.integers(0, 256, (512, 512), dtype=np.uint8), mode="L").save(path)
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(arguments: list[str], port: int, wait_s: float = 300):
    """``python -m lungcad serve ARGUMENTS --port PORT`` in a subprocess, returned once
    /api/v1/health answers (SystemExit with the server's error if it exits or never answers)."""
    import subprocess
    import sys
    import time

    import httpx

    command = [sys.executable, "-m", "lungcad", "serve", *arguments, "--port", str(port),
               "--log-level", "warning"]
    print(f"server: {' '.join(command[1:])}", flush=True)
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               text=True)
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the server exited: {process.stderr.read()}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/api/v1/health", timeout=2).status_code == 200:
                return process
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    process.terminate()
    raise SystemExit(f"the server did not answer within {wait_s:.0f} s")


def rss_mb(pid: int) -> float:
    """The resident set size of process ``pid`` in MB (VmRSS), NaN where it cannot be read."""
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return float("nan")
    for line in lines:
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")
