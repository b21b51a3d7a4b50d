"""Heatmaps for the web page and the API, built on :mod:`lungcad.explain` (imported lazily, so the
server starts and predicts even where that module or its dependencies are missing)."""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from lungcad.errors import LungcadError


class HeatmapUnavailable(LungcadError):
    """This installation cannot draw heatmaps (lungcad.explain is missing)."""


@dataclass
class HeatmapImages:
    overlay_png: bytes  # the image with the heatmap blended in (what an API user wants to see)
    layer_png: bytes | None  # the coloured heatmap alone, RGBA, transparent where saliency is
    method: str              # low (for the page, which lays it over the image); None if not asked


def _explain_module():
    try:
        from lungcad import explain
    except ImportError as error:
        raise HeatmapUnavailable("heatmaps are not available in this installation "
                                 f"(lungcad.explain cannot be imported: {error})") from error
    missing = [f for f in ("Explainer", "overlay", "png_bytes") if not hasattr(explain, f)]
    if missing:
        raise HeatmapUnavailable("heatmaps are not available in this installation "
                                 f"(lungcad.explain lacks {', '.join(missing)})")
    return explain


def heatmaps_unavailable_reason(model) -> str | None:
    """Why ``model`` cannot have heatmaps here, or None when it can."""
    if getattr(model, "network", None) is None:
        return ("no heatmap: this model runs on ONNX Runtime, and saliency maps need the PyTorch "
                "network (serve it with --runtime torch)")
    try:
        _explain_module()
    except HeatmapUnavailable as error:
        return str(error)
    return None


class HeatmapService:
    """Saliency maps for one served model, one at a time, and their pictures.

    It holds one :class:`lungcad.explain.Explainer` (a private copy of the network with Grad-CAM
    hooks, so they never touch the network that serves predictions), built on the first heatmap
    request and reused for every later one: never a copy per request. The lock makes the maps
    one at a time per model (the explainer keeps state between its forward and backward
    passes), which also bounds the memory and CPU they take, however many threads the model
    is given.
    """

    def __init__(self, model, method: str = "gradcam") -> None:
        self._model = model
        self._lock = threading.Lock()
        self._explainer = None  # the saliency Explainer, built on first use
        self.method = method

    def saliency(self, image: np.ndarray) -> np.ndarray:
        """The map, the shape of ``image``, in [0, 1]."""
        reason = heatmaps_unavailable_reason(self._model)
        if reason:
            raise HeatmapUnavailable(reason)
        explain = _explain_module()
        with self._lock:
            if self._explainer is None:
                self._explainer = explain.Explainer(self._model, self.method)
            return np.asarray(self._explainer(np.asarray(image, dtype=np.float32)), np.float32)

    def render(self, image: np.ndarray, heat: np.ndarray, display_side: int,
               with_layer: bool = False) -> HeatmapImages:
        """The pictures of a map, shrunk to ``display_side`` (no network involved)."""
        explain = _explain_module()
        small_image, small_heat = shrink_for_display(image, heat, display_side)
        overlay = explain.overlay(small_image, small_heat)
        return HeatmapImages(overlay_png=explain.png_bytes(overlay),
                             layer_png=colour_layer_png(small_heat) if with_layer else None,
                             method=self.method)


def shrink_for_display(image: np.ndarray, heat: np.ndarray,
                       display_side: int) -> tuple[np.ndarray, np.ndarray]:
    from lungcad.preprocess import resize_area

    h, w = image.shape
    scale = min(1.0, display_side / max(h, w))
    if scale == 1.0:
        return image, heat
    size = (max(1, round(h * scale)), max(1, round(w * scale)))
    return resize_area(image, size), np.clip(resize_area(heat, size), 0.0, 1.0)


def colour_layer_png(heat: np.ndarray, colormap: str = "jet") -> bytes:
    """The heatmap through a colour map, with opacity rising with saliency, as an RGBA PNG; the
    page lays it over the image and lets the user scale its opacity."""
    import io

    from matplotlib import colormaps
    from PIL import Image

    heat = np.clip(np.nan_to_num(np.asarray(heat, np.float32)), 0.0, 1.0)
    rgba = colormaps[colormap](heat)  # floats in [0, 1], shape (H, W, 4)
    rgba[..., 3] = np.sqrt(heat)  # lift the faint parts a little so the map is readable
    buffer = io.BytesIO()
    # Fast compression: the map is smooth, so level 1 is nearly as small and several times faster.
    Image.fromarray(np.round(rgba * 255).astype(np.uint8), mode="RGBA").save(
        buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def grayscale_png(image: np.ndarray, display_side: int) -> bytes:
    """The decoded image as the model sees it (display convention), shrunk for the page; the
    browser cannot show DICOM or JSRT raw files itself."""
    import io

    from PIL import Image

    small, _ = shrink_for_display(image, image, display_side)
    buffer = io.BytesIO()
    Image.fromarray(np.round(np.clip(small, 0, 1) * 255).astype(np.uint8), mode="L").save(
        buffer, format="PNG", compress_level=1)
    return buffer.getvalue()
