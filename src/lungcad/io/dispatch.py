"""``load_image``: pick the reader by content (magic bytes), then by extension and size for the
headerless JSRT raw format."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lungcad.errors import LungcadError
from lungcad.io.base import ImageMeta, LoadedImage, error_detail, without_internals
from lungcad.io.itk import is_metaimage, is_nifti
from lungcad.io.jsrt import JSRT_BYTES
from lungcad.io.source import extension_of, read_head, read_source

SUPPORTED = ("jsrt-raw", "png", "jpeg", "tiff", "bmp", "dicom", "npy", "metaimage", "nifti")
# File endings taken as images when searching folders (the format itself is decided by content).
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".dcm", ".dicom",
                            ".npy", ".img", ".mha", ".mhd", ".nii"})
_SUPPORTED_TEXT = ("JSRT raw .IMG (2048x2048, 12-bit big-endian), PNG, JPEG, TIFF, BMP, "
                   "DICOM (.dcm), NumPy .npy, MetaImage (.mha, .mhd) and NIfTI (.nii, .nii.gz)")
_HEAD_BYTES = 2048  # enough for every signature: DICOM's "DICM" sits at offset 128, NIfTI's
# magic at 344 (of the decompressed header, for .nii.gz)
_RASTER = ("png", "jpeg", "tiff", "bmp")
_LUNG_PRESETS = ("lung", "mediastinum")

Source = str | Path | bytes | bytearray | memoryview


def sniff_format(source: Source, *, name: str | None = None) -> str:
    """Which reader a file needs: one of :data:`SUPPORTED`, decided by its first bytes; a file with
    no signature is JSRT raw when it ends in .img or has exactly JSRT's size."""
    if isinstance(source, (str, Path)):  # only the first bytes and the size matter
        head, size, label = read_head(source, _HEAD_BYTES)
    else:
        data, label = read_source(source, name)
        head, size = data[:_HEAD_BYTES], len(data)
    return _sniff(head, size, label, extension_of(source, name))


def _sniff(head: bytes, size: int, label: str, extension: str) -> str:
    # First: a DICOM preamble may itself look like a TIFF header (dual-personality files).
    if head[128:132] == b"DICM":
        return "dicom"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "tiff"
    if head.startswith(b"BM"):
        return "bmp"
    if head.startswith(b"\x93NUMPY"):
        return "npy"
    if is_metaimage(head):
        return "metaimage"
    if is_nifti(head):
        return "nifti"
    if extension == ".img" or size == JSRT_BYTES:
        return "jsrt-raw"
    if _looks_like_bare_dicom(head):
        return "dicom"
    raise LungcadError(
        f"{label}: unrecognised image format (starts with bytes {head[:8].hex(' ')}); "
        f"lungcad reads {_SUPPORTED_TEXT}")


def _looks_like_bare_dicom(head: bytes) -> bool:
    """DICOM written without the 128-byte preamble: starts with a little-endian tag of the file
    meta (0002,xxxx) or identifying (0008,xxxx) group, followed by a plausible explicit VR or an
    implicit-VR length."""
    if len(head) < 8 or head[0:2] not in (b"\x02\x00", b"\x08\x00"):
        return False
    vr = head[4:6]
    return vr.isalpha() and vr.isupper() or head[6:8] == b"\x00\x00"


def load_image(source: Source, *, name: str | None = None, frame: int | None = None,
               window: str | tuple[float, float] | None = None, hu: bool = False,
               max_pixels: int = 100_000_000,
               max_decode_bytes: int | None = None) -> LoadedImage:
    """Read one image (path or uploaded bytes) as a 2-D float32 array in display convention.

    ``name`` is only an extension hint for headerless raw files given as bytes; the format is
    decided by content. ``frame`` picks one frame of a multi-frame file. ``window`` ("lung",
    "mediastinum" or (centre, width)) and ``hu`` apply to DICOM only. Files claiming more than
    ``max_pixels`` pixels are refused before decoding, and so are PNG, JPEG, TIFF and BMP files
    whose decoded pixels would take more than ``max_decode_bytes`` (pixels x channels x bytes
    per sample; no such budget by default). Every failure is a :class:`LungcadError`.
    """
    _check_options(frame, window, hu, max_pixels)
    if max_decode_bytes is not None and (isinstance(max_decode_bytes, bool)
                                         or not isinstance(max_decode_bytes, int)
                                         or max_decode_bytes < 1):
        raise LungcadError("max_decode_bytes must be a positive integer (bytes) or None, not "
                           f"{max_decode_bytes!r}")
    data, label = read_source(source, name)
    fmt = _sniff(data[:_HEAD_BYTES], len(data), label, extension_of(source, name))
    if fmt != "dicom" and (window is not None or hu):
        asked = "hu=True" if hu else f"window={window!r}"
        raise LungcadError(f"{label} is {fmt.upper()}: {asked} applies to DICOM images only "
                           "(other formats already hold display values)")
    try:
        if fmt in ("metaimage", "nifti"):
            from lungcad.io.itk import read_itk
            return read_itk(data, fmt, label, frame=frame, max_pixels=max_pixels,
                            max_decode_bytes=max_decode_bytes,
                            path=Path(source) if isinstance(source, (str, Path)) else None)
        return _read(data, fmt, label, frame=frame, window=window, hu=hu, max_pixels=max_pixels,
                     max_decode_bytes=max_decode_bytes)
    except LungcadError as error:  # a last guard: no Python internals reach a user
        clean = without_internals(str(error))
        if clean != str(error):
            raise LungcadError(clean) from error.__cause__
        raise
    except MemoryError as error:
        raise LungcadError(f"{label}: not enough memory to decode this {fmt} image") from error
    except Exception as error:  # the contract: a reader's failure is always a LungcadError
        raise LungcadError(f"{label} could not be read as {fmt}: the file is damaged or "
                           f"unsupported ({error_detail(error)})") from error


