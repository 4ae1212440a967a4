"""`rollup bench`: the benchmark suite (see docs/benchmarks.md and `rollup.benchmarks.suite`)."""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

from rollup.cli.common import progress, settings_from


def register(sub: Any) -> None:
    p = sub.add_parser(
        "bench",
        help="measure the cascade against the direct approach, DuckDB and itself at scale, "
             "and ingest",
        description="Prints a table, then one JSON line with the ratios. Without --warehouse "
                    "the Iceberg part uses a scratch warehouse that is deleted afterwards.",
    )
    p.add_argument("--trades", default=None,
                   help="trades of the main measurements, e.g. 5M or 200k (default 5M)")
    p.add_argument("--sizes", default=None,
                   help="comma-separated sizes for time per trade (default 1M,5M,20M)")
    p.add_argument("--symbols", type=int, default=None, help="symbols (default 20)")
    p.add_argument("--repeats", type=int, default=None,
                   help="timed repetitions per figure; the median is reported (default 3)")
    p.add_argument("--warmups", type=int, default=None,
                   help="untimed warm-up rounds before the timed ones (default 4, --quick 0; "
                        "0 also skips the scaling and ingest warm-ups)")
    p.add_argument("--history-per-day", default=None,
                   help="trades per day of incremental history (default 200k)")
    p.add_argument("--history-days", default=None, metavar="SHORT,LONG",
                   help="days of the short and the long incremental history (default 1,30)")
    p.add_argument("--scattered-windows", type=int, default=None, metavar="N",
                   help="separate 1m windows of the scattered late batch over the long "
                        "history (default 10000, --quick 40; 0 skips it)")
    p.add_argument("--ingest-rows", default=None, metavar="N",
                   help="trades of the CSV and the Parquet file of the ingest figures "
                        "(default 1M, --quick 300; 0 skips the ingest figures)")
    p.add_argument("--late-batch", default=None, metavar="N",
                   help="trades of the late batch ingested into 1 and 30 days of history "
                        "(default 10k)")
    p.add_argument("--only", "--parts", dest="only", default=None, metavar="PART[,PART]",
                   help="run only these parts: plan (1m, cascade, direct, DuckDB), incremental "
                        "(with the scattered batch and cycle_s), scaling, ingest, follow "
                        "(follow_lag)")
    p.add_argument("--follow-commits", type=int, default=None, metavar="N",
                   help="commits of the follow_lag writer (default 24, --quick 2)")
    p.add_argument("--follow-interval", type=float, default=None, metavar="S",
                   help="seconds between two commits of the writer (default 5, --quick 1)")
    p.add_argument("--follow-trades", default=None, metavar="N",
                   help="trades per commit of the writer (default 5000, --quick 100)")
    p.add_argument("--follow-poll", type=float, default=None, metavar="S",
                   help="poll interval of the follower (default 0.5)")
    p.add_argument("--quick", action="store_true",
                   help="a smoke run: every figure once, on a few hundred trades, no warm-up "
                        "(structure, not speed)")
    p.add_argument("--workdir", help="parent directory for scratch files (default system temp)")
    p.add_argument("--keep", action="store_true",
                   help="keep the scratch files and the bench namespaces")
    p.set_defaults(handler=cmd_bench)


def build_config(args: argparse.Namespace) -> Any:
    """The `BenchConfig` for the command's options (--quick first, explicit options on top)."""
    import attrs

    from rollup.benchmarks.common import BenchConfig, parse_count
    from rollup.errors import ConfigError

    config = BenchConfig.quick() if args.quick else BenchConfig()
    changes: dict[str, Any] = {}
    if args.trades is not None:
        changes["trades"] = parse_count(args.trades)
        if args.sizes is None and args.quick:
            changes["sizes"] = (changes["trades"],)
    if args.sizes is not None:
        changes["sizes"] = tuple(parse_count(s) for s in args.sizes.split(",") if s.strip())
    for name in ("symbols", "repeats", "warmups", "scattered_windows"):
        if getattr(args, name) is not None:
            changes[name] = getattr(args, name)
    if args.history_per_day is not None:
        changes["history_per_day"] = parse_count(args.history_per_day)
    if getattr(args, "history_days", None) is not None:
        try:
            changes["history_days"] = tuple(int(d) for d in args.history_days.split(","))
        except ValueError:
            raise ConfigError(f"invalid --history-days {args.history_days!r}: expected two "
                              "day counts, e.g. 1,30") from None
    if args.ingest_rows is not None:
        text = args.ingest_rows.strip()
        changes["ingest_rows"] = 0 if text == "0" else parse_count(text)
    if args.late_batch is not None:
        changes["late_batch"] = parse_count(args.late_batch)
    for name in ("follow_commits", "follow_interval", "follow_poll"):
        if getattr(args, name, None) is not None:
            changes[name] = getattr(args, name)
    if getattr(args, "follow_trades", None) is not None:
        changes["follow_trades"] = parse_count(args.follow_trades)
    if args.only is not None:
        changes["parts"] = tuple(p.strip().lower() for p in args.only.split(",") if p.strip())
    return attrs.evolve(config, **changes)


def cmd_bench(args: argparse.Namespace) -> int:
    from pyspark.sql import SparkSession

    from rollup.benchmarks.suite import run_benchmarks
    from rollup.spark.engine import get_spark

    config = build_config(args)
    settings = settings_from(args)
    scratch = None
    warehouse = args.warehouse
    if args.workdir:  # a work directory that does not exist yet is created, as a user expects
        Path(args.workdir).mkdir(parents=True, exist_ok=True)
    if warehouse is None and SparkSession.getActiveSession() is None:
        scratch = tempfile.TemporaryDirectory(prefix="rollup-bench-warehouse-", dir=args.workdir)
        warehouse = scratch.name
    try:
        from rollup.spark.catalog_conf import session_spark_conf

        progress("starting Spark with Iceberg ...")
        spark = get_spark(warehouse, catalog=settings.catalog,
                          conf=session_spark_conf(settings), engine=settings.engine)
        report = run_benchmarks(spark, config, catalog=settings.catalog,
                                namespace=args.namespace, workdir=args.workdir, keep=args.keep,
                                progress=progress)
    finally:
        if scratch is not None:
            scratch.cleanup()
    print(report.table())
    print(report.json_line(), flush=True)
    return 0
