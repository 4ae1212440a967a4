"""`rollup run --follow`: the continuous mode (`rollup.incremental.follow`) on the command line."""

from __future__ import annotations

import argparse
import json
import threading

from rollup.cli.common import progress, tables_from
from rollup.errors import InputError

DEFAULT_POLL = 2.0


def check_flags(args: argparse.Namespace) -> None:
    """Refuse flags that make no sense with (or without) `--follow`, before Spark starts."""
    if not args.follow:
        flag = "--poll" if args.poll is not None else "--max-cycles"
        raise InputError(f"{flag} applies only to `rollup run --follow`: add --follow")
    if args.dry_run:
        raise InputError("--follow runs levels and --dry-run writes nothing: use one of them "
                         "(`rollup run --dry-run` shows what the next cycle would do)")
    if args.full:
        raise InputError("--follow with --full would recompute every window on every cycle: "
                         "run `rollup run --full` once, then `rollup run --follow`")
    if args.poll is not None and not args.poll > 0:
        raise InputError(f"invalid --poll {args.poll}: expected seconds > 0")
    if args.max_cycles is not None and args.max_cycles < 1:
        raise InputError(f"invalid --max-cycles {args.max_cycles}: expected a number >= 1")


def cmd_follow(args: argparse.Namespace) -> int:
    """Follow until SIGTERM/SIGINT (exit 0 with a final line) or `--max-cycles` polls."""
    from rollup.incremental.follow import Cycle, follow, stop_on_signals

    check_flags(args)
    tables = tables_from(args)
    if args.timeframe:
        tables.dag.level(args.timeframe)

    def report(cycle: Cycle) -> None:
        print(json.dumps(cycle.as_json()) if args.json else cycle.describe(), flush=True)

    stop = threading.Event()
    source = tables.parent_of(tables.dag.order()[0]).rsplit(".", 1)[-1].strip("`")
    progress(f"follow: watching {source} every {args.poll or DEFAULT_POLL:g}s "
             "(SIGTERM or Ctrl-C stops cleanly)")
    with stop_on_signals(stop, notify=progress) as received:
        summary = follow(tables, poll_seconds=args.poll or DEFAULT_POLL,
                         max_cycles=args.max_cycles, stop=stop, up_to=args.timeframe,
                         progress=progress, on_cycle=report)
    print(summary.describe(received[0] if received else ""), flush=True)
    return 0
