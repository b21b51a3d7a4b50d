"""What the API does with an upload, independent of HTTP: decode, check, predict, explain."""

from __future__ import annotations

import asyncio
import base64
import math
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import PurePath

import numpy as np

from lungcad.errors import LungcadError
from lungcad.preprocess import aspect_note
from lungcad.serving.heatmap import HeatmapService, grayscale_png, heatmaps_unavailable_reason



class ApiError(Exception):
    """An error the client caused: answered with ``status`` and ``{"error": message}``."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers


@dataclass
class ServedModel:
    id: str
    model: object  # a LungModel, or a model with the same interface (ONNX runtime)
    workers: int = 1
    # Requests admitted at once (decoding, predicting or waiting for this model's threads).
    max_in_flight: int = 8
    heatmaps: HeatmapService = field(init=False)
    executor: ThreadPoolExecutor = field(init=False)
    in_flight: int = field(init=False, default=0)
    # Recent seconds of the model's threads per job (moving average of the service time alone,
    # not of the wait in the queue): what Retry-After is estimated from.
    service_seconds: float = field(init=False, default=1.0)
    # When the clients refused so far were told to come back (time.monotonic(), those still
    # ahead, one per client): the queue a newly refused client joins. Event loop only.
    promised: dict = field(init=False, default_factory=dict)
    _observed: threading.Lock = field(init=False, default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.heatmaps = HeatmapService(self.model)
        # The model's own long-lived threads: PyTorch's OpenMP keeps a thread team per calling
        # thread, so always calling from the same few threads (rather than from whichever of
        # the server's many pool threads is free) avoids piling up idle, spinning teams.
        self.executor = ThreadPoolExecutor(max_workers=self.workers,
                                           thread_name_prefix=f"lungcad-model-{self.id}")

    def admit(self, client: object = None) -> None:
        """Count one more request in flight, or refuse it (503, Retry-After) at the bound.
        ``client``: who asks (the connection's address), so that a client asking again and
        again holds one place in the queue Retry-After counts, not one per refusal. Called on
        the event loop only, so the count needs no lock."""
        if self.in_flight >= self.max_in_flight:
            wait = self.retry_after(client)
            plural = "s" if self.max_in_flight > 1 else ""
            raise ApiError(503, f"the server is busy: model {self.id!r} already has "
                                f"{self.max_in_flight} request{plural} in flight (the server's "
                                f"--max-in-flight); try again in {wait} s",
                           headers={"Retry-After": str(wait)})
        self.in_flight += 1

    def release(self) -> None:
        self.in_flight -= 1

    def retry_after(self, client: object = None) -> int:
        """Seconds until a slot is likely free for a client refused now, a whole number (HTTP's
        Retry-After) from 1 to 120. With every slot taken, one frees each service time per
        worker (the running request is half done on average); the other clients refused before
        and told to come back later than now take the first ones: this client queues behind
        them. Records the client's return time (where ``client`` is given) for the next ones."""
        now = time.monotonic()
        self.promised = {c: t for c, t in self.promised.items() if t > now and c != client}
        seconds = self.service_seconds * (len(self.promised) + 0.5) / self.workers
        wait = max(1, min(120, math.ceil(seconds)))
        if client is not None and len(self.promised) < 10_000:  # beyond: 120 s anyway
            self.promised[client] = now + wait
        return wait

    def _observe(self, seconds: float) -> None:
        with self._observed:
            self.service_seconds = 0.8 * self.service_seconds + 0.2 * max(0.0, seconds)

    async def run(self, function, *args):
        """``function(*args)`` on this model's threads, awaited without blocking the loop; its
        time on the threads is the service time Retry-After is estimated from."""
        def timed():
            started = time.monotonic()
            try:
                return function(*args)
            finally:
                self._observe(time.monotonic() - started)

        return await asyncio.get_running_loop().run_in_executor(self.executor, timed)

    @property
    def spec(self):
        return self.model.spec

    def effective_threshold(self) -> float | None:
        """The probability of the positive class at or above which the verdict is positive
        (binary models; None for multi-class, which takes the most probable class)."""
        return self.spec.decision_threshold

    @property
    def kind(self) -> str:
        """``classifier``, ``segmenter`` (a lung mask per image) or ``detector`` (a classifier
        that also marks nodules: :mod:`lungcad.serving.marks`)."""
        return getattr(self.model, "kind", "classifier")

    @property
    def marks(self) -> bool:
        """Whether this model marks nodules as served (a detector with its cell maps)."""
        from lungcad.detection.batch import marks_images

        return marks_images(self.model)

    def describe(self) -> dict:
        spec = self.spec
        return {"id": self.id, "name": spec.name, "version": spec.version, "task": spec.task,
                "kind": self.kind,
                "architecture": spec.architecture, "classes": list(spec.classes),
                "threshold": self.effective_threshold(), "threshold_rule": spec.threshold_rule,
                "modality": spec.modality, "input_size": spec.preprocessing.size,
                "runtime": "torch" if getattr(self.model, "network", None) is not None
                else "onnx",
                "heatmaps": (self.kind in ("classifier", "detector")
                             and heatmaps_unavailable_reason(self.model) is None),
                "marks": self.kind == "detector" and self.marks,
                "card": getattr(self.model, "card", "") or ""}


def unique_ids(names: list[str]) -> list[str]:
    """Model ids for the API: the model names, made unique with -2, -3... where they repeat."""
    seen: dict[str, int] = {}
    out = []
    for name in names:
        base = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-") or "model"
        seen[base] = seen.get(base, 0) + 1
        out.append(base if seen[base] == 1 else f"{base}-{seen[base]}")
    return out


def safe_label(filename: str | None) -> str:
    """A name for messages and a format hint, from the client's file name: never used as a path."""
    if not filename:
        return "uploaded image"
    base = PurePath(filename.replace("\\", "/")).name
    base = "".join(ch for ch in base if ch.isprintable())[:100]
    return base or "uploaded image"


def decode_upload(data: bytes, filename: str | None, served: ServedModel, max_pixels: int,
                  max_decode_bytes: int | None = None, frame: int | None = None):
    """Bytes to a :class:`~lungcad.io.LoadedImage` the model accepts, or an ApiError (422)."""
    from lungcad.io import load_image

    label = safe_label(filename)
    if not data:
        raise ApiError(422, f"{label} is empty (0 bytes); choose an image file")
    try:
        loaded = load_image(data, name=label, frame=frame, max_pixels=max_pixels,
                            max_decode_bytes=max_decode_bytes)
        # The model's own input checks (size, range, blank), before waiting for the model. Its
        # aspect-ratio warning only reaches the server's log: the answer gets a note (below).
        served.spec.preprocessing.check(loaded.array, label)
    except LungcadError as error:
        raise ApiError(422, str(error)) from None
    note = aspect_note(loaded.array.shape, label)
    if note and note not in loaded.meta.notes:
        loaded.meta.notes.append(note)
    return loaded


def predict_payload(served: ServedModel, loaded, prediction=None) -> dict:
    """The JSON answer for one image (without heatmap); ``prediction``: the model's already
    made (a detector's, from the pass that also marked the image)."""
    try:
        if prediction is None:
            from lungcad.domain.check import predict_image

            prediction = predict_image(served.model, loaded.array, loaded.meta.modality)
    except LungcadError as error:  # unusable, or another modality's image (refused)
        raise ApiError(422, str(error)) from None
    probabilities = {c: float(p) for c, p in prediction.probabilities.items()}
    payload = {
        "model": served.id,
        "model_version": served.spec.version,
        "task": served.spec.task,
        "probabilities": probabilities,
        **{f"prob_{c}": p for c, p in probabilities.items()},
        "label": prediction.label,
        "threshold": served.effective_threshold(),
        "image": image_info(loaded),
        # the domain check (None: the model has none); out of domain: answered, but flagged
        "in_domain": getattr(prediction, "in_domain", None),
        "domain_score": getattr(prediction, "domain_score", None),
        "domain_threshold": (served.spec.domain or {}).get("threshold"),
        "domain_note": getattr(prediction, "domain_note", "") or None,
        # True: the image was one of the model's training images (None: not recorded)
        "in_training_data": getattr(prediction, "in_training_data", None),
        "calibrated": bool(served.spec.calibration),
    }
    return payload


def image_info(loaded) -> dict:
    """What the answer says about the decoded image."""
    meta = loaded.meta
    return {"width": int(loaded.array.shape[1]), "height": int(loaded.array.shape[0]),
            "format": meta.format, "modality": meta.modality, "notes": list(meta.notes)}


def heatmap_fields(served: ServedModel, image: np.ndarray, heat: np.ndarray,
                   display_side: int, for_page: bool) -> dict:
    maps = served.heatmaps.render(image, heat, display_side, with_layer=for_page)
    fields = {"heatmap_png": b64(maps.overlay_png), "heatmap_method": maps.method}
    if for_page:
        fields["heatmap_layer_png"] = b64(maps.layer_png)
    return fields


def display_fields(image: np.ndarray, display_side: int) -> dict:
    return {"image_png": b64(grayscale_png(image, display_side))}


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")
