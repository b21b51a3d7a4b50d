"""PNG, JPEG, TIFF and BMP through Pillow: 8 or 16 bit, gray, RGB or RGBA, to gray [0, 1]."""

from __future__ import annotations

import io
import warnings

import numpy as np

from lungcad.errors import LungcadError
from lungcad.io.base import (ImageMeta, LoadedImage, add_note, check_decode_bytes,
                             check_pixel_count, error_detail, error_text, finish, rgb_to_gray)

# Pillow names for each format sniff_format returns.
_PIL_FORMATS = {"png": "PNG", "jpeg": "JPEG", "tiff": "TIFF", "bmp": "BMP"}


def read_raster(data: bytes, fmt: str, label: str, *, frame: int | None = None,
                max_pixels: int = 100_000_000,
                max_decode_bytes: int | None = None) -> LoadedImage:
    """Decode ``data`` (already sniffed as ``fmt``) into a gray display image. The pixel limit
    and the decode budget (``max_decode_bytes``: pixels x channels x bytes per sample) are
    checked on the header, before any pixel is decoded."""
    from PIL import Image

    what = f"{label} ({fmt.upper()})"
    with warnings.catch_warnings():
        # We enforce our own pixel limit below; Pillow's global one must not decide for us.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        # Pillow's own warnings on damaged files ("Corrupt EXIF data"...) add nothing to the
        # LungcadError or image that follows; they would only reach the user as noise.
        warnings.filterwarnings("ignore", category=UserWarning, module=r"PIL\.")
        try:
            image = _open(data, fmt)
        except Image.DecompressionBombError as error:
            raise LungcadError(f"{what} is too large to decode safely: "
                               f"{error_text(error)}") from error
        except Exception as error:  # Pillow raises many types for bad headers
            raise LungcadError(f"{what} could not be opened: the file is damaged or not a valid "
                               f"{fmt.upper()} ({error_detail(error)})") from error
        check_pixel_count((image.height, image.width), max_pixels, what)
        if max_decode_bytes is not None:
            check_decode_budget(image, max_decode_bytes, what)
        n_frames = _frame_count(image, what)
        if frame is not None:
            if not 0 <= frame < n_frames:
                raise LungcadError(f"{what} has {n_frames} frame(s); frame={frame} is out of "
                                   f"range (use 0 to {n_frames - 1})")
            if frame:
                _seek(image, frame, what)
        elif n_frames > 1:
            raise LungcadError(f"{what} holds {n_frames} frames; pass frame=N (0 to "
                               f"{n_frames - 1}) to pick one")
        try:
            image.load()
            stored, bit_depth = _to_array(image, what)
        except LungcadError:
            raise
        except Image.DecompressionBombError as error:
            raise LungcadError(f"{what} is too large to decode safely: "
                               f"{error_text(error)}") from error
        except Exception as error:
            raise LungcadError(f"{what} could not be decoded: the file is truncated or damaged "
                               f"({error_detail(error)})") from error

    meta = ImageMeta(format=fmt, original_shape=tuple(stored.shape), bit_depth=bit_depth,
                     pixel_spacing_mm=None, photometric=image.mode)
    if fmt == "png" and image.mode in ("RGB", "RGBA") and _png_bit_depth(data) == 16:
        add_note(meta, f"{label}: 16-bit colour PNG read at 8-bit precision (Pillow keeps only "
                       "the high byte of colour PNGs); save it as 16-bit grayscale to keep all bits")
    gray = _to_gray(stored, bit_depth, meta, label)
    return finish(gray, meta, what)


def _open(data: bytes, fmt: str):
    """Pillow's reader for ``fmt`` on ``data``, reading the header only. Not through
    ``Image.open``, whose own decompression-bomb check (at Pillow's fixed limit, with Pillow's
    wording) would answer before lungcad's pixel limit and decode budget."""
    from PIL import Image

    name = _PIL_FORMATS[fmt]
    if name not in Image.OPEN:
        Image.init()
    factory, _accept = Image.OPEN[name]
    return factory(io.BytesIO(data))


