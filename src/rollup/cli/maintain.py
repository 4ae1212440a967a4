"""`rollup maintain`: compact files, rewrite manifests, expire snapshots, remove orphans."""

from __future__ import annotations

import argparse
import json
from typing import Any

from rollup.cli.common import maintenance_flags, settings_from, tables_from


def register(sub: Any) -> None:
    p = sub.add_parser("maintain", help="compact data and delete files, rewrite manifests, "
                       "expire snapshots and remove orphan files of every table")
    p.add_argument("--dry-run", action="store_true",
                   help="count files and list what expiry and orphan removal would remove")
    p.add_argument("--no-compact", action="store_true", help="do not rewrite data files")
    p.add_argument("--no-rewrite-deletes", action="store_true",
                   help="do not rewrite position delete files")
    p.add_argument("--no-rewrite-manifests", action="store_true",
                   help="do not rewrite manifests")
    p.add_argument("--no-expire", action="store_true", help="do not expire snapshots")
    p.add_argument("--no-orphans", action="store_true", help="do not remove orphan files")
    p.add_argument("--snapshot-age", type=float, metavar="DAYS",
                   help="expire snapshots older than DAYS (default [maintenance] or 5)")
    p.add_argument("--retain-last", type=int, metavar="N",
                   help="always keep the N newest snapshots of each table (default 1)")
    p.add_argument("--orphan-age", type=float, metavar="DAYS",
                   help="remove unreferenced files older than DAYS, at least 1 (default 3)")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.set_defaults(handler=cmd_maintain)


def cmd_maintain(args: argparse.Namespace) -> int:
    from rollup.operations.maintenance import maintain

    settings = settings_from(args, maintenance_flags(args))
    cleanup = settings.maintenance
    tables = tables_from(args, settings=settings)
    results = maintain(
        tables, compact=not args.no_compact, rewrite_deletes=not args.no_rewrite_deletes,
        rewrite_manifests=not args.no_rewrite_manifests, expire=not args.no_expire,
        orphans=not args.no_orphans, snapshot_age=cleanup.snapshot_age,
        retain_last=cleanup.retain_last, orphan_age=cleanup.orphan_age,
        dry_run=args.dry_run, progress=None if args.json else _print,
    )
    if args.json:
        print(json.dumps([r.as_json() for r in results], indent=2))
    elif args.dry_run:
        for r in results:
            for path in r.orphan_files:
                print(f"  orphan file of {r.table}: {path}")
    return 0


def _print(line: str) -> None:
    print(line, flush=True)  # one line per table as it finishes (stdout: the result)
