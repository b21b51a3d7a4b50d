"""``lungcad serve``: the web page and REST API for one or more models, under uvicorn."""

from __future__ import annotations

import argparse
import os
import sys

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "serve", help="serve models as a web page and a REST API",
        description="Serve one or more models: a web page at / (drop images, see the verdict, "
                    "probabilities and a heatmap), a REST API under /api/v1 and its docs at "
                    "/docs. Binds to 127.0.0.1 unless --host says otherwise. Research software, "
                    "not a medical device.")
    parser.add_argument("models", nargs="*", metavar="MODEL",
                        help="model directory, run folder or bundled model name (default: the "
                             "bundled models); the first is the default model")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    parser.add_argument("--max-upload-mb", type=float, default=64.0,
                        help="largest request accepted, in MB (default 64)")
    parser.add_argument("--max-pixels", type=int, default=None,
                        help="largest decoded image accepted, in pixels (default 40,000,000); "
                             "guards against decompression bombs")
    parser.add_argument("--max-decode-mb", type=float, default=None,
                        help="largest decoded image accepted, in MB: pixels x channels x bytes "
                             "per sample, read from the header before decoding (default 128)")
    parser.add_argument("--max-in-flight", type=int, default=None,
                        help="requests per model admitted at once (decoding, predicting or "
                             "waiting); beyond it the answer is 503 with Retry-After (default 8)")
    parser.add_argument("--upload-timeout", type=float, default=None, metavar="SECONDS",
                        help="seconds a request body may take to arrive; a slower one is "
                             "answered 408 (default 60)")
    parser.add_argument("--header-timeout", type=float, default=None, metavar="SECONDS",
                        help="seconds a connection may take to send its request headers; a "
                             "slower one is closed (default 10)")
    parser.add_argument("--allowed-host", action="append", default=[], metavar="NAME",
                        help="a host name (or address) the server answers to, besides the "
                             "--host address, localhost, 127.0.0.1 and [::1]; repeat for "
                             "several, '*' for any. Requests for other names are refused "
                             "(DNS rebinding)")
    parser.add_argument("--runtime", choices=("torch", "onnx"), default="torch",
                        help="run the models with PyTorch (default) or ONNX Runtime (a model "
                             "directory is exported on the fly and cached; an exported .onnx "
                             "file is also accepted; no heatmaps)")
    parser.add_argument("--threads", type=int, default=None,
                        help="threads for one prediction, PyTorch's and ONNX Runtime's "
                             "(default: the CPUs available to this process)")
    parser.add_argument("--log-level", default="info",
                        choices=("critical", "error", "warning", "info", "debug"))
    parser.set_defaults(func=run)


def settings_from_args(args: argparse.Namespace):
    from lungcad.errors import LungcadError
    from lungcad.serving.settings import MB, ServeSettings

    if not args.max_upload_mb > 0:
        raise LungcadError(f"--max-upload-mb must be positive, not {args.max_upload_mb:g}")
    if args.threads is not None and args.threads < 1:
        raise LungcadError(f"--threads must be at least 1, not {args.threads}")
    if args.max_decode_mb is not None and not args.max_decode_mb > 0:
        raise LungcadError(f"--max-decode-mb must be positive, not {args.max_decode_mb:g}")
    if args.max_in_flight is not None and args.max_in_flight < 1:
        raise LungcadError(f"--max-in-flight must be at least 1, not {args.max_in_flight}")
    for option, value in (("--upload-timeout", args.upload_timeout),
                          ("--header-timeout", args.header_timeout)):
        if value is not None and not 0 < value < float("inf"):
            raise LungcadError(f"{option} must be a positive number of seconds, not {value:g}")
    extra = {name: value for name, value in [
        ("max_pixels", args.max_pixels), ("max_in_flight", args.max_in_flight),
        ("body_timeout_s", args.upload_timeout), ("header_timeout_s", args.header_timeout),
        ("max_decode_bytes", None if args.max_decode_mb is None else int(args.max_decode_mb * MB)),
    ] if value is not None}
    return ServeSettings(host=args.host, port=args.port,
                         max_upload_bytes=int(args.max_upload_mb * MB), runtime=args.runtime,
                         threads=args.threads or available_cpus(),
                         allowed_hosts=tuple(args.allowed_host), **extra)


def available_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def run(args: argparse.Namespace) -> int:
    import torch
    import uvicorn

    from lungcad.errors import LungcadError
    from lungcad.disclaimer import DISCLAIMER
    from lungcad.serving.app import create_app
    from lungcad.serving.http_protocol import server_options
    from lungcad.serving.loading import default_model_names

    settings = settings_from_args(args)
    # One prediction at a time per model (settings.inference_workers), so all CPUs go to it.
    torch.set_num_threads(settings.threads)
    names = args.models or default_model_names()
    app = create_app(names, settings)
    if settings.host not in LOOPBACK:
        print(f"lungcad serve: warning: listening on {settings.host}, reachable from other "
              "machines; there is no authentication. Other machines must call it by a name "
              "given with --allowed-host", file=sys.stderr)
    shown = f"[{settings.host}]" if ":" in settings.host else settings.host
    print(f"lungcad serve: {', '.join(app.state.served)} on http://{shown}:{settings.port}/ "
          f"(API docs at /docs). {DISCLAIMER}", file=sys.stderr)
    try:
        uvicorn.run(app, host=settings.host, port=settings.port, log_level=args.log_level,
                    **server_options(settings))
    except SystemExit as stop:  # uvicorn logs why (port in use...) and exits
        if stop.code:
            raise LungcadError(f"the server could not run on {settings.host}:{settings.port} "
                               "(see the message above: is the port in use? try --port)") from None
    return 0
