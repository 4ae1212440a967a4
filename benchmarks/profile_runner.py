"""Where an incremental cycle spends its time: seconds per runner/state/sink call.

Builds `--days` days of synthetic history in a scratch warehouse, runs the cascade once, then
appends a few minutes of trades per cycle and times every call of the functions below while
`run_cascade` propagates them. Usage:

    python benchmarks/profile_runner.py --days 30 --per-day 20000 --cycles 2
"""

from __future__ import annotations

import argparse
import functools
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from rollup.benchmarks.common import BenchConfig, append_trades, write_trades
from rollup.benchmarks.incremental import CYCLE_DAY, cycle_trades
from rollup.incremental import retention, runner
from rollup.spark.engine import get_spark
from rollup.storage import sink, state
from rollup.storage.tables import Tables

TIMES: dict[str, list[float]] = defaultdict(list)


def timed(module: Any, name: str) -> None:
    original: Callable[..., Any] = getattr(module, name)

    @functools.wraps(original)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        began = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            TIMES[f"{module.__name__.split('.')[-1]}.{name}"].append(time.perf_counter() - began)

    setattr(module, name, wrapper)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--per-day", type=int, default=20_000)
    parser.add_argument("--symbols", type=int, default=20)
    parser.add_argument("--cycles", type=int, default=2)
    args = parser.parse_args()
    for module, names in (
        (state, ("current_snapshot", "position", "snapshots_since", "added_data_files",
                 "set_position", "table_properties")),
        (runner, ("changed_windows", "merge_bars", "overwrite_partitions", "run_level")),
        (retention, ("horizon", "clip_changes", "after_horizon")),
        (sink, ("_reconcile",)),
    ):
        for name in names:
            timed(module, name)
    with tempfile.TemporaryDirectory(prefix="rollup-profile-") as tmp:
        work = Path(tmp)
        spark = get_spark(work / "warehouse")
        config = BenchConfig(history_per_day=args.per_day, symbols=args.symbols,
                                   rows_per_file=max(args.per_day, 1))
        tables = Tables(spark, "rollup", "profile")
        tables.create_all()
        first = CYCLE_DAY - timedelta(days=args.days)
        for offset in range(args.days):
            files = write_trades(work / f"d{offset}", args.per_day, args.symbols,
                                       config.rows_per_file,
                                       day=first + timedelta(days=offset), seed=offset)
            append_trades(tables, files)
        runner.run_cascade(tables)
        for cycle in range(args.cycles):
            TIMES.clear()
            path = work / f"cycle{cycle}.parquet"
            pq.write_table(cycle_trades(config, cycle), path)
            append_trades(tables, [path])
            began = time.perf_counter()
            runner.run_cascade(tables)
            total = time.perf_counter() - began
            print(f"cycle {cycle + 1}: {total:.2f}s")
            for name, values in sorted(TIMES.items(), key=lambda kv: -sum(kv[1])):
                print(f"  {name:<34}{sum(values):8.2f}s in {len(values):3d} calls")


if __name__ == "__main__":
    main()
