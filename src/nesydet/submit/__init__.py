"""``nesydet submit``: a client of the API, for scripts and shells. It only speaks HTTP to a
server: nothing of the app's services, database or storage is imported here (a contract in
``.importlinter``)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

FORMATS = ("json", "yolo", "yolo_obb", "coco", "voc")
API_KEY_ENV = "NESYDET_API_KEY"
EXIT_STATUSES = (
    "exit status: 0 every job completed and its results are in --out; 1 the server refused "
    "the request, or a job failed or was cancelled (its error code printed); 2 bad arguments "
    "or input, nothing sent; 3 the server could not be reached"
)


def _chunk_size(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= 100:
        raise argparse.ArgumentTypeError(f"expected a whole number from 1 to 100, got {text!r}")
    return value


def register(sub: Any) -> None:
    """Add the ``submit`` command to the ``nesydet`` parser."""
    p = sub.add_parser(
        "submit",
        help="send images to a server, follow the job, fetch the results archive",
        description=(
            "Upload images (a directory as one ZIP archive to /api/v1/inference/batch, or in "
            "uploads of at most 100 with --chunked or where the server has no batch endpoint), "
            "start the job, follow it, and unpack its results archive into --out/JOB_ID/."
        ),
        epilog=EXIT_STATUSES,
    )
    p.add_argument("inputs", nargs="+", type=Path, metavar="DIR_OR_FILE")
    p.add_argument("--server", required=True, help="the API's base URL, e.g. http://host:8000")
    p.add_argument("--out", type=Path, required=True, help="where the results go")
    p.add_argument(
        "--api-key", default=os.environ.get(API_KEY_ENV), help=f"an API key (or ${API_KEY_ENV})"
    )
    p.add_argument(
        "--config", default=None, help="the predict body's config as JSON, or @FILE holding it"
    )
    p.add_argument("--format", choices=FORMATS, default="json", help="label format (json)")
    p.add_argument(
        "--include",
        default="labels,annotated",
        help="parts of the results archive: labels, annotated, originals, thumbnails",
    )
    p.add_argument(
        "--chunked", action="store_true", help="uploads of --chunk-size images, one job each"
    )
    p.add_argument("--chunk-size", type=_chunk_size, default=100, help="1 to 100 (100)")
    p.add_argument(
        "--zip", action="store_true", help="keep the results as --out/JOB_ID.zip, not unpacked"
    )
    p.add_argument("--quiet", action="store_true", help="no progress on standard error")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``nesydet submit``; return its exit status."""
    from nesydet.submit.command import Options, submit
    from nesydet.submit.errors import EXIT_INTERRUPTED, SubmitError
    from nesydet.submit.inputs import parse_config

    try:
        return submit(
            Options(
                inputs=args.inputs,
                server=args.server,
                out=args.out,
                api_key=args.api_key,
                config=parse_config(args.config),
                fmt=args.format,
                include=args.include,
                chunked=args.chunked,
                chunk_size=args.chunk_size,
                keep_zip=args.zip,
                quiet=args.quiet,
            )
        )
    except SubmitError as exc:
        print(exc.render(), file=sys.stderr, flush=True)
        return exc.exit_status
    except KeyboardInterrupt:
        print("INTERRUPTED: stopped; a job already started goes on", file=sys.stderr)
        return EXIT_INTERRUPTED
