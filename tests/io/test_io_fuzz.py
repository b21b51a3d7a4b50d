"""Property-based fuzzing of every reader through load_image: damaged, truncated, mis-sized and
random inputs must end in a LungcadError with a message, or (where the damage left a valid file) a
finite 2-D float32 image in [0, 1]; never another exception type, a hang or garbage."""

from __future__ import annotations

import io

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from io_samples import (check_outcome, dicom_bytes, dicom_samples, npy_samples, raster_samples)

from lungcad.errors import LungcadError
from lungcad.io import load_image
from lungcad.io.jsrt import JSRT_BYTES

FUZZ = settings(max_examples=1000, deadline=None, database=None,
                suppress_health_check=list(HealthCheck))

RASTER_SAMPLES = {fmt: raster_samples(fmt) for fmt in ("png", "jpeg", "tiff", "bmp")}
DICOM_SAMPLES = dicom_samples()
NPY_SAMPLES = npy_samples()


@st.composite
def damaged(draw, base: bytes) -> bytes:
    """``base`` after one to four random edits: truncation, byte flips, spliced or overwritten
    garbage, a duplicated chunk. Offsets favour the first 300 bytes, where the headers are."""
    data = bytearray(base)

    def offset(limit: int) -> int:
        if limit <= 0:
            return 0
        near_header = st.integers(0, min(limit, 300))
        return draw(st.one_of(near_header, st.integers(0, limit)))

    for _ in range(draw(st.integers(1, 4))):
        edit = draw(st.sampled_from(("truncate", "flip", "flip", "splice", "overwrite",
                                     "duplicate", "zero-run")))
        if edit == "truncate":
            del data[offset(len(data)):]
        elif edit == "flip" and data:
            at = offset(len(data) - 1)
            data[at] ^= draw(st.integers(1, 255))
        elif edit == "splice":
            at = offset(len(data))
            data[at:at] = draw(st.binary(min_size=1, max_size=64))
        elif edit == "overwrite" and data:
            at = offset(len(data) - 1)
            garbage = draw(st.binary(min_size=1, max_size=16))
            data[at:at + len(garbage)] = garbage
        elif edit == "duplicate" and data:
            at = offset(len(data) - 1)
            data[at:at] = data[at:at + draw(st.integers(1, 128))]
        elif edit == "zero-run" and data:
            at = offset(len(data) - 1)
            data[at:at + draw(st.integers(1, 64))] = b"\x00" * draw(st.integers(0, 64))
    return bytes(data)


def _damaged_sample(samples: list[bytes]):
    return st.sampled_from(samples).flatmap(damaged)


@pytest.mark.parametrize("fmt", ["png", "jpeg", "tiff", "bmp"])
def test_damaged_raster_files(fmt: str) -> None:
    outcomes: list[str] = []

    @FUZZ
    @given(data=_damaged_sample(RASTER_SAMPLES[fmt]), frame=st.sampled_from([None, None, 0, 1]))
    def run(data: bytes, frame: int | None) -> None:
        outcomes.append(check_outcome(data, frame=frame))

    run()
    assert len(outcomes) >= 1000
    # Both branches were exercised: some damage is fatal, and some leaves a decodable file.
    assert "error" in outcomes and fmt in outcomes, sorted(set(outcomes))


def test_damaged_dicom_files() -> None:
    outcomes: list[str] = []

    @FUZZ
    @given(sample=st.sampled_from(DICOM_SAMPLES).flatmap(
        lambda s: st.tuples(damaged(s[0]), st.just(s[1]))),
           extra=st.sampled_from([{}, {}, {"frame": 0}, {"frame": 2}, {"window": "lung"},
                                  {"window": (50.0, 0.5)}, {"hu": True}]))
    def run(sample: tuple[bytes, dict], extra: dict) -> None:
        data, options = sample
        outcomes.append(check_outcome(data, **{**options, **extra}))

    run()
    assert len(outcomes) >= 1000
    assert "error" in outcomes and "dicom" in outcomes, sorted(set(outcomes))


# Header values a broken or hostile DICOM writer might put in, tag by tag.
_ODD_NUMBERS = st.sampled_from([0, 1, -1, 3, 7, 12, 15, 16, 17, 31, 32, 33, 64, 65535, 2 ** 31,
                                "", "abc", "nan", "inf", "-inf", "1e308", "3\\4"])
_DICOM_TAG_EDITS = st.dictionaries(
    st.sampled_from(["Rows", "Columns", "BitsAllocated", "BitsStored", "HighBit",
                     "PixelRepresentation", "SamplesPerPixel", "NumberOfFrames", "RescaleSlope",
                     "RescaleIntercept", "WindowCenter", "WindowWidth", "PlanarConfiguration",
                     "PhotometricInterpretation", "Modality", "VOILUTFunction", "PixelSpacing",
                     "PixelData", "TransferSyntaxUID"]),
    st.one_of(_ODD_NUMBERS, st.sampled_from(["MONOCHROME1", "MONOCHROME2", "RGB", "YBR_FULL",
                                             "PALETTE COLOR", "CT", "CR", "SIGMOID", "XYZ",
                                             "1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.5",
                                             "1.2.840.10008.1.2.4.80", "1.2.3"])),
    max_size=4)


@pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom warns as the odd values are set
@FUZZ
@given(base=st.sampled_from(range(len(DICOM_SAMPLES))), edits=_DICOM_TAG_EDITS,
       extra=st.sampled_from([{}, {"frame": 0}, {"hu": True}, {"window": "mediastinum"}]))
def test_dicom_with_odd_header_values(base: int, edits: dict, extra: dict) -> None:
    """Valid files re-written with implausible tag values (wrong sizes, bit depths, rescales,
    transfer syntaxes): the reader must refuse them cleanly, not crash or emit garbage."""
    import pydicom

    data, options = DICOM_SAMPLES[base]
    ds = pydicom.dcmread(io.BytesIO(data))
    for keyword, value in edits.items():
        try:
            if keyword == "TransferSyntaxUID":
                ds.file_meta.TransferSyntaxUID = str(value)
            elif keyword == "PixelData":
                ds.PixelData = ds.PixelData[: len(ds.PixelData) // 2] if value in (0, "") else \
                    ds.PixelData + b"\x00" * 8
            else:
                setattr(ds, keyword, value)
        except (ValueError, TypeError, OverflowError):
            continue  # pydicom refused the value itself: nothing to write
    buffer = io.BytesIO()
    try:
        ds.save_as(buffer, enforce_file_format=False)
    except Exception:  # noqa: BLE001 - an unwritable edit is not a reader test
        return
    check_outcome(buffer.getvalue(), **{**options, **extra})


def test_damaged_npy_files() -> None:
    outcomes: list[str] = []

    @FUZZ
    @given(data=_damaged_sample(NPY_SAMPLES))
    def run(data: bytes) -> None:
        outcomes.append(check_outcome(data))

    run()
    assert len(outcomes) >= 1000
    assert "error" in outcomes and "npy" in outcomes, sorted(set(outcomes))


@FUZZ
@given(size=st.one_of(st.integers(0, 4096), st.integers(JSRT_BYTES - 64, JSRT_BYTES + 64)),
       fill=st.integers(0, 255), name=st.sampled_from(["scan.img", "JPCLN001.IMG", None]))
def test_misized_jsrt_raw(size: int, fill: int, name: str | None) -> None:
    """Headerless data named .IMG (or with no name) of the wrong size: the error says so."""
    if size == JSRT_BYTES:
        return  # the right size: checked by test_full_size_jsrt_raw
    data = bytes([fill]) * size  # a constant fill never forms another format's signature
    assert check_outcome(data, name=name) == "error"
    if name is not None and size > 0:
        with pytest.raises(LungcadError, match=r"exactly 8,388,608 bytes"):
            load_image(data, name=name)


@settings(max_examples=12, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(seed=st.integers(0, 2 ** 32 - 1), bad_values=st.integers(0, 3),
       name=st.sampled_from(["scan.img", None]))
def test_full_size_jsrt_raw(seed: int, bad_values: int, name: str | None) -> None:
    """Full-size files: 12-bit content reads; any word above 4095 is refused."""
    rng = np.random.default_rng(seed)
    words = rng.integers(0, 4096, JSRT_BYTES // 2, dtype=np.uint16)
    words[rng.integers(0, words.size, bad_values)] = rng.integers(4096, 65536, bad_values)
    data = words.astype(">u2").tobytes()
    outcome = check_outcome(data, name=name)
    assert outcome == ("error" if bad_values else "jsrt-raw")


_SIGNATURES = [b"", b"", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"II*\x00", b"MM\x00*", b"BM",
               b"\x93NUMPY", b"\x93NUMPY\x01\x00", b"\x00" * 128 + b"DICM", b"\x08\x00\x05\x00CS",
               b"\x02\x00\x00\x00UL"]


@FUZZ
@given(signature=st.sampled_from(_SIGNATURES), body=st.binary(max_size=600),
       name=st.sampled_from([None, "x.png", "x.jpg", "x.dcm", "x.img", "x.npy", "x"]),
       frame=st.sampled_from([None, 0, 1]))
def test_random_bytes(signature: bytes, body: bytes, name: str | None, frame: int | None) -> None:
    """Arbitrary bytes, some behind a real signature so that each reader's parser is reached."""
    check_outcome(signature + body, name=name, frame=frame)


def test_dicom_builder_covers_compressed_and_multiframe() -> None:
    """The fuzz corpus includes what it claims (guards the tests above against a silent gap)."""
    import pydicom

    syntaxes = {str(pydicom.dcmread(io.BytesIO(d)).file_meta.TransferSyntaxUID)
                for d, _ in DICOM_SAMPLES}
    assert "1.2.840.10008.1.2.5" in syntaxes  # RLE Lossless
    assert "1.2.840.10008.1.2.2" in syntaxes  # big endian
    assert len(dicom_bytes(np.zeros((2, 2), np.uint16))) > 132
