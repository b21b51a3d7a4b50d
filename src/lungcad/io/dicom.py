"""DICOM through pydicom 3: CT in Hounsfield units (lung window by default), radiographs through
their VOI LUT or window tags, MONOCHROME1 inverted so that bone is bright."""

from __future__ import annotations

import io
import math
import warnings

import numpy as np

from lungcad.errors import LungcadError
from lungcad.io.base import (ImageMeta, LoadedImage, add_note, check_decode_bytes,
                             check_pixel_count, error_detail, error_text, finish, rgb_to_gray)

# (centre, width) in Hounsfield units.
CT_WINDOWS: dict[str, tuple[float, float]] = {"lung": (-600.0, 1500.0),
                                             "mediastinum": (40.0, 400.0)}
DEFAULT_CT_WINDOW = "lung"
_RADIOGRAPH_MODALITIES = {"CR", "DX", "DR", "RG"}
_PIXEL_DATA_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")


def read_dicom(data: bytes, label: str = "DICOM file", *, frame: int | None = None,
               window: str | tuple[float, float] | None = None, hu: bool = False,
               max_pixels: int = 100_000_000,
               max_decode_bytes: int | None = None) -> LoadedImage:
    """Decode one frame of a DICOM image to display convention (or to HU with ``hu=True``);
    refuse, from the header, a frame whose decoded samples exceed ``max_decode_bytes``."""
    ds = _parse(data, label)
    modality_tag = str(ds.get("Modality", "") or "").upper()
    modality = ("ct" if modality_tag == "CT"
                else "radiograph" if modality_tag in _RADIOGRAPH_MODALITIES else "unknown")
    photometric = str(ds.get("PhotometricInterpretation", "") or "").upper()
    n_frames, index = _check_geometry(ds, label, frame, max_pixels)
    check_decode_bytes(_int_tag(ds, "Columns"), _int_tag(ds, "Rows"),
                       _int_tag(ds, "SamplesPerPixel", 1),
                       max(1, -(-_int_tag(ds, "BitsAllocated", 16) // 8)), max_decode_bytes, label)
    stored = _decode(ds, label, index if n_frames > 1 else None)

    bits_stored = _int_tag(ds, "BitsStored", _int_tag(ds, "BitsAllocated", 16))
    meta = ImageMeta(format="dicom", original_shape=_stored_shape(ds, n_frames),
                     bit_depth=bits_stored, modality=modality,
                     pixel_spacing_mm=_pixel_spacing(ds, meta_notes := []),
                     photometric=photometric or "unknown",
                     patient_age=_text_tag(ds, "PatientAge"),
                     patient_sex=_text_tag(ds, "PatientSex"))
    for note in meta_notes:
        add_note(meta, f"{label}: {note}", warn=False)
    if n_frames > 1:
        add_note(meta, f"{label}: frame {index} of {n_frames}", warn=False)

    if stored.ndim == 3:  # colour (RGB after pydicom's YBR conversion, or palette colour)
        if hu or window is not None:
            raise LungcadError(f"{label} is a colour DICOM ({photometric}); hu and window apply "
                               "to grayscale CT and radiographs only")
        return finish(_colour_to_gray(stored, ds, meta, label), meta, label)
    if photometric not in ("MONOCHROME1", "MONOCHROME2"):
        raise LungcadError(f"{label} has Photometric Interpretation {photometric or 'missing'!r} "
                           "with one sample per pixel; lungcad reads MONOCHROME1/2 or RGB")

    values = _modality_values(ds, stored, meta, label)
    if not np.isfinite(values).all():
        raise LungcadError(f"{label} holds non-finite pixel values (NaN or infinity)")

    if hu:
        if modality != "ct":
            raise LungcadError(f"hu=True needs a CT image; {label} is modality "
                               f"{modality_tag or 'unknown'!r} with no Hounsfield units")
        meta.units = "HU"
        return finish(values, meta, label)

    if modality == "ct":
        centre, width = _window_pair(window if window is not None else DEFAULT_CT_WINDOW)
        display = _linear_window(values, centre, width)
        meta.window = (centre, width)
    elif isinstance(window, str):
        raise LungcadError(f"window={window!r} is a CT preset in Hounsfield units, but {label} "
                           f"is modality {modality_tag or 'unknown'!r}; give a (centre, width) "
                           "pair in the image's own values, or no window")
    elif window is not None:
        centre, width = _window_pair(window)
        display = _linear_window(values, centre, width)
        meta.window = (centre, width)
    else:
        display = _radiograph_display(ds, stored, values, meta, label)

    if photometric == "MONOCHROME1":  # low values are white: invert so that bone is bright
        display = 1.0 - display
    return finish(display, meta, label)


def _parse(data: bytes, label: str):
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pydicom warns on every odd tag of a damaged file
            ds = pydicom.dcmread(io.BytesIO(data), force=True)
            # dcmread is lazy about values: touch the ones we rely on while errors are catchable.
            for element in ds.iterall():
                _ = element.value
    except (InvalidDicomError, MemoryError) as error:
        raise LungcadError(f"{label} is not a readable DICOM file "
                           f"({error_detail(error)})") from error
    except Exception as error:  # pydicom's parser raises many types (BytesLengthException,
        # struct.error, ValueError...) on damaged data; all mean the same thing to a user.
        raise LungcadError(f"{label} is not a readable DICOM file: it is truncated or damaged "
                           f"({error_detail(error)})") from error
    if not any(keyword in ds for keyword in _PIXEL_DATA_KEYWORDS):
        raise LungcadError(f"{label} is DICOM but holds no image (no Pixel Data element); it may "
                           "be a report or structure set")
    return ds


def _modality_values(ds, stored: np.ndarray, meta: ImageMeta, label: str) -> np.ndarray:
    """Stored values through the Modality LUT or rescale (to HU for CT), as pydicom's
    apply_modality_lut does, with the tags checked first: damaged rescale values would otherwise
    crash numpy or silently turn the image into garbage."""
    from pydicom.pixels import apply_modality_lut

    if ds.get("ModalityLUTSequence"):
        try:
            return np.asarray(apply_modality_lut(stored, ds), dtype=np.float64)
        except Exception as error:  # malformed descriptor or LUT data
            raise LungcadError(f"{label}: its Modality LUT is damaged "
                               f"({error_detail(error)})") from error
    raw = {keyword: ds.get(keyword) for keyword in ("RescaleSlope", "RescaleIntercept")}
    present = {k: v for k, v in raw.items() if v is not None and str(v).strip() != ""}
    if len(present) < 2:
        if present or any(k in ds for k in raw):
            add_note(meta, f"{label}: incomplete rescale tags {raw}; stored values used as is "
                           "(as pydicom does)", warn=False)
        return stored.astype(np.float64)
    numbers = {}
    for keyword, value in present.items():
        try:
            if not isinstance(value, (str, bytes)) and hasattr(value, "__len__"):
                raise ValueError("several values")
            numbers[keyword] = float(value)
        except (TypeError, ValueError) as error:
            raise LungcadError(f"{label}: {keyword} is {value!r}, not one number; the file is "
                               "damaged") from error
        if not math.isfinite(numbers[keyword]) or abs(numbers[keyword]) > 1e12:
            raise LungcadError(f"{label}: {keyword} {value!r} is not a usable number")
    if numbers["RescaleSlope"] == 0:
        raise LungcadError(f"{label}: RescaleSlope is 0, which maps every pixel to the same "
                           "value; the file is damaged")
    return stored.astype(np.float64) * numbers["RescaleSlope"] + numbers["RescaleIntercept"]


def _int_tag(ds, keyword: str, default: int | None = None) -> int:
    value = ds.get(keyword, default)
    try:
        return int(value)
    except (TypeError, ValueError) as error:
        raise LungcadError(f"DICOM tag {keyword} is missing or not a number ({value!r})") from error


def _check_geometry(ds, label: str, frame: int | None, max_pixels: int) -> tuple[int, int]:
    """Validate size and frame choice before decoding anything; returns (frames, frame index)."""
    rows, columns = _int_tag(ds, "Rows"), _int_tag(ds, "Columns")
    samples = _int_tag(ds, "SamplesPerPixel", 1)
    n_frames = _int_tag(ds, "NumberOfFrames", 1) if ds.get("NumberOfFrames") not in (None, "") else 1
    if n_frames < 1 or samples not in (1, 3):
        raise LungcadError(f"{label} has an invalid header ({n_frames} frames, {samples} samples "
                           "per pixel)")
    check_pixel_count((rows, columns), max_pixels, label)
    if frame is None:
        if n_frames > 1:
            raise LungcadError(f"{label} is a multi-frame DICOM with {n_frames} frames; pass "
                               f"frame=N (0 to {n_frames - 1}) to pick one")
        return n_frames, 0
    if frame >= n_frames:
        raise LungcadError(f"{label} has {n_frames} frame(s); frame={frame} is out of range "
                           f"(use 0 to {n_frames - 1})")
    return n_frames, frame


def _stored_shape(ds, n_frames: int) -> tuple[int, ...]:
    shape = (int(ds.Rows), int(ds.Columns))
    samples = int(ds.get("SamplesPerPixel", 1))
    return ((n_frames,) if n_frames > 1 else ()) + shape + ((samples,) if samples > 1 else ())


def _decode(ds, label: str, index: int | None) -> np.ndarray:
    """Stored values of one frame, through pydicom's pixel-data plugins."""
    from pydicom.pixels import get_decoder, pixel_array

    syntax = _transfer_syntax(ds, label)
    if syntax is not None and syntax.is_compressed:
        try:
            decoder = get_decoder(syntax)
        except NotImplementedError as error:
            raise LungcadError(f"{label} uses the transfer syntax {syntax.name} ({syntax}), "
                               "which no pydicom plugin can decode; convert the file to an "
                               "uncompressed DICOM first") from error
        if not decoder.is_available:
            needs = "; ".join(decoder.missing_dependencies) or "a decoding plugin"
            raise LungcadError(
                f"{label} is compressed with {syntax.name}, and no installed package can "
                f"decode it. Install one of: {needs} (e.g. pip install pylibjpeg "
                "pylibjpeg-libjpeg pylibjpeg-openjpeg, or pip install python-gdcm)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if index is None:
                return np.asarray(ds.pixel_array)
            return np.asarray(pixel_array(ds, index=index))
    except MemoryError as error:
        raise LungcadError(f"{label}: not enough memory to decode its pixel data") from error
    except Exception as error:  # plugins raise anything from ValueError to RuntimeError
        raise LungcadError(f"{label}: its pixel data could not be decoded; the file is truncated "
                           f"or damaged ({error_detail(error)})") from error


def _transfer_syntax(ds, label: str):
    """The file's transfer syntax UID, None when the file meta has none (pydicom then guesses
    the encoding from the data), or a LungcadError when it names no known transfer syntax."""
    from pydicom.uid import UID

    file_meta = getattr(ds, "file_meta", None)
    value = file_meta.get("TransferSyntaxUID") if file_meta is not None else None
    if value is None or str(value).strip() == "":
        return None
    syntax = UID(str(value).strip())
    if not syntax.is_transfer_syntax:  # is_compressed would raise ValueError on it
        raise LungcadError(f"{label} names the transfer syntax {str(value)!r}, which is not a "
                           "DICOM transfer syntax; the file is damaged or non-standard")
    return syntax


def _pixel_spacing(ds, notes: list[str]) -> tuple[float, float] | None:
    """(row, column) spacing in mm from PixelSpacing, else ImagerPixelSpacing; None if neither is
    two positive numbers."""
    for keyword in ("PixelSpacing", "ImagerPixelSpacing"):
        value = ds.get(keyword)
        if value is None or value == "":
            continue
        try:
            row, column = (float(v) for v in value)
        except (TypeError, ValueError):
            notes.append(f"{keyword} {value!r} is not two numbers; ignored")
            continue
        if all(math.isfinite(v) and v > 0 for v in (row, column)):
            return row, column
        notes.append(f"{keyword} {list(value)} is not positive; pixel spacing unknown")
    return None


def _window_pair(window: str | tuple[float, float]) -> tuple[float, float]:
    if isinstance(window, str):
        return CT_WINDOWS[window]
    centre, width = (float(v) for v in window)
    return centre, width


def _linear_window(values: np.ndarray, centre: float, width: float,
                   function: str = "LINEAR") -> np.ndarray:
    """DICOM windowing (PS3.3 C.11.2.1.2) through pydicom, scaled to [0, 1]."""
    from pydicom.dataset import Dataset
    from pydicom.pixels import apply_windowing

    # A bare VOI module: unsigned 16-bit output range, no rescale, so the output is 0..65535
    # whatever the source file's own bit depth.
    voi = Dataset()
    voi.PhotometricInterpretation = "MONOCHROME2"
    voi.BitsStored = 16
    voi.PixelRepresentation = 0
    voi.WindowCenter = centre
    voi.WindowWidth = width
    voi.VOILUTFunction = function
    if function == "LINEAR" and width < 1:
        voi.VOILUTFunction = "LINEAR_EXACT"  # LINEAR needs width >= 1; same line, exact ends
    try:
        out = apply_windowing(values, voi)
    except ValueError as error:
        raise LungcadError(f"cannot apply window centre {centre:g}, width {width:g}: "
                           f"{error_text(error)}") from error
    return np.asarray(out, dtype=np.float64) / 65535.0


def _radiograph_display(ds, stored: np.ndarray, values: np.ndarray, meta: ImageMeta,
                        label: str) -> np.ndarray:
    """VOI LUT if present, else the file's window, else min-max of the stored values."""
    from pydicom.pixels import apply_voi

    if ds.get("VOILUTSequence"):
        try:
            item = ds.VOILUTSequence[0]
            depth = int(item.LUTDescriptor[2])
            out = apply_voi(values.astype(np.int64) if np.issubdtype(stored.dtype, np.integer)
                            else values, ds)
        except Exception as error:
            raise LungcadError(f"{label}: its VOI LUT is damaged ({error_text(error)})") from error
        add_note(meta, f"{label}: VOI LUT from the file applied", warn=False)
        return np.asarray(out, dtype=np.float64) / float(2 ** depth - 1)
    if "WindowCenter" in ds and "WindowWidth" in ds:
        centre, width = _first_number(ds.WindowCenter), _first_number(ds.WindowWidth)
        if centre is not None and width is not None and width > 0:
            function = str(ds.get("VOILUTFunction", "LINEAR") or "LINEAR").upper()
            if function not in ("LINEAR", "LINEAR_EXACT", "SIGMOID"):
                function = "LINEAR"
            meta.window = (centre, width)
            return _linear_window(values, centre, width, function)
        add_note(meta, f"{label}: window tags unusable ({ds.WindowCenter!r}, "
                       f"{ds.WindowWidth!r}); scaled by min-max instead", warn=False)
    low, high = float(values.min()), float(values.max())
    if high <= low:
        add_note(meta, f"{label}: every pixel has the same value ({low:g}); image is blank")
        return np.zeros_like(values)
    add_note(meta, f"{label}: no window in the file; scaled from min {low:g} to max {high:g}",
             warn=False)
    return (values - low) / (high - low)


def _first_number(value) -> float | None:
    """Window tags may hold several values (alternative views): use the first."""
    try:
        number = float(value[0] if hasattr(value, "__len__") and not isinstance(value, str)
                       else value)
    except (TypeError, ValueError, IndexError):
        return None
    return number if math.isfinite(number) else None


def _colour_to_gray(stored: np.ndarray, ds, meta: ImageMeta, label: str) -> np.ndarray:
    photometric = meta.photometric
    if photometric == "PALETTE COLOR":
        from pydicom.pixels import apply_color_lut
        try:
            stored = apply_color_lut(stored, ds)
        except Exception as error:
            raise LungcadError(f"{label}: its colour palette is damaged "
                               f"({error_text(error)})") from error
    if stored.ndim != 3 or stored.shape[2] != 3:
        raise LungcadError(f"{label}: unexpected colour pixel layout {stored.shape}")
    if np.issubdtype(stored.dtype, np.integer):
        top = float(2 ** (stored.dtype.itemsize * 8) - 1) if photometric == "PALETTE COLOR" \
            else float(2 ** _int_tag(ds, "BitsStored", 8) - 1)
        rgb = stored.astype(np.float32) / np.float32(top)
    else:
        raise LungcadError(f"{label}: colour pixels of type {stored.dtype} are not supported")
    return rgb_to_gray(np.clip(rgb, 0, 1), meta, label)


def _text_tag(ds, keyword: str) -> str | None:
    """A tag's text, None where absent or empty."""
    value = ds.get(keyword)
    text = str(value).strip() if value is not None else ""
    return text or None
