"""Small valid image files of every format lungcad reads, built in memory, plus the check every
reader's outcome must pass. Shared by the reader tests and the fuzz tests in this folder."""

from __future__ import annotations

import io
import time
import warnings

import numpy as np
from PIL import Image

from lungcad.errors import LungcadError
from lungcad.io import load_image

# The fuzz tests allow this long per read; a reader that loops on damaged input fails loudly.
# Generous: a first read that imports a codec on a loaded 2-core machine took 5.2 s once.
MAX_SECONDS_PER_READ = 30.0


def pil_bytes(image: Image.Image, fmt: str, **save_options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **save_options)
    return buffer.getvalue()


def gradient(height: int, width: int) -> np.ndarray:
    """Values in [0, 1] that differ along both axes, so a transposed or flipped read shows."""
    rows = np.linspace(0.0, 1.0, height, dtype=np.float64)[:, None]
    cols = np.linspace(0.0, 1.0, width, dtype=np.float64)[None, :]
    return (0.7 * rows + 0.3 * cols).clip(0.0, 1.0)


def raster_samples(fmt: str) -> list[bytes]:
    """A handful of small valid files of ``fmt`` ('png', 'jpeg', 'tiff', 'bmp') in the modes a
    user is likely to send: 8-bit gray, 16-bit gray, RGB, RGBA, palette, several sizes."""
    rng = np.random.default_rng(7)
    out: list[bytes] = []
    for height, width in ((1, 1), (3, 5), (16, 9), (24, 24)):
        gray8 = (gradient(height, width) * 255).round().astype(np.uint8)
        gray16 = (gradient(height, width) * 65535).round().astype(np.uint16)
        rgb = np.stack([gray8, gray8, gray8], axis=2)
        rgb[: max(1, height // 3), : max(1, width // 3)] = (255, 0, 0)  # a red mark
        rgba = np.concatenate([rgb, rng.integers(0, 256, (height, width, 1), dtype=np.uint8)], 2)
        pil_format = {"png": "PNG", "jpeg": "JPEG", "tiff": "TIFF", "bmp": "BMP"}[fmt]
        out.append(pil_bytes(Image.fromarray(gray8), pil_format))
        out.append(pil_bytes(Image.fromarray(rgb), pil_format))
        if fmt in ("png", "tiff"):
            out.append(pil_bytes(Image.fromarray(gray16), pil_format))
            out.append(pil_bytes(Image.fromarray(rgba), pil_format))
        if fmt in ("png", "bmp", "tiff"):
            out.append(pil_bytes(Image.fromarray(rgb).quantize(8), pil_format))
        if fmt == "tiff":
            out.append(pil_bytes(Image.fromarray(gray8), "TIFF",
                                 compression="tiff_lzw"))
            out.append(pil_bytes(Image.fromarray(gradient(height, width).astype(np.float32),
                                                 ), "TIFF"))
        if fmt == "jpeg":
            out.append(pil_bytes(Image.fromarray(gray8), "JPEG", progressive=True))
    if fmt == "tiff":  # two pages: needs frame=
        pages = [Image.fromarray(np.full((4, 4), v, np.uint8)) for v in (10, 200)]
        buffer = io.BytesIO()
        pages[0].save(buffer, format="TIFF", save_all=True, append_images=pages[1:])
        out.append(buffer.getvalue())
    return out


def dicom_bytes(pixels: np.ndarray, *, modality: str = "CT", photometric: str = "MONOCHROME2",
                bits_stored: int | None = None, slope: float | None = None,
                intercept: float | None = None, window: tuple[float, float] | None = None,
                frames: int = 1, little_endian: bool = True, implicit_vr: bool = False,
                voi_lut: np.ndarray | None = None, rle: bool = False) -> bytes:
    """A minimal, valid DICOM file (Secondary Capture) holding ``pixels``: (H, W) or (F, H, W)
    integers, or (H, W, 3) uint8 RGB."""
    import pydicom
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import (ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian,
                             RLELossless, SecondaryCaptureImageStorage, generate_uid)

    pixels = np.asarray(pixels)
    colour = pixels.ndim == 3 and frames == 1
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = (ImplicitVRLittleEndian if implicit_vr else
                              ExplicitVRLittleEndian if little_endian else ExplicitVRBigEndian)
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = modality
    ds.PatientName = "Fuzz^Test"
    ds.Rows, ds.Columns = int(pixels.shape[-3 if colour else -2]), int(
        pixels.shape[-2 if colour else -1])
    ds.SamplesPerPixel = 3 if colour else 1
    ds.PhotometricInterpretation = "RGB" if colour else photometric
    if colour:
        ds.PlanarConfiguration = 0
    ds.BitsAllocated = pixels.dtype.itemsize * 8
    ds.BitsStored = bits_stored or ds.BitsAllocated
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 1 if pixels.dtype.kind == "i" else 0
    ds.PixelSpacing = [0.5, 0.5]
    if frames > 1:
        ds.NumberOfFrames = frames
    if slope is not None:
        ds.RescaleSlope = slope
    if intercept is not None:
        ds.RescaleIntercept = intercept
    if window is not None:
        ds.WindowCenter, ds.WindowWidth = window
    if voi_lut is not None:
        item = Dataset()
        item.LUTDescriptor = [len(voi_lut), 0, 16]
        item.LUTData = np.asarray(voi_lut, dtype="<u2").tobytes()
        ds.VOILUTSequence = [item]
    ds.PixelData = pixels.astype(pixels.dtype.newbyteorder("<" if little_endian or implicit_vr
                                                           else ">")).tobytes()
    if rle:
        ds.compress(RLELossless, encoding_plugin="pydicom")
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, ds, enforce_file_format=True,
                     little_endian=little_endian or implicit_vr, implicit_vr=implicit_vr)
    return buffer.getvalue()


def encapsulated_dicom_bytes(frame_bytes: bytes, rows: int, columns: int, syntax: str,
                             bits: int = 8) -> bytes:
    """A one-frame grayscale DICOM whose pixel data is ``frame_bytes`` encapsulated under the
    compressed transfer syntax ``syntax`` (e.g. a JPEG file's bytes for JPEG Baseline)."""
    import pydicom
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.encaps import encapsulate
    from pydicom.uid import SecondaryCaptureImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = syntax
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = SecondaryCaptureImageStorage, meta.MediaStorageSOPInstanceUID
    ds.Modality = "OT"
    ds.Rows, ds.Columns = rows, columns
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = bits, bits, bits - 1, 0
    ds.PixelData = encapsulate([frame_bytes])
    ds["PixelData"].VR = "OB"
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, ds, enforce_file_format=True)
    return buffer.getvalue()


