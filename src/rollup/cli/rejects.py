"""`rollup rejects`: list quarantined trade rows with their reason (or count them by reason)."""

from __future__ import annotations

import argparse
from typing import Any

from rollup.cli.common import tables_from
from rollup.errors import InputError
from rollup.readers.export import FORMATS


def register(sub: Any) -> None:
    p = sub.add_parser("rejects", help="list quarantined trade rows and why they were rejected")
    p.add_argument("--file", help="only rows from this source file (as shown by ingest)")
    p.add_argument("--reason", help="only rows whose reason contains this text")
    p.add_argument("--ingest-id", help="only rows of this ingest run")
    p.add_argument("--summary", action="store_true",
                   help="count rows per source file and reason instead of listing them")
    p.add_argument("--format", default="table", choices=FORMATS)
    p.add_argument("--output", help="write to this file instead of stdout")
    p.add_argument("--limit", type=int, help="at most this many rows")
    p.set_defaults(handler=cmd_rejects)


def cmd_rejects(args: argparse.Namespace) -> int:
    from rollup.readers.export import select_rejects, to_pandas_utc, write_frame

    if args.limit is not None and args.limit < 0:  # before Spark starts
        raise InputError(f"invalid --limit {args.limit}: expected a number >= 0")
    if args.format == "parquet" and not args.output:
        raise InputError("--format parquet needs --output FILE")
    df = select_rejects(tables_from(args, create=False), file=args.file, reason=args.reason,
                        ingest_id=args.ingest_id, summary=args.summary, limit=args.limit)
    write_frame(to_pandas_utc(df), args.format, args.output, empty="(no rejected rows)")
    return 0
