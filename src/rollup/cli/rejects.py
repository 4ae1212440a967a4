"""`rollup rejects`: list quarantined trade rows with their reason (or count them by reason)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

from rollup.cli.common import tables_from
from rollup.errors import InputError

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

    from rollup.tables import Tables

COLUMNS = ("source_file", "source_row", "reason", "exchange", "symbol", "trade_id", "ts",
           "price", "quantity", "side", "rejected_at", "ingest_id")


def register(sub: Any) -> None:
    p = sub.add_parser("rejects", help="list quarantined trade rows and why they were rejected")
    p.add_argument("--file", help="only rows from this source file (as shown by ingest)")
    p.add_argument("--reason", help="only rows whose reason contains this text")
    p.add_argument("--ingest-id", help="only rows of this ingest run")
    p.add_argument("--summary", action="store_true",
                   help="count rows per source file and reason instead of listing them")
    p.add_argument("--format", default="table", choices=("table", "csv", "json", "parquet"))
    p.add_argument("--output", help="write to this file instead of stdout")
    p.add_argument("--limit", type=int, help="at most this many rows")
    p.set_defaults(handler=cmd_rejects)


def select_rejects(
    tables: Tables,
    *,
    file: str | None = None,
    reason: str | None = None,
    ingest_id: str | None = None,
    summary: bool = False,
) -> DataFrame:
    """Quarantined rows filtered by values (never SQL text), oldest first, or per-reason counts."""
    from pyspark.sql import functions as F

    from rollup.tables import REJECTED_TABLE

    if not tables.exists(REJECTED_TABLE):
        raise InputError(f"no {REJECTED_TABLE} table in namespace {tables.namespace!r}: "
                         "run `rollup init` or `rollup ingest` first")
    df = tables.spark.table(tables.name(REJECTED_TABLE))
    if file is not None:
        df = df.where(F.col("source_file") == F.lit(file))
    if reason is not None:
        df = df.where(F.col("reason").contains(F.lit(reason)))
    if ingest_id is not None:
        df = df.where(F.col("ingest_id") == F.lit(ingest_id))
    if summary:
        return df.groupBy("source_file", "reason").agg(F.count(F.lit(1)).alias("rows")).orderBy(
            "source_file", F.desc("rows"), "reason")
    return df.select(*COLUMNS).orderBy("rejected_at", "source_file", "source_row", "reason")


def cmd_rejects(args: argparse.Namespace) -> int:
    from rollup.export import to_pandas_utc

    if args.limit is not None and args.limit < 0:
        raise InputError(f"invalid --limit {args.limit}: expected a number >= 0")
    if args.format == "parquet" and not args.output:
        raise InputError("--format parquet needs --output FILE")
    tables = tables_from(args, create=False)
    df = select_rejects(tables, file=args.file, reason=args.reason, ingest_id=args.ingest_id,
                        summary=args.summary)
    if args.limit is not None:
        df = df.limit(args.limit)
    frame = to_pandas_utc(df)
    _write(frame, args.format, args.output)
    return 0


def _write(frame: Any, fmt: str, output: str | None) -> None:
    from pathlib import Path

    if fmt == "parquet":
        frame.to_parquet(Path(str(output)), index=False)
        return
    if fmt == "table":
        text = (frame.to_string(index=False) if len(frame) else "(no rejected rows)") + "\n"
    elif fmt == "csv":
        text = frame.to_csv(index=False, date_format="%Y-%m-%dT%H:%M:%S.%fZ")
    else:
        records = frame.astype(object).where(frame.notna(), None).to_dict(orient="records")
        text = "".join(json.dumps(r, default=_json_value) + "\n" for r in records)
    if output:
        Path(output).write_text(text)
    else:
        sys.stdout.write(text)


def _json_value(value: Any) -> Any:
    if hasattr(value, "isoformat"):
        return value.isoformat().replace("+00:00", "Z")
    return str(value)
