"""Throughput of the DICOM node (`lungcad listen`): N images over ONE association on localhost,
received, run through the model (with the heatmap overlay), and their SR and overlay C-STOREd
to a destination.

The destination is a real PACS where one is given (``--send-to HOST:PORT:AET``, e.g. an Orthanc
started as docs/dicom.md shows), else a minimal pynetdicom Storage SCP in this process that
keeps what it receives in memory. The node runs in this process too (``DicomNode``, the code
`lungcad listen` runs). One image is sent first, on its own association, to load the model and
warm the saliency explainer; it is not counted.

Images: copies of pydicom's CT_small.dcm (128 x 128 CT slice, model ct-normal-vs-abnormal) or,
with ``--image rg1``, of RG1_UNCI.dcm (1955 x 1841 CR, model jsrt-malignant), each with new
UIDs. Prints images per second received (C-STORE answered), processed (model run) and stored
back (results taken by the destination), each from the association's start, and the time the
node spent making each received image durable in its spool (write, fsync, rename, fsync of the
folder) before answering Success. ``--no-fsync`` skips the fsyncs (a crash could then lose an
image answered Success; `lungcad listen` always fsyncs): the difference is the cost of fsync.
The spool is a temporary folder (``--spool DIR`` to put it on another disk).

    python benchmarks/dicom_node_throughput.py [--images 50] [--image ct|rg1] [--no-heatmap]
                                               [--no-fsync] [--spool DIR]
"""

from __future__ import annotations

import argparse
import copy
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from machine import describe, provisional_note  # noqa: E402

SAMPLES = {"ct": ("CT_small.dcm", "ct-normal-vs-abnormal"),
           "rg1": ("RG1_UNCI.dcm", "jsrt-malignant")}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_sink(port: int):
    """A Storage SCP that accepts lungcad's results (SR, secondary capture) and counts them."""
    from pynetdicom import AE, evt
    from pynetdicom.sop_class import Comprehensive3DSRStorage, SecondaryCaptureImageStorage

    received: list[float] = []
    lock = threading.Lock()

    def on_store(event):
        event.dataset  # decode, as a PACS would
        with lock:
            received.append(time.perf_counter())
        return 0x0000

    ae = AE(ae_title="SINK")
    ae.add_supported_context(Comprehensive3DSRStorage)
    ae.add_supported_context(SecondaryCaptureImageStorage)
    server = ae.start_server(("127.0.0.1", port), block=False,
                             evt_handlers=[(evt.EVT_C_STORE, on_store)])
    return server, received


def copies(template, n: int) -> list:
    from pydicom.uid import generate_uid

    study, series = generate_uid(), generate_uid()
    out = []
    for i in range(n):
        ds = copy.deepcopy(template)
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.InstanceNumber = i + 1
        out.append(ds)
    return out


def send(port: int, datasets: list) -> list[int]:
    from pynetdicom import AE

    ae = AE(ae_title="BENCH")
    ae.add_requested_context(datasets[0].SOPClassUID, datasets[0].file_meta.TransferSyntaxUID)
    assoc = ae.associate("127.0.0.1", port, ae_title="LUNGCAD")
    if not assoc.is_established:
        raise SystemExit("the node did not accept the association")
    statuses = [getattr(assoc.send_c_store(ds), "Status", -1) for ds in datasets]
    assoc.release()
    return statuses


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=50)
    parser.add_argument("--image", choices=sorted(SAMPLES), default="ct")
    parser.add_argument("--no-heatmap", action="store_true")
    parser.add_argument("--no-fsync", action="store_true",
                        help="spool without fsync (to measure its cost)")
    parser.add_argument("--spool", metavar="DIR", help="spool folder (default: a temporary one)")
    parser.add_argument("--send-to", metavar="HOST:PORT:AET",
                        help="a real destination (default: an in-process Storage SCP)")
    args = parser.parse_args()

    import pydicom
    import torch
    from pydicom.data import get_testdata_file

    from lungcad.dicom_node import DicomNode, parse_destination
    from lungcad.dicom_out import ModelChooser

    torch.set_num_threads(1)
    print(describe(("lungcad", "torch", "pydicom", "pynetdicom", "highdicom")))
    filename, model = SAMPLES[args.image]
    template = pydicom.dcmread(get_testdata_file(filename))
    sink = None
    if args.send_to:
        destination, where = parse_destination(args.send_to), args.send_to
    else:
        sink_port = free_port()
        sink = start_sink(sink_port)
        destination, where = parse_destination(f"127.0.0.1:{sink_port}:SINK"), "in-process SCP"
    spool_parent = tempfile.TemporaryDirectory(dir=args.spool)
    node = DicomNode(ModelChooser(model), destination, port=free_port(),
                     heatmap=not args.no_heatmap, spool=Path(spool_parent.name) / "spool",
                     durable=not args.no_fsync)
    node.start()
    try:
        send(node.port, copies(template, 1))  # warm-up: load the model, build the explainer
        node.wait_idle()
        before = (node.stats.processed, node.stats.stored)
        spooled = (node.spool.writes, node.spool.write_seconds)
        images = copies(template, args.images)
        start = time.perf_counter()
        statuses = send(node.port, images)
        received_s = time.perf_counter() - start
        done_processing = None
        while node.stats.stored + node.stats.failed - before[1] < args.images:
            if done_processing is None and node.stats.processed - before[0] >= args.images:
                done_processing = time.perf_counter() - start
            time.sleep(0.01)
        stored_s = time.perf_counter() - start
        done_processing = done_processing or stored_s
        writes = node.spool.writes - spooled[0]
        write_ms = 1000 * (node.spool.write_seconds - spooled[1]) / max(1, writes)
    finally:
        node.shutdown()
        spool_parent.cleanup()
        if sink is not None:
            sink[0].shutdown()
    ok = sum(s == 0 for s in statuses)
    n = args.images
    print(f"{n} x {filename} ({template.Rows} x {template.Columns}), model {model}, heatmap "
          f"{'off' if args.no_heatmap else 'on'}, one association on localhost, results to "
          f"{where}; spool {'without fsync' if args.no_fsync else 'durable (fsync)'}")
    print(f"accepted {ok}/{n}; processed {node.stats.processed - before[0]}, stored back "
          f"{node.stats.stored - before[1]}, failed {node.stats.failed}")
    print(f"spool:     {write_ms:7.2f} ms per received image to write it "
          f"{'(no fsync)' if args.no_fsync else '(write, fsync, rename, fsync folder)'}")
    print(f"received:  {n / received_s:7.2f} images/s ({received_s:.2f} s)")
    print(f"processed: {n / done_processing:7.2f} images/s ({done_processing:.2f} s)")
    print(f"stored:    {n / stored_s:7.2f} images/s ({stored_s:.2f} s, end to end)")
    print(provisional_note())


if __name__ == "__main__":
    main()
