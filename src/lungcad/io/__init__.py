"""Image readers: one entry point, ``load_image``, picks the reader by content.

Every reader returns a :class:`LoadedImage`: a 2-D float32 array in display convention (bright =
dense: bone is bright on a radiograph, as on a film viewer) scaled to [0, 1], plus metadata.
"""

from lungcad.io.base import ImageMeta, ImageReadWarning, LoadedImage
from lungcad.io.dispatch import (IMAGE_SUFFIXES, SUPPORTED, ModelInput, load_image, read_input,
                                 sniff_format)
from lungcad.io.jsrt import jsrt_raw_bytes, write_jsrt_raw

__all__ = ["IMAGE_SUFFIXES", "SUPPORTED", "ImageMeta", "ImageReadWarning", "LoadedImage", "ModelInput",
           "jsrt_raw_bytes", "load_image", "read_input", "sniff_format", "write_jsrt_raw"]
