"""``lungcad listen``: a DICOM Storage SCP that answers images with an SR and an overlay."""

from __future__ import annotations

import argparse

DESCRIPTION = """\
Receive images over DICOM (C-STORE), run the model on each and store its SR (TID 1500
measurement report) and overlay (secondary capture) to the --send-to node, e.g. the PACS or
Orthanc that sent them. Each image's C-STORE is answered after its results are stored:
Success; 0xC000 (cannot understand: not a readable DICOM image, or no model for it); 0xA700
(the destination did not take the results). A bad image never stops the node. SIGTERM or
Ctrl-C stop it cleanly (running associations finish first). See docs/dicom.md.

--model auto runs the bundled models of the image's modality, from its DICOM Modality tag
(CR/DX/DR/RG: radiograph, CT: CT), as `lungcad predict auto` does; one SR and one overlay per
model. Research software, not for diagnostic use.
"""


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "listen", help="DICOM node: receive images, store SR and overlay back",
        description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--aet", default="LUNGCAD", help="this node's AE title (default LUNGCAD)")
    parser.add_argument("--port", type=int, default=11112, help="port to listen on (default 11112)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1; 0.0.0.0 for every "
                             "interface)")
    parser.add_argument("--model", default="auto", metavar="M|auto",
                        help="model name or directory, or auto (by DICOM Modality; default)")
    parser.add_argument("--send-to", required=True, metavar="HOST:PORT:AET",
                        help="where to C-STORE the results, e.g. 127.0.0.1:4242:ORTHANC")
    parser.add_argument("--no-heatmap", action="store_true",
                        help="overlay without the saliency heatmap (faster)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import logging
    import signal
    import sys
    import threading

    from lungcad.dicom_node import DicomNode, parse_destination
    from lungcad.dicom_out import ModelChooser

    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s lungcad listen: %(levelname)s: %(message)s")
    for noisy in ("pynetdicom", "highdicom"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    destination = parse_destination(args.send_to)
    chooser = ModelChooser(args.model)
    if args.model != "auto":
        chooser.models_for(None)  # load (and check) the model before listening
    node = DicomNode(chooser, destination, aet=args.aet, host=args.host, port=args.port,
                     heatmap=not args.no_heatmap)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    node.start()
    print(f"lungcad listen: {args.aet} on {args.host}:{args.port}, model {args.model}, results "
          f"to {destination} (research software, not for diagnostic use)", flush=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        node.shutdown()
    print(f"lungcad listen: stopped: {node.stats.line()}", flush=True)
    return 0
