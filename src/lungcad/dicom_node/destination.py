"""Where results go over DIMSE: ``HOST:PORT:AET``, and a C-STORE SCU that sends them there."""

from __future__ import annotations

from dataclasses import dataclass

from lungcad.errors import LungcadError

RESULT_SOP_CLASSES = ("1.2.840.10008.5.1.4.1.1.88.34",  # Comprehensive 3D SR Storage
                      "1.2.840.10008.5.1.4.1.1.7")      # Secondary Capture Image Storage


@dataclass(frozen=True)
class Destination:
    host: str
    port: int
    aet: str

    def __str__(self) -> str:
        return f"{self.aet}@{self.host}:{self.port}"


def parse_destination(text: str) -> Destination:
    """``HOST:PORT:AET`` (the host may be a name, an IPv4 address or a bracketed IPv6 one)."""
    host, sep, rest = str(text).rpartition(":")
    host, sep2, port = host.rpartition(":")
    aet = rest.strip()
    if not sep or not sep2 or not host or not aet:
        raise LungcadError(f"--send-to {text!r}: give HOST:PORT:AET, e.g. 127.0.0.1:4242:ORTHANC")
    try:
        number = int(port)
    except ValueError:
        number = -1
    if not 0 < number < 65536:
        raise LungcadError(f"--send-to {text!r}: the port {port!r} is not a number from 1 to 65535")
    if len(aet) > 16:
        raise LungcadError(f"--send-to {text!r}: an AE title has at most 16 characters")
    return Destination(host.strip("[]"), number, aet)


def store(datasets, destination: Destination, calling_aet: str = "LUNGCAD",
          timeout: float = 30.0) -> None:
    """C-STORE ``datasets`` to ``destination`` over one association; a LungcadError naming
    the destination and the status where any is not stored."""
    from pynetdicom import AE
    from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian

    ae = AE(ae_title=calling_aet)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout
    for sop_class in RESULT_SOP_CLASSES:
        ae.add_requested_context(sop_class, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
    assoc = ae.associate(destination.host, destination.port, ae_title=destination.aet)
    if not assoc.is_established:
        raise LungcadError(f"cannot open an association with {destination} (is it running, and "
                           f"does it accept the calling AE title {calling_aet}?)")
    try:
        for ds in datasets:
            status = assoc.send_c_store(ds)
            code = getattr(status, "Status", None)
            if code is None:
                raise LungcadError(f"{destination} did not answer the C-STORE of "
                                   f"{ds.SOPInstanceUID} (connection lost or timed out)")
            if code not in (0x0000, 0xB000, 0xB007, 0xB006):
                raise LungcadError(f"{destination} refused {ds.SOPInstanceUID} with status "
                                   f"0x{code:04X}")
    finally:
        if assoc.is_established:
            assoc.release()