def _check_options(frame, window, hu, max_pixels) -> None:
    if frame is not None and (isinstance(frame, bool) or not isinstance(frame, int) or frame < 0):
        raise LungcadError(f"frame must be a non-negative integer, not {frame!r}")
    if isinstance(window, str):
        if window not in _LUNG_PRESETS:
            raise LungcadError(f"unknown window {window!r}; use 'lung', 'mediastinum' or a "
                               "(centre, width) pair")
    elif window is not None:
        try:
            centre, width = (float(v) for v in window)
        except (TypeError, ValueError) as error:
            raise LungcadError(f"window must be a preset name or a (centre, width) pair of "
                               f"numbers, not {window!r}") from error
        if not (width > 0 and abs(centre) < 1e9 and width < 1e9):
            raise LungcadError(f"window width must be positive and finite, got {window!r}")
    if not isinstance(hu, bool):
        raise LungcadError(f"hu must be True or False, not {hu!r}")
    if isinstance(max_pixels, bool) or not isinstance(max_pixels, int) or max_pixels < 1:
        raise LungcadError(f"max_pixels must be a positive integer, not {max_pixels!r}")


def _read(data: bytes, fmt: str, label: str, *, frame, window, hu, max_pixels,
          max_decode_bytes=None) -> LoadedImage:
    if fmt in _RASTER:
        from lungcad.io.raster import read_raster
        return read_raster(data, fmt, label, frame=frame, max_pixels=max_pixels,
                           max_decode_bytes=max_decode_bytes)
    if fmt == "jsrt-raw":
        from lungcad.io.jsrt import read_jsrt_raw
        _only_frame_zero(frame, label)
        return read_jsrt_raw(data, label)
    if fmt == "npy":
        from lungcad.io.npy import read_npy
        _only_frame_zero(frame, label)
        return read_npy(data, label, max_pixels=max_pixels, max_decode_bytes=max_decode_bytes)
    from lungcad.io.dicom import read_dicom
    return read_dicom(data, label, frame=frame, window=window, hu=hu, max_pixels=max_pixels,
                      max_decode_bytes=max_decode_bytes)


def _only_frame_zero(frame: int | None, label: str) -> None:
    if frame not in (None, 0):
        raise LungcadError(f"{label} holds a single frame; frame={frame} is out of range")


@dataclass
class ModelInput:
    """One image given to a model (:func:`read_input`): the array in [0, 1], its metadata, and
    the name to show for it (the path, or ``"image"``)."""

    array: np.ndarray
    meta: ImageMeta
    source: str


def read_input(image, modality: str | None = None,
               spacing_mm: tuple[float, float] | None = None) -> ModelInput:
    """The one input step of every model service (predict, detect, segment, explain), like
    MONAI's ``LoadImage``: a path is read with :func:`load_image` (its own modality, else
    ``modality``; ``spacing_mm``, else its own pixel spacing); an array (2-D, in [0, 1], as
    ``load_image`` returns) is taken as it is, with ``modality`` and ``spacing_mm`` as its
    metadata where known."""
    if isinstance(image, (str, Path)):
        loaded = load_image(image)
        meta = loaded.meta
        if modality is not None and meta.modality == "unknown":
            meta.modality = modality
        if spacing_mm is not None:
            meta.pixel_spacing_mm = spacing_mm
        return ModelInput(loaded.array, meta, str(image))
    array = np.asarray(image, dtype=np.float32)
    meta = ImageMeta(format="array", original_shape=tuple(array.shape), bit_depth=32,
                     modality=modality or "unknown", pixel_spacing_mm=spacing_mm)
    return ModelInput(array, meta, "image")
