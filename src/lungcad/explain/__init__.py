"""Saliency maps, their pictures, and their scoring against known nodule positions.

- :func:`saliency_map` (one image) / :func:`saliency_maps` / :class:`Explainer` (many images):
  2-D float32 maps in [0, 1] at the input image's shape, aligned to it.
- :func:`overlay` / :func:`png_bytes`: the image with the map blended in, as RGB or PNG bytes.
- :func:`write_heatmaps`: ``<stem>_overlay.png`` + ``<stem>_saliency.npy`` per image file.
- :mod:`lungcad.explain.localisation`: does the map's peak fall on the nodule (JSRT)?

Torch and MONAI are imported inside the functions that need them.
"""

from lungcad.explain.files import HeatmapFiles, write_heatmap, write_heatmaps
from lungcad.explain.render import overlay, png_bytes
from lungcad.explain.saliency import METHODS, Explainer, explain, saliency_map, saliency_maps

__all__ = ["METHODS", "Explainer", "HeatmapFiles", "explain", "overlay", "png_bytes", "saliency_map",
           "saliency_maps", "write_heatmap", "write_heatmaps"]
