"""Quality commands: `rollup check` (invariants per timeframe) and `rollup retention`."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from rollup.cli.common import maintenance_flags, progress, settings_from, tables_from


def register(sub: Any) -> None:
    p = sub.add_parser("check", help="run the data quality checks per timeframe")
    p.add_argument("--timeframe", default="all", help="one timeframe such as 1h, or 'all'")
    p.add_argument("--since", help="only bars with window_start >= SINCE (ISO-8601, UTC)")
    p.add_argument("--max-age", help="fail freshness when the newest trade a level reflects is "
                   "older than this against the wall clock, e.g. 30m, 2h, 1d (default: off)")
    p.add_argument("--max-lag", help="fail freshness when a level is this far behind the newest "
                   "trade, e.g. 15m (default: off)")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.add_argument("--strict", action="store_true", help="exit 1 when any check fails")
    p.set_defaults(handler=cmd_check)

    p = sub.add_parser("retention", help="drop expired partitions, expire snapshots, "
                       "remove orphan files")
    p.add_argument("--dry-run", action="store_true", help="only print what would be removed")
    p.add_argument("--now", help="the clock for retention windows (ISO-8601, default now)")
    p.add_argument("--snapshot-age", type=float, metavar="DAYS",
                   help="expire snapshots older than DAYS (default 5)")
    p.add_argument("--retain-last", type=int, metavar="N",
                   help="always keep the N newest snapshots of each table (default 1)")
    p.add_argument("--orphan-age", type=float, metavar="DAYS",
                   help="remove unreferenced files older than DAYS, at least 1 (default 3)")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.set_defaults(handler=cmd_retention)


def cmd_check(args: argparse.Namespace) -> int:
    from rollup.operations.quality import run_checks, summary

    settings = settings_from(args, {"quality": {"max_age": args.max_age,
                                                "max_lag": args.max_lag}})
    max_age, max_lag = settings.quality.max_age, settings.quality.max_lag
    tables = tables_from(args, settings=settings)
    timeframes = None if args.timeframe == "all" else [args.timeframe]
    if timeframes:
        tables.dag.level(args.timeframe)
    results = run_checks(tables, timeframes, since=args.since, max_age=max_age, max_lag=max_lag)
    failed = [r for r in results if not r.passed]
    if args.json:
        print(json.dumps([r.as_json() for r in results], indent=2))
    else:
        wide = max([9, *(len(r.timeframe) for r in results)])  # calendar names are long
        print(f"{'timeframe':{wide}} {'check':10} {'result':6} {'violations':>10}  detail")
        for r in results:
            print(f"{r.timeframe:{wide}} {r.check:10} {'ok' if r.passed else 'FAIL':6} "
                  f"{r.violations:>10}  {r.detail}")
            for exchange, symbol, start in r.samples:
                print(f"{'':{wide}} {'':10} {'':6} {'':>10}    {exchange} {symbol} "
                      f"{start:%Y-%m-%d %H:%M:%S}")
    if failed:
        label = "error" if args.strict else "warning"
        print(f"rollup: {label}: {summary(results)}", file=sys.stderr)
        return 1 if args.strict else 0
    progress(summary(results))
    return 0


def cmd_retention(args: argparse.Namespace) -> int:
    from rollup.incremental.retention import enforce_retention
    from rollup.specs.times import parse_instant

    settings = settings_from(args, maintenance_flags(args))
    now = parse_instant(args.now, "--now") if args.now else None
    cleanup = settings.maintenance
    tables = tables_from(args, settings=settings)
    results = enforce_retention(tables, now=now, dry_run=args.dry_run,
                                snapshot_age=cleanup.snapshot_age,
                                retain_last=cleanup.retain_last, orphan_age=cleanup.orphan_age)
    if args.json:
        print(json.dumps([r.as_json() for r in results], indent=2))
    else:
        for r in results:
            print(r.describe())
            if args.dry_run:
                for path in r.orphan_files:
                    print(f"  orphan file {path}")
    return 0

