"""Core commands: init, ingest, run, backfill, bars, status, demo."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from rollup.cli.common import progress, tables_from
from rollup.cli.watch import add_flags as watch_flags
from rollup.cli.watch import check_flags as check_watch_flags
from rollup.errors import InputError


def register(sub: Any) -> None:
    p = sub.add_parser("init", help="create the namespace and tables (idempotent)")
    p.set_defaults(handler=cmd_init)

    p = sub.add_parser("ingest", help="append trades from CSV or Parquet files (or, with "
                       "--watch, from files as they land in a directory)")
    p.add_argument("files", nargs="*", metavar="FILE")
    p.add_argument("--format", choices=("csv", "parquet"), help="file format (default: by suffix)")
    p.add_argument("--time-unit", choices=("s", "ms", "us", "ns"),
                   help="ts holds epoch numbers in this unit (default: ISO-8601 text)")
    p.add_argument("--trade-ids", choices=("integer", "string", "daily", "none"),
                   help="the feed's trade-id scheme (default: [ingest] trade_ids, else integer; "
                        "see docs/input.md)")
    watch_flags(p)
    p.set_defaults(handler=cmd_ingest)

    p = sub.add_parser("run", help="bring every level (or those up to --timeframe) up to date")
    p.add_argument("--timeframe", help="run only the levels needed for this timeframe")
    p.add_argument("--full", action="store_true",
                   help="recompute every window from the retention horizon on, ignoring "
                        "positions")
    p.add_argument("--dry-run", action="store_true",
                   help="show what each level would recompute (kind, parent snapshot, "
                        "windows as merged time ranges, and why); writes nothing")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.add_argument("--follow", action="store_true",
                   help="keep running: bring every level up to date after each new trades "
                        "commit, one line per cycle, until SIGTERM or SIGINT "
                        "(docs/runbook.md#continuous-mode)")
    p.add_argument("--poll", type=float, metavar="SECONDS",
                   help="with --follow: seconds between two looks at an idle warehouse "
                        "(default 2)")
    p.add_argument("--max-cycles", type=int, metavar="N",
                   help="with --follow: stop after N polls, idle or not")
    p.set_defaults(handler=cmd_run)

    p = sub.add_parser("backfill", help="recompute a time range from the trades and propagate up")
    p.add_argument("--start", required=True, help="ISO-8601 start (UTC when no offset)")
    p.add_argument("--end", required=True, help="ISO-8601 end, exclusive")
    p.add_argument("--timeframe", help="start from this level instead of the root")
    p.set_defaults(handler=cmd_backfill)

    p = sub.add_parser("bars", help="read bars of one timeframe")
    p.add_argument("timeframe")
    p.add_argument("--exchange")
    p.add_argument("--symbol")
    p.add_argument("--start", help="window_start >= START (ISO-8601, UTC)")
    p.add_argument("--end", help="window_start < END (ISO-8601, UTC)")
    p.add_argument("--format", default="table", choices=("table", "csv", "parquet", "json"))
    p.add_argument("--output", help="write to this file instead of stdout")
    p.add_argument("--limit", type=int, help="at most this many bars")
    p.add_argument("--realtime", action="store_true",
                   help="add bars computed on the fly from parent rows no run has applied yet "
                        "(column `provisional`; nothing is written)")
    p.set_defaults(handler=cmd_bars)

    p = sub.add_parser("status", help="per level: last run, position, newest bar, lag")
    p.add_argument("--json", action="store_true")
    p.set_defaults(handler=cmd_status)

    p = sub.add_parser("demo", help="ingest a synthetic day of trades and roll it up")
    p.add_argument("--trades", type=int, default=200_000, help="number of trades (default 200000)")
    p.add_argument("--symbols", type=int, default=5)
    p.set_defaults(handler=cmd_demo)


def cmd_init(args: argparse.Namespace) -> int:
    tables = tables_from(args, create=False)
    created = tables.create_all()
    print(f"created {', '.join(created)}" if created else "all tables already exist")
    return 0


def cmd_ingest(args: argparse.Namespace) -> int:
    from rollup.cli.common import settings_from
    from rollup.ingestion.batch import ingest_files

    check_watch_flags(args)
    if args.watch is not None:
        from rollup.cli.watch import cmd_watch

        return cmd_watch(args)
    settings = settings_from(args, {"ingest": {"trade_ids": args.trade_ids}})
    bounds = settings.ingest.time_bounds()
    trade_ids = settings.ingest.trade_ids
    tables = tables_from(args, settings=settings)
    reports, errors = ingest_files(tables, args.files, fmt=args.format, time_unit=args.time_unit,
                                   bounds=bounds, trade_ids=trade_ids,
                                   progress=progress if sys.stderr.isatty() else None)
    for report in reports:
        print(report.describe())
    for error in errors:
        print(f"rollup: error: {error}", file=sys.stderr)
    return 1 if errors else 0


def cmd_run(args: argparse.Namespace) -> int:
    from rollup.incremental.planning import plan_cascade
    from rollup.incremental.runner import run_cascade

    if args.follow or args.poll is not None or args.max_cycles is not None:
        from rollup.cli.follow import cmd_follow

        return cmd_follow(args)
    tables = tables_from(args)
    if args.timeframe:
        tables.dag.level(args.timeframe)
    if args.dry_run:
        plans = plan_cascade(tables, up_to=args.timeframe, full=args.full)
        if args.json:
            print(json.dumps([p.as_json() for p in plans], indent=2))
        else:
            for plan in plans:
                print(plan.describe())
        return 0
    results = run_cascade(tables, up_to=args.timeframe, full=args.full, progress=progress)
    if args.json:
        print(json.dumps([_result_json(r) for r in results], indent=2))
    else:
        for r in results:
            print(r.describe())
    return 0


def _result_json(result: Any) -> dict[str, Any]:
    import attrs

    return attrs.asdict(result)


def cmd_backfill(args: argparse.Namespace) -> int:
    from rollup.incremental.runner import backfill
    from rollup.specs.times import parse_instant

    start, end = parse_instant(args.start, "start"), parse_instant(args.end, "end")
    tables = tables_from(args)
    for r in backfill(tables, start, end, timeframe=args.timeframe, progress=progress):
        print(r.describe())
    return 0


def cmd_bars(args: argparse.Namespace) -> int:
    from rollup.readers.export import select_bars, to_pandas_utc, write_frame

    if args.format == "parquet" and not args.output:
        raise InputError("--format parquet needs --output FILE")
    if args.limit is not None and args.limit < 0:
        raise InputError(f"invalid --limit {args.limit}: expected a number >= 0")
    tables = tables_from(args, create=False)
    df = select_bars(tables, args.timeframe, exchange=args.exchange, symbol=args.symbol,
                     start=args.start, end=args.end, realtime=args.realtime)
    if args.limit is not None:
        df = df.limit(args.limit)
    write_frame(to_pandas_utc(df), args.format, args.output)
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from rollup.operations.status import level_status

    rows = level_status(tables_from(args))
    if args.json:
        print(json.dumps([r.as_json() for r in rows], indent=2))
        return 0
    wide = max([6, *(len(r.level) for r in rows)])  # calendar names are long
    parent = max([7, *(len(r.parent) for r in rows)])
    header = f"{'level':{wide}} {'parent':{parent}} {'bars':>9} {'newest bar (UTC)':22} " \
             f"{'lag':>10} {'pending':8} last run"
    print(header)
    for r in rows:
        newest = r.newest_window_start.strftime("%Y-%m-%d %H:%M") if r.newest_window_start else "-"
        lag = f"{r.lag_seconds:.0f}s" if r.lag_seconds is not None else "-"
        print(f"{r.level:{wide}} {r.parent:{parent}} {r.bars:>9} {newest:22} {lag:>10} "
              f"{'yes' if r.pending else 'no':8} {r.last_run_id or '-'}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from rollup.demo import run_demo

    if args.trades <= 0 or args.symbols <= 0:
        raise InputError(f"invalid demo size {args.trades} trades / {args.symbols} symbols: "
                         "expected positive numbers")
    tables = tables_from(args)
    run_demo(tables, trades=args.trades, symbols=args.symbols, progress=progress)
    return 0
