"""Image readers: one entry point, ``load_image``, picks the reader by content.

Every reader returns a :class:`LoadedImage`: a 2-D float32 array in display convention (bright =
dense: bone is bright on a radiograph, as on a film viewer) scaled to [0, 1], plus metadata.
"""

from lungcad.io.base import ImageMeta, LoadedImage
from lungcad.io.dispatch import load_image, sniff_format

__all__ = ["ImageMeta", "LoadedImage", "load_image", "sniff_format"]
