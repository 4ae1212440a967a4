"""Where the 1m level spends its CPU: executor-thread CPU per piece of the aggregation.

Wall time on a shared machine is noise; the CPU time of Spark's executor task threads (read
from /proc, local mode only) is not. Each line adds one piece to a plain group-by count, so
the differences are the cost of that piece; the last lines break one full 1m run down by JVM
thread (task threads, JIT compiler, driver). Usage:

    python benchmarks/profile_plans.py --trades 4M --repeats 5
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from rollup.benchmarks.common import parse_count, write_trades
from rollup.spark.engine import get_spark
from rollup.timeframes import Dag
from rollup.transforms import bars as plans

KEYS = ["exchange", "symbol", "window_start"]


def thread_cpu(pid: int) -> dict[tuple[str, str], float]:
    """CPU seconds per (thread id, thread name) of process `pid`."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            name = Path(f"/proc/{pid}/task/{tid}/comm").read_text().strip()
            fields = Path(f"/proc/{pid}/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[(tid, name)] = (int(fields[11]) + int(fields[12])) / tick
    return out


def by_group(before: dict[tuple[str, str], float],
             after: dict[tuple[str, str], float]) -> dict[str, float]:
    """CPU seconds spent between `before` and `after` per thread group (digits folded)."""
    groups: dict[str, float] = {}
    for key, value in after.items():
        group = re.sub(r"[0-9]+", "#", key[1])
        groups[group] = groups.get(group, 0.0) + value - before.get(key, 0.0)
    return groups


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trades", default="4M")
    parser.add_argument("--symbols", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="rollup-profile-") as tmp:
        work = Path(tmp)
        write_trades(work / "trades", parse_count(args.trades), args.symbols, 250_000)
        spark = get_spark(work / "warehouse")
        pid = int(spark.sparkContext._jvm.java.lang.ProcessHandle.current().pid())
        level = Dag.standard().level("1m")
        tf = level.timeframe
        trades = spark.read.parquet(str(work / "trades"))
        bucketed = plans.bucket(trades.select(*plans.TRADE_INPUT), "ts", tf)
        bits = plans.order_bits(tf)
        key = F.expr(f"shiftleft(unix_micros(ts) - unix_micros(window_start), {bits})"
                     f" | (trade_id & {(1 << bits) - 1})")

        def task_cpu(frame: DataFrame) -> Callable[[], float]:
            def run() -> float:
                before = thread_cpu(pid)
                frame.write.format("noop").mode("overwrite").save()
                return by_group(before, thread_cpu(pid)).get("Executor task l", 0.0)
            return run

        pieces = {
            "scan + group count": bucketed.groupBy(*KEYS).count(),
            "+ high/low": bucketed.groupBy(*KEYS).agg(F.count(F.lit(1)), F.max("price"),
                                                      F.min("price")),
            "+ open/close (long key)": bucketed.withColumn("_k", key).groupBy(*KEYS).agg(
                F.count(F.lit(1)), F.min_by("price", "_k"), F.max_by("price", "_k")),
            "  open/close (struct key)": bucketed.groupBy(*KEYS).agg(
                F.count(F.lit(1)), F.min_by("price", F.struct("ts", "trade_id")),
                F.max_by("price", F.struct("ts", "trade_id"))),
            "  volume as decimal(38,8)": bucketed.groupBy(*KEYS).agg(
                F.count(F.lit(1)), F.sum(F.col("quantity").cast("decimal(38,8)"))),
            "aggregate_trades": plans.aggregate_trades(bucketed, tf),
            "1m plan (plan_direct)": plans.Rollup(level).plan_direct(trades),
        }
        for frame in pieces.values():  # warm-up: code generation and JIT
            task_cpu(frame)()
        print(f"{'piece':<30}{'task CPU s (median of ' + str(args.repeats) + ')':>34}")
        for name, frame in pieces.items():
            run = task_cpu(frame)
            print(f"{name:<30}{statistics.median(run() for _ in range(args.repeats)):>34.2f}",
                  flush=True)
        frame = pieces["1m plan (plan_direct)"]
        before = thread_cpu(pid)
        began = time.perf_counter()
        for _ in range(args.repeats):
            frame.write.format("noop").mode("overwrite").save()
        wall = (time.perf_counter() - began) / args.repeats
        print(f"\none 1m run: {wall:.2f} s wall; JVM CPU seconds per thread group:")
        groups = by_group(before, thread_cpu(pid))
        for group, seconds in sorted(groups.items(), key=lambda kv: -kv[1])[:6]:
            print(f"  {group:<24}{seconds / args.repeats:8.2f}")


if __name__ == "__main__":
    main()