def _decoded_sample_layout(image) -> tuple[int, int]:
    """(channels, bytes per sample) of the array an image decodes to, from its header."""
    from PIL import Image

    mode = image.mode
    if mode in ("P", "PA"):  # a palette expands to RGB, or RGBA with transparency
        return (4 if mode == "PA" or "transparency" in image.info else 3), 1
    if mode.startswith("I;16"):
        return 1, 2
    if mode in ("I", "F"):
        return 1, 4
    try:
        return Image.getmodebands(mode), 1
    except (KeyError, ValueError):
        return 4, 4  # an unusual mode: count it as large as any


def check_decode_budget(image, max_decode_bytes: int, what: str) -> None:
    """:func:`~lungcad.io.base.check_decode_bytes` for a Pillow image, from its header."""
    channels, sample_bytes = _decoded_sample_layout(image)
    check_decode_bytes(image.width, image.height, channels, sample_bytes, max_decode_bytes, what)


def _frame_count(image, what: str) -> int:
    # Pillow walks a TIFF's page chain to count frames, reading each page header: damage there
    # raises (TypeError "Missing dimensions", OSError...) from this innocent-looking attribute.
    try:
        return int(getattr(image, "n_frames", 1) or 1)
    except Exception as error:
        raise LungcadError(f"{what} could not be decoded: its page (frame) list is damaged "
                           f"({error_detail(error)})") from error


def _seek(image, frame: int, what: str) -> None:
    try:
        image.seek(frame)
    except Exception as error:
        raise LungcadError(f"{what}: could not go to frame {frame} "
                           f"({error_text(error)})") from error


def _png_bit_depth(data: bytes) -> int:
    # IHDR follows the 8-byte signature: length(4) type(4) width(4) height(4) bit depth(1).
    return data[24] if len(data) > 24 else 8


def _to_array(image, what: str) -> tuple[np.ndarray, int]:
    """Stored values as an array (H, W) or (H, W, C) and their bit depth."""
    mode = image.mode
    if mode in ("L", "RGB", "RGBA", "LA"):
        return np.asarray(image), 8
    if mode == "1":
        return np.asarray(image.convert("L")), 8
    if mode in ("P", "PA"):
        return np.asarray(image.convert("RGBA" if "transparency" in image.info or mode == "PA"
                                        else "RGB")), 8
    if mode in ("CMYK", "YCbCr", "LAB", "HSV"):
        return np.asarray(image.convert("RGB")), 8
    if mode.startswith("I;16"):
        return np.asarray(image).astype(np.uint16), 16
    if mode == "I":
        values = np.asarray(image)
        # Pillow opens some 16-bit files as 32-bit "I"; values beyond 16 bits we cannot scale.
        if values.size and (values.min() < 0 or values.max() > 65535):
            raise LungcadError(f"{what} holds 32-bit integer values outside 0..65535; convert it "
                               "to 8- or 16-bit grayscale")
        return values.astype(np.uint16), 16
    if mode == "F":
        values = np.asarray(image).astype(np.float32)
        if not np.isfinite(values).all() or values.min() < 0 or values.max() > 1:
            raise LungcadError(f"{what} holds floating-point values outside [0, 1] (or NaN); "
                               "scale it to [0, 1] or save it as 8- or 16-bit grayscale")
        return values, 32
    raise LungcadError(f"{what} uses pixel mode {mode!r}, which lungcad does not read; save it "
                       "as 8- or 16-bit grayscale or RGB")


def _to_gray(stored: np.ndarray, bit_depth: int, meta: ImageMeta, label: str) -> np.ndarray:
    scale = {8: 255.0, 16: 65535.0, 32: 1.0}[bit_depth]  # 32: float, already [0, 1]
    if stored.ndim == 2:
        return stored.astype(np.float32) / np.float32(scale)
    channels = stored.shape[2]
    if channels in (2, 4):  # gray+alpha or RGBA: the alpha channel carries no anatomy
        alpha = stored[..., -1]
        if alpha.size and int(alpha.min()) < (255 if bit_depth == 8 else 65535):
            add_note(meta, f"{label}: transparency (alpha channel) ignored")
        stored = stored[..., :-1]
    if stored.shape[2] == 1:
        return stored[..., 0].astype(np.float32) / np.float32(scale)
    return rgb_to_gray(stored[..., :3].astype(np.float32) / np.float32(scale), meta, label)
