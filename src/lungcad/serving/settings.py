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
    # Bytes an image may take once decoded (pixels x channels x bytes per sample, read from its
    # header): 40 M pixels of 8-bit gray take 40 MB, but of 8-bit RGBA 160 MB, from a file of a
    # few hundred KB. 128 MB admits a 2048x2048 RGB (12.6 MB) or a 15 M pixel 16-bit CR (30 MB)
    # with room to spare, and refuses the 6300x6300 RGBA (159 MB) of issue 18.
    max_decode_bytes: int = 128 * MB
    # Requests per model being decoded, predicted or waiting for it; beyond it the answer is 503
    # with Retry-After. Each may hold a decoded image (up to 4 B/pixel), so this bounds memory
    # and the wait of a request that is let in.
    max_in_flight: int = 8
    # Seconds a request body may take to arrive; a body still incomplete then is answered 408
    # and its connection closed (uvicorn's keep-alive timeout does not cover a stalled body).
    body_timeout_s: float = 60.0
    # Seconds a connection may take to send its request headers (from when it opens, or from the
    # first byte of a further request on it); then it is closed (lungcad.serving.http_protocol:
    # uvicorn itself has no such limit).
    header_timeout_s: float = 10.0
    # Host names the server answers to, besides the bind address, localhost, 127.0.0.1 and
    # [::1] (a page on another site reaching the server through DNS rebinding uses its own).
    # "*" accepts any.
    allowed_hosts: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name in ("max_upload_bytes", "max_pixels", "display_side", "inference_workers",
                     "max_decode_bytes", "max_in_flight"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise LungcadError(f"{name} must be a positive integer, not {value!r}")
        for name in ("body_timeout_s", "header_timeout_s"):
            timeout = getattr(self, name)
            if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not (
                    0 < timeout < float("inf")):
                raise LungcadError(f"{name} must be a positive number of seconds, not "
                                   f"{timeout!r}")
        if not isinstance(self.allowed_hosts, str):
            object.__setattr__(self, "allowed_hosts", tuple(self.allowed_hosts))
        if isinstance(self.allowed_hosts, str) or not all(
                isinstance(h, str) and h.strip() for h in self.allowed_hosts):
            raise LungcadError("allowed_hosts must be a tuple of host names, not "
                               f"{self.allowed_hosts!r}")
        if self.threads is not None and (isinstance(self.threads, bool)
                                         or not isinstance(self.threads, int) or self.threads < 1):
            raise LungcadError(f"threads must be a positive integer, not {self.threads!r}")
        if not 0 <= self.port <= 65535:
            raise LungcadError(f"port must be between 0 and 65535, not {self.port}")
        if self.runtime not in RUNTIMES:
            raise LungcadError(f"unknown runtime {self.runtime!r}; use one of {', '.join(RUNTIMES)}")
