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
    extra = {} if args.max_pixels is None else {"max_pixels": args.max_pixels}
    return ServeSettings(host=args.host, port=args.port,
                         max_upload_bytes=int(args.max_upload_mb * MB), runtime=args.runtime,
                         threads=args.threads or available_cpus(), **extra)


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
    from lungcad.serving.loading import default_model_names

    settings = settings_from_args(args)
    # One prediction at a time per model (settings.inference_workers), so all CPUs go to it.
    torch.set_num_threads(settings.threads)
    names = args.models or default_model_names()
    app = create_app(names, settings)
    if settings.host not in LOOPBACK:
        print(f"lungcad serve: warning: listening on {settings.host}, reachable from other "
              "machines; there is no authentication", file=sys.stderr)
    shown = f"[{settings.host}]" if ":" in settings.host else settings.host
    print(f"lungcad serve: {', '.join(app.state.served)} on http://{shown}:{settings.port}/ "
          f"(API docs at /docs). {DISCLAIMER}", file=sys.stderr)
    try:
        uvicorn.run(app, host=settings.host, port=settings.port, log_level=args.log_level)
    except SystemExit as stop:  # uvicorn logs why (port in use...) and exits
        if stop.code:
            raise LungcadError(f"the server could not run on {settings.host}:{settings.port} "
                               "(see the message above: is the port in use? try --port)") from None
    return 0
