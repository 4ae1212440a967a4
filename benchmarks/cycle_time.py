"""Seconds of one incremental cycle through the five levels, in one warm session.

One day of synthetic history (`--per-day` trades, 20 symbols), the cascade once, then
`--cycles` cycles of five minutes of new trades (the `incremental` figure's trades) appended
and propagated by `run_cascade`; prints every cycle and the median of all but the first two
(JIT warm-up). To compare two versions of rollup, run it once with each on the PYTHONPATH:

    PYTHONPATH=/path/to/old/src python benchmarks/cycle_time.py old
    PYTHONPATH=src python benchmarks/cycle_time.py new
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import pyarrow.parquet as pq

from rollup.benchmarks.common import BenchConfig, append_trades, write_trades
from rollup.benchmarks.incremental import CYCLE_DAY, cycle_trades
from rollup.incremental import runner
from rollup.spark.engine import get_spark
from rollup.storage.tables import Tables


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("label", nargs="?", default="cycle")
    parser.add_argument("--per-day", type=int, default=200_000)
    parser.add_argument("--cycles", type=int, default=8)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="rollup-cycle-"))
    spark = get_spark(work / "warehouse")
    config = BenchConfig(history_per_day=args.per_day, symbols=20, rows_per_file=args.per_day)
    tables = Tables(spark, "rollup", "cycle")
    tables.create_all()
    append_trades(tables, write_trades(work / "history", args.per_day, 20, args.per_day,
                                       day=CYCLE_DAY - timedelta(days=1), seed=0))
    runner.run_cascade(tables)
    seconds = []
    for cycle in range(args.cycles):
        path = work / f"cycle{cycle}.parquet"
        pq.write_table(cycle_trades(config, cycle), path)
        append_trades(tables, [path])
        began = time.perf_counter()
        runner.run_cascade(tables)
        seconds.append(time.perf_counter() - began)
    print(f"{args.label}: cycles " + " ".join(f"{s:.2f}" for s in seconds)
          + f"; median after warm-up {statistics.median(seconds[2:] or seconds):.2f} s")


if __name__ == "__main__":
    main()
