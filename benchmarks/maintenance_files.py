"""Files per table after a day of five-minute cycles, before and after `rollup maintain`.

On a fresh temporary warehouse, each cycle appends five minutes of synthetic trades (one day of
`--per-day` trades of `--symbols` symbols, cut in five-minute slices that end `--lag-seconds`
before the cycle, as a feed delivers them) and runs the cascade, as the every-five-minutes
schedule does. Then `maintain()` runs (snapshot age 0 by default, so
expiry shows what a daily run removes; positions stay protected), and the cascade once more,
which must find nothing to do. Prints per table the live data and delete files of the current
snapshot and the files on disk, before and after, and one final JSON line. Usage:

    python benchmarks/maintenance_files.py --cycles 288 --symbols 20

`--max-minutes` stops cycling early (the JSON line says how many cycles ran).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow.compute as pc
import pyarrow.parquet as pq

from rollup.adapters.synthetic import synthetic_trades
from rollup.benchmarks.common import append_trades
from rollup.incremental.runner import run_cascade
from rollup.operations.maintenance import file_counts, maintain
from rollup.spark.engine import get_spark
from rollup.storage.tables import Tables

DAY = date(2024, 1, 2)
CATALOG, NAMESPACE = "rollup", "maintenance_bench"


def files_on_disk(warehouse: Path, table: str) -> int:
    """Data and delete files under the table's data directory (live or not yet expired)."""
    root = warehouse / NAMESPACE / table / "data"
    return sum(1 for p in root.rglob("*.parquet")) if root.exists() else 0


def snapshot(tables: Tables, warehouse: Path) -> dict[str, dict[str, int]]:
    names = [tables.trades_table, *[lv.table for lv in tables.dag.order()]]
    out = {}
    for name in names:
        counts = file_counts(tables, tables.name(name))
        out[name] = {"data_files": counts.data_files, "delete_files": counts.delete_files,
                     "bytes": counts.bytes, "on_disk": files_on_disk(warehouse, name)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=288, help="five-minute cycles (288: a day)")
    parser.add_argument("--symbols", type=int, default=20)
    parser.add_argument("--per-day", type=int, default=200_000, help="trades in the whole day")
    parser.add_argument("--snapshot-age", type=float, default=0.0, metavar="DAYS",
                        help="expire snapshots older than DAYS (default 0: all but protected)")
    parser.add_argument("--lag-seconds", type=int, default=150,
                        help="each cycle ingests the five minutes ending this long before the "
                        "cycle's end, so cycles straddle windows and MERGE rewrites bars (0: "
                        "window-aligned cycles, inserts only)")
    parser.add_argument("--max-minutes", type=float, default=None,
                        help="stop cycling after this many minutes")
    args = parser.parse_args()
    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="rollup-maintain-") as tmp:
        work = Path(tmp)
        warehouse = work / "warehouse"
        spark = get_spark(warehouse, catalog=CATALOG, app_name="maintenance-bench")
        tables = Tables(spark, CATALOG, NAMESPACE)
        tables.create_all()
        day = synthetic_trades(args.per_day, symbols=args.symbols, day=DAY, seed=7)
        start = datetime.combine(DAY, datetime.min.time(), UTC)
        cycle_seconds: list[float] = []
        for cycle in range(args.cycles):
            if args.max_minutes and time.perf_counter() - began > 60 * args.max_minutes:
                break
            lo = start + timedelta(minutes=5 * cycle, seconds=-args.lag_seconds)
            ts = day.column("ts")
            part = day.filter(pc.and_(pc.greater_equal(ts, lo),
                                      pc.less(ts, lo + timedelta(minutes=5))))
            path = work / f"cycle{cycle:03d}.parquet"
            pq.write_table(part, path)
            t0 = time.perf_counter()
            append_trades(tables, [path])
            run_cascade(tables)
            cycle_seconds.append(time.perf_counter() - t0)
            path.unlink()
            if (cycle + 1) % 12 == 0:
                print(f"cycle {cycle + 1}: {cycle_seconds[-1]:.1f}s "
                      f"(mean {sum(cycle_seconds) / len(cycle_seconds):.1f}s)", flush=True)
        before = snapshot(tables, warehouse)
        t0 = time.perf_counter()
        results = maintain(tables, snapshot_age=timedelta(days=args.snapshot_age))
        maintain_seconds = time.perf_counter() - t0
        after = snapshot(tables, warehouse)
        again = run_cascade(tables)
    print(f"\n{len(cycle_seconds)} cycles, {sum(cycle_seconds) / max(len(cycle_seconds), 1):.1f}s "
          f"per cycle; maintain {maintain_seconds:.1f}s")
    print(f"{'table':10} {'data files':>16} {'delete files':>16} {'files on disk':>16}")
    for name in before:
        b, a = before[name], after[name]
        print(f"{name:10} {b['data_files']:>7} -> {a['data_files']:<6} "
              f"{b['delete_files']:>7} -> {a['delete_files']:<6} "
              f"{b['on_disk']:>7} -> {a['on_disk']:<6}")
    statuses = {r.level: r.status for r in again}
    print("cascade after maintenance: " + ", ".join(f"{k} {v}" for k, v in statuses.items()))
    summary: dict[str, Any] = {
        "cycles": len(cycle_seconds), "symbols": args.symbols, "per_day": args.per_day,
        "lag_seconds": args.lag_seconds,
        "seconds_per_cycle": round(sum(cycle_seconds) / max(len(cycle_seconds), 1), 2),
        "maintain_seconds": round(maintain_seconds, 1),
        "snapshots_expired": {r.table: len(r.snapshots) for r in results},
        "before": before, "after": after, "after_maintenance": statuses,
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
