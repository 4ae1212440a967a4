"""`rollup ingest --watch DIR`: ingest files as they land (`rollup.ingestion.watch`)."""

from __future__ import annotations

import argparse
import sys
import threading
from typing import Any

from rollup.cli.common import progress, settings_from, tables_from
from rollup.errors import InputError

DEFAULT_POLL = 2.0
WATCH_FLAGS = ("poll", "max_polls", "done", "failed", "run")


def add_flags(parser: Any) -> None:
    """The `--watch` flags of `rollup ingest`."""
    parser.add_argument("--watch", metavar="DIR",
                        help="keep running: ingest each complete file that lands in DIR, then "
                             "move it to DIR/.done (or DIR/.failed with the reason), until "
                             "SIGTERM or SIGINT (docs/input.md#watching-a-directory)")
    parser.add_argument("--poll", type=float, metavar="SECONDS",
                        help="with --watch: seconds between two looks at DIR; a file is "
                             "complete when unchanged over one (default 2)")
    parser.add_argument("--max-polls", type=int, metavar="N",
                        help="with --watch: stop after N polls")
    parser.add_argument("--done", metavar="DIR", help="with --watch: where ingested files go "
                        "(default DIR/.done)")
    parser.add_argument("--failed", metavar="DIR", help="with --watch: where unusable files "
                        "go, each with <name>.error.txt (default DIR/.failed)")
    parser.add_argument("--run", action="store_true",
                        help="with --watch: bring every level up to date after each poll that "
                             "stored trades (as `rollup run`)")


def check_flags(args: argparse.Namespace) -> None:
    """Refuse flag combinations that make no sense, before Spark starts."""
    if args.watch is None:
        given = [f for f in WATCH_FLAGS if getattr(args, f) not in (None, False)]
        if given:
            flag = "--" + given[0].replace("_", "-")
            raise InputError(f"{flag} applies only to `rollup ingest --watch DIR`: add --watch")
        if not args.files:
            raise InputError("rollup ingest needs FILE arguments or --watch DIR")
        return
    if args.files:
        raise InputError(f"rollup ingest takes FILE arguments or --watch DIR, not both "
                         f"(got {args.files[0]} and --watch {args.watch})")
    if args.poll is not None and not args.poll > 0:
        raise InputError(f"invalid --poll {args.poll}: expected seconds > 0")
    if args.max_polls is not None and args.max_polls < 1:
        raise InputError(f"invalid --max-polls {args.max_polls}: expected a number >= 1")


def cmd_watch(args: argparse.Namespace) -> int:
    """Watch until SIGTERM/SIGINT (exit 0 with a final line) or `--max-polls` polls."""
    from rollup.incremental.follow import stop_on_signals
    from rollup.ingestion.watch import Landing, watch

    settings = settings_from(args, {"ingest": {"trade_ids": args.trade_ids}})
    tables = tables_from(args, settings=settings)
    failures = 0

    def report(landing: Landing) -> None:
        nonlocal failures
        failures += landing.failed
        print(landing.describe(), flush=True)

    def cascade() -> None:
        from time import monotonic

        from rollup.incremental.runner import run_cascade

        began = monotonic()
        results = run_cascade(tables, progress=progress)
        touched = [r for r in results if r.status in ("written", "unchanged")]
        work = ", ".join(f"{r.level} {r.changed}" for r in touched)
        print(f"run: wrote {sum(r.changed for r in results)} bars ({work or 'nothing'}) in "
              f"{monotonic() - began:.1f}s", flush=True)

    stop = threading.Event()
    poll = args.poll or DEFAULT_POLL
    progress(f"watch: ingesting files that land in {args.watch} every {poll:g}s "
             "(SIGTERM or Ctrl-C stops cleanly)")
    with stop_on_signals(stop, notify=lambda _message: progress(
            "watch: stop requested: finishing the current file (send it again to abort)")
            ) as received:
        summary = watch(tables, args.watch, done=args.done, failed=args.failed,
                        poll_seconds=poll, max_polls=args.max_polls, stop=stop,
                        on_file=report, after_ingest=cascade if args.run else None,
                        progress=progress,
                        ingest_progress=progress if sys.stderr.isatty() else None,
                        fmt=args.format, time_unit=args.time_unit,
                        bounds=settings.ingest.time_bounds(),
                        trade_ids=settings.ingest.trade_ids)
    print(summary.describe(received[0] if received else ""), flush=True)
    return 0
