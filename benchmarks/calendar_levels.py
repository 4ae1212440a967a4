"""What a calendar level costs next to a fixed one, measured in one warm SparkSession.

From the same 1h bars (built once from `--trades` synthetic trades over `--days` UTC days of
`--symbols` symbols), times building the UTC day (`1d`, integer arithmetic) and calendar levels
(`1d@America/New_York`, the CME session `1d@America/Chicago+17:00`, `1M@America/New_York` from
the New York days), and the 1m level from the trades with and without a New York day built
straight from the trades. Every plan is written to Spark's `noop` sink; the figures are the
median of `--repeats` interleaved runs, after one warm-up run of each (which also builds each
calendar's window table, cached for the session). Prints a table and one JSON line. Usage:

    python benchmarks/calendar_levels.py --trades 1000000 --days 60 --symbols 20
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rollup.benchmarks.common import write_trades
from rollup.spark.engine import get_spark
from rollup.timeframes import Level
from rollup.transforms.bars import Rollup

PARENT_LEVELS = {"1d": "1h", "1d@America/New_York": "1h", "1d@America/Chicago+17:00": "1h"}


def _noop(frame: Any) -> None:
    frame.write.format("noop").mode("overwrite").save()


def _from(parent: Any, level: Level) -> Callable[[], None]:
    return lambda: _noop(Rollup(level).plan(parent))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trades", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=60)
    parser.add_argument("--symbols", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        spark = get_spark(work / "warehouse", app_name="rollup-calendar-bench")
        write_trades(work / "trades", args.trades, args.symbols, 250_000, days=args.days)
        trades = spark.read.parquet(str(work / "trades"))
        hourly = Rollup(Level("1h", None)).plan(trades)
        hourly.write.parquet(str(work / "1h"))
        parent = spark.read.parquet(str(work / "1h")).cache()
        parent.count()
        ny_days = Rollup(Level("1d@America/New_York", "1h")).plan(parent).cache()
        ny_days.count()
        steps: dict[str, Callable[[], None]] = {
            name: _from(parent, Level(name, of)) for name, of in PARENT_LEVELS.items()}
        steps["1M@America/New_York"] = lambda: _noop(
            Rollup(Level("1M@America/New_York", "1d@America/New_York")).plan(ny_days))
        steps["1m from trades"] = lambda: _noop(Rollup(Level("1m", None)).plan(trades))
        steps["1d@America/New_York from trades"] = lambda: _noop(
            Rollup(Level("1d@America/New_York", None)).plan(trades))
        steps["1d from trades"] = lambda: _noop(Rollup(Level("1d", None)).plan(trades))
        timings: dict[str, list[float]] = {name: [] for name in steps}
        for step in steps.values():  # warm-up, and each calendar's window table
            step()
        for _ in range(args.repeats):
            for name, step in steps.items():
                began = time.perf_counter()
                step()
                timings[name].append(time.perf_counter() - began)
        median = {name: statistics.median(values) for name, values in timings.items()}
        spark.stop()
    base = median["1d"]
    print(f"{args.trades:,} trades, {args.days} days, {args.symbols} symbols; "
          f"median of {args.repeats} (seconds, ratio to 1d from the same 1h bars)")
    for name, seconds in median.items():
        print(f"  {name:34}{seconds:8.3f}{seconds / base:8.2f}")
    ratios = {
        "ny_day_over_utc_day": median["1d@America/New_York"] / base,
        "cme_session_over_utc_day": median["1d@America/Chicago+17:00"] / base,
        "ny_day_over_utc_day_from_trades": (median["1d@America/New_York from trades"]
                                            / median["1d from trades"]),
    }
    print(json.dumps({"seconds": {k: round(v, 4) for k, v in median.items()},
                      **{k: round(v, 3) for k, v in ratios.items()}}))


if __name__ == "__main__":
    main()