def jpeg_dicom_bytes(gray8: np.ndarray) -> bytes:
    """JPEG Baseline DICOM (decoded by pydicom's Pillow plugin, no extra package needed)."""
    return encapsulated_dicom_bytes(pil_bytes(Image.fromarray(gray8), "JPEG", quality=95),
                                    gray8.shape[0], gray8.shape[1], "1.2.840.10008.1.2.4.50")


def dicom_samples() -> list[tuple[bytes, dict]]:
    """Small valid DICOM files covering the decode paths, with the load_image options each needs."""
    rng = np.random.default_rng(11)
    ct = rng.integers(-1024, 1500, (8, 6)).astype(np.int16)
    cr = rng.integers(0, 4096, (7, 9)).astype(np.uint16)
    lut = np.linspace(0, 65535, 4096).astype(np.uint16)
    rgb = rng.integers(0, 256, (5, 4, 3)).astype(np.uint8)
    return [
        (dicom_bytes(ct, slope=1.0, intercept=0.0), {}),
        (dicom_bytes((ct + 1024).astype(np.uint16), slope=1.0, intercept=-1024.0), {"hu": True}),
        (dicom_bytes(ct, implicit_vr=True), {"window": "mediastinum"}),
        (dicom_bytes(ct, little_endian=False), {}),
        (dicom_bytes(cr, modality="CR", photometric="MONOCHROME1", bits_stored=12), {}),
        (dicom_bytes(cr, modality="DX", bits_stored=12, window=(2048, 4096)), {}),
        (dicom_bytes(cr, modality="CR", bits_stored=12, voi_lut=lut), {}),
        (dicom_bytes(cr.astype(np.uint8), modality="OT"), {}),
        (dicom_bytes(cr, modality="CR", bits_stored=12, rle=True), {}),
        (dicom_bytes(np.stack([ct, ct // 2, ct // 3]), frames=3), {"frame": 1}),
        (dicom_bytes(rgb, modality="OT"), {}),
        (jpeg_dicom_bytes((gradient(16, 8) * 255).astype(np.uint8)), {}),
    ]


def npy_samples() -> list[bytes]:
    out = []
    for array in (gradient(4, 3).astype(np.float32), gradient(5, 2),
                  (gradient(3, 3) * 255).astype(np.uint8),
                  (gradient(6, 2) * 65535).astype(np.uint16),
                  (gradient(2, 7) * 255).astype(np.uint8)[..., None],
                  np.asfortranarray(gradient(4, 5).astype(">f4"))):
        buffer = io.BytesIO()
        np.save(buffer, array, allow_pickle=False)
        out.append(buffer.getvalue())
    return out


def check_outcome(data: bytes, **options) -> str:
    """Read ``data`` with load_image and check the contract: a LungcadError with a message, or a
    finite 2-D float32 image in [0, 1] with both sides >= 1, within the time allowed. Returns
    'error' or the format read, so callers can see that valid inputs do get through."""
    started = time.perf_counter()
    try:
        with warnings.catch_warnings():
            # Readers warn (ImageReadWarning) about dropped colour or alpha: that is expected.
            warnings.simplefilter("ignore")
            loaded = load_image(data, **options)
    except LungcadError as error:
        outcome = "error"
        assert str(error).strip(), "LungcadError without a message"
        # load_image turns any other exception a reader lets out into a generic LungcadError
        # (a safety net, worded as below). Readers must catch their own failures and say what
        # was wrong, so the net must never be needed.
        assert "the file is damaged or unsupported (" not in str(error), str(error)
    else:
        array = loaded.array
        assert isinstance(array, np.ndarray) and array.dtype == np.float32, array.dtype
        assert array.ndim == 2 and array.shape[0] >= 1 and array.shape[1] >= 1, array.shape
        assert np.isfinite(array).all(), "non-finite pixels"
        if loaded.meta.units == "display":
            assert 0.0 <= float(array.min()) and float(array.max()) <= 1.0
        outcome = loaded.meta.format
    elapsed = time.perf_counter() - started
    assert elapsed < MAX_SECONDS_PER_READ, f"read took {elapsed:.1f} s (a hang?)"
    return outcome
