"""``lungcad predict MODEL INPUT... --engine ray --out DIR``: the prediction on Ray.

Not a verb of its own: ``lungcad predict`` hands its arguments here with ``--engine ray``; the
work is :func:`lungcad.engine.ray_predict.predict_on_ray`.
"""

from __future__ import annotations

import sys

RAY_OPTIONS = """\
With --engine ray (pip install 'lungcad[ray]'), --out is a folder: the images go through a pool
of --workers Ray actors (each loads the model once; --cpus-per-worker, --gpus-per-worker), on
the cluster at --address (`ray start --head`, KubeRay) or on a local Ray started for the run.
DIR gets predictions.csv, findings.csv (detectors) and errors.csv (one row per image that could
not be read or predicted, with the reason), the same rows as a local run, and shards/ (Parquet,
one folder per finished batch). Running the same command again skips the images already done
(same path, same bytes) and finishes the rest. docs/scale.md.
"""

REFUSED = (("heatmaps", "--heatmaps"), ("dicom_out", "--dicom-out"), ("findings", "--findings"))


def add_options(parser) -> None:
    group = parser.add_argument_group("engine", RAY_OPTIONS)
    group.add_argument("--engine", choices=("local", "ray"), default="local",
                       help="local (default: this process) or ray (Ray Data actor pool)")
    group.add_argument("--workers", type=int, default=2, metavar="N",
                       help="--engine ray: actors, each loading the model once (default 2)")
    group.add_argument("--cpus-per-worker", type=float, default=1.0, metavar="N",
                       help="--engine ray: CPUs (torch threads) per actor (default 1)")
    group.add_argument("--gpus-per-worker", type=float, default=0.0, metavar="N",
                       help="--engine ray: GPUs reserved per actor (default 0); lungcad's "
                            "models still run on the CPU (docs/scale.md)")
    group.add_argument("--address", metavar="ADDRESS",
                       help="--engine ray: join this Ray cluster (auto, HOST:6379 or "
                            "ray://HOST:10001) instead of starting a local Ray")


def check_local(args) -> None:
    """Ray-only options given without --engine ray are refused, not ignored."""
    from lungcad.errors import LungcadError

    given = [flag for flag, value, default in (
        ("--address", args.address, None), ("--workers", args.workers, 2),
        ("--cpus-per-worker", args.cpus_per_worker, 1.0),
        ("--gpus-per-worker", args.gpus_per_worker, 0.0)) if value != default]
    if given:
        raise LungcadError(f"{', '.join(given)}: only with --engine ray")


def run_ray(args, report_failure) -> int:
    from lungcad.engine.ray_predict import predict_on_ray
    from lungcad.errors import LungcadError

    if args.out is None:
        raise LungcadError("--engine ray writes into a folder: give --out DIR")
    for name, flag in REFUSED:
        if getattr(args, name) is not None:
            raise LungcadError(f"{flag} is not available with --engine ray yet; run it locally")
    result = predict_on_ray(args.model, args.inputs, args.out, workers=args.workers,
                            cpus_per_worker=args.cpus_per_worker,
                            gpus_per_worker=args.gpus_per_worker, batch_size=args.batch_size,
                            address=args.address, runtime=args.runtime, split_path=args.split,
                            part=args.part or "test", fold=args.fold, frame=args.frame,
                            age=args.age, sex=args.sex, progress=sys.stderr.isatty())
    for note in result.notes:
        print(f"lungcad predict: note: {note}", file=sys.stderr)
    for path, reason in result.skipped:
        print(f"lungcad predict: skipped: {path}: {reason}", file=sys.stderr)
    for row in result.errors.itertuples():
        report_failure(str(row.path), str(row.reason))
    marks = ("" if result.findings is None
             else f", {len(result.findings)} mark(s) in {args.out / 'findings.csv'}")
    print(f"wrote {len(result.predictions)} prediction(s) to {args.out / 'predictions.csv'}"
          f"{marks}; {result.n_run} image(s) run now, {result.n_done_before} done before")
    problems = []
    if len(result.errors):
        problems.append(f"{len(result.errors)} of {result.n_inputs} image(s) could not be "
                        f"predicted (listed in {args.out / 'errors.csv'})")
    if result.skipped:
        problems.append(f"{len(result.skipped)} entry(ies) skipped (named above)")
    if problems:
        print("lungcad predict: " + "; ".join(problems), file=sys.stderr)
        return 1
    return 0
