"""``lungcad listen``: a DICOM Storage SCP that answers images with an SR and an overlay."""

from __future__ import annotations

import argparse

DESCRIPTION = """\
Receive images over DICOM (C-STORE), run the model on each and store its SR (TID 1500
measurement report) and overlay (secondary capture) to the --send-to node, e.g. the PACS or
Orthanc that sent them.

Each image's C-STORE is answered once the image is on disk in the --spool folder (written,
fsynced, renamed), before any model runs: Success (it is kept until the destination has taken
all its results, across crashes and restarts); 0xC000 (cannot understand: not a readable DICOM
image, or no model for it); 0xA700 (out of resources: the spool holds --spool-max-instances
images or --spool-max-mb, or the disk failed; send again later). A worker runs the spooled
images one at a time; results wait in the spool's outbox and are C-STOREd with retries and
backoff (--retry-attempts, --retry-first, --retry-max: by default 12 attempts over about 1 h),
then the image goes to the spool's failed/ folder with reason.txt, logged and listed on stop.
Results have UIDs derived from the image's SOP Instance UID and the model and its version, so a
retry or a restart never stores a second copy. On start the node resumes what the spool holds.
A bad image never stops the node. SIGTERM or Ctrl-C stop it cleanly (running associations
finish, the image in hand is finished, the rest stays in the spool). See docs/dicom.md.

--model auto runs the bundled models of the image's modality, from its DICOM Modality tag
(CR/DX/DR/RG: radiograph, CT: CT), as `lungcad predict auto` does; one SR and one overlay per
model. Research software, not for diagnostic use.
"""


def default_spool(aet: str) -> str:
    import os
    from pathlib import Path

    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return str(Path(state) / "lungcad" / "listen" / aet)


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
    parser.add_argument("--spool", metavar="DIR", default=None,
                        help="folder for received images, results waiting for the destination "
                             "and failed/ (default $XDG_STATE_HOME/lungcad/listen/AET, i.e. "
                             "~/.local/state/lungcad/listen/AET); one node per folder")
    parser.add_argument("--spool-max-instances", type=int, default=500, metavar="N",
                        help="images held at most (received, not yet delivered); beyond it "
                             "C-STOREs are answered 0xA700 (default 500)")
    parser.add_argument("--spool-max-mb", type=float, default=4096, metavar="MB",
                        help="megabytes held at most (images and their results); beyond it "
                             "0xA700 (default 4096)")
    parser.add_argument("--retry-attempts", type=int, default=12, metavar="N",
                        help="attempts to store an image's results before it goes to failed/ "
                             "(default 12)")
    parser.add_argument("--retry-first", type=float, default=10.0, metavar="SECONDS",
                        help="wait after the first failed attempt, doubled after each "
                             "further one (default 10)")
    parser.add_argument("--retry-max", type=float, default=600.0, metavar="SECONDS",
                        help="longest wait between attempts (default 600)")
    parser.add_argument("--store-timeout", type=float, default=30.0, metavar="SECONDS",
                        help="network timeout of one attempt to store (default 30)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import logging
    import signal
    import sys
    import threading

    from lungcad.dicom_node import DicomNode, RetryPolicy, parse_destination
    from lungcad.dicom_node.spool import MB
    from lungcad.dicom_out import ModelChooser
    from lungcad.errors import LungcadError

    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s lungcad listen: %(levelname)s: %(message)s")
    for noisy in ("pynetdicom", "highdicom"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    destination = parse_destination(args.send_to)
    if args.spool_max_instances < 1 or not args.spool_max_mb > 0 or not args.store_timeout > 0:
        raise LungcadError("--spool-max-instances, --spool-max-mb and --store-timeout must be "
                           "positive")
    retry = RetryPolicy(args.retry_attempts, args.retry_first, args.retry_max)
    spool = args.spool or default_spool(args.aet)
    chooser = ModelChooser(args.model)
    if args.model != "auto":
        chooser.models_for(None)  # load (and check) the model before listening
    node = DicomNode(chooser, destination, spool=spool, aet=args.aet, host=args.host,
                     port=args.port, heatmap=not args.no_heatmap, retry=retry,
                     max_instances=args.spool_max_instances,
                     max_bytes=int(args.spool_max_mb * MB), store_timeout=args.store_timeout)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    node.start()
    print(f"lungcad listen: {args.aet} on {args.host}:{args.port}, model {args.model}, results "
          f"to {destination} ({retry.describe()}), spool {spool} (research software, not for "
          "diagnostic use)", flush=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        node.shutdown()
    print(f"lungcad listen: stopped: {node.stats.line()}", flush=True)
    for key, reason in node.deliverer.failed_now:
        print(f"lungcad listen: failed: instance {key} (in {node.spool.failed / key}): {reason}",
              flush=True)
    held = node.spool.usage()[0]
    if held:
        print(f"lungcad listen: {held} instance(s) wait in the spool {spool}; they are resumed "
              "on the next start", flush=True)
    return 0
