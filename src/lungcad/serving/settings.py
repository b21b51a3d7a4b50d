"""What an operator can set on the web server, with safe defaults."""

from __future__ import annotations

from dataclasses import dataclass

from lungcad.errors import LungcadError

MB = 1024 * 1024
RUNTIMES = ("torch", "onnx")


@dataclass(frozen=True)
class ServeSettings:
    host: str = "127.0.0.1"
    port: int = 8000
    # Limit on the whole request body (the image plus a few hundred bytes of multipart framing).
    max_upload_bytes: int = 64 * MB
    # Decoded pixels per image: a 2048x2048 JSRT film is 4.2 M, a large CR about 15 M. Anything
    # far beyond is more likely a decompression bomb than a chest image; float32 costs 4 B/pixel.
    max_pixels: int = 40_000_000
    runtime: str = "torch"
    # Images and heatmaps sent back to the page are shrunk to at most this many pixels a side.
    display_side: int = 768
    # Images decoded and predicted at most this many at a time per model, each on all the
    # torch threads: concurrent requests would only oversubscribe the cores (and hold more
    # decoded images in memory).
    inference_workers: int = 1
    # Threads for one prediction: ONNX Runtime's intra-op threads (--runtime onnx); the CLI also
    # sets torch's. None: each runtime's own default.
    threads: int | None = None

    def __post_init__(self) -> None:
        for name in ("max_upload_bytes", "max_pixels", "display_side", "inference_workers"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise LungcadError(f"{name} must be a positive integer, not {value!r}")
        if self.threads is not None and (isinstance(self.threads, bool)
                                         or not isinstance(self.threads, int) or self.threads < 1):
            raise LungcadError(f"threads must be a positive integer, not {self.threads!r}")
        if not 0 <= self.port <= 65535:
            raise LungcadError(f"port must be between 0 and 65535, not {self.port}")
        if self.runtime not in RUNTIMES:
            raise LungcadError(f"unknown runtime {self.runtime!r}; use one of {', '.join(RUNTIMES)}")
