"""The issue-13 figure of `rollup bench`: a scattered late batch on a month of history.

On the long incremental history of `rollup.benchmarks.incremental` (30 days by default, warm
session, levels up to date), `measure_scattered`

1. appends a sparse history of an illiquid symbol (`ILLIQUID`, a few trades a day) and runs
   the cascade untimed, so the scattered code paths are warm too (not with
   `BenchConfig.warmups` 0: the timed run then also brings the sparse history in);
2. appends one late batch of single trades in `BenchConfig.scattered_windows` distinct 1m
   windows, random (symbol, minute) pairs spread over the whole history: several liquid
   symbols plus a tenth of the windows on the illiquid one;
3. times one `run_cascade` over all five levels (wall and CPU seconds, peak resident memory of
   the JVM and of this process, the windows and partitions each level recomputed);
4. checks the result against DuckDB over the very Parquet files that were appended (never
   rollup's own plans): a sample of the touched 1m bars and every touched 1d bar, every value
   column; and
5. times one ordinary five-minute cycle after it, to show the scattered batch leaves the
   ordinary cycle's cost where it was.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from rollup.benchmarks.common import (
    BenchConfig,
    Clock,
    Progress,
    Timing,
    append_trades,
    duckdb_connection,
    timing_row,
)
from rollup.benchmarks.exactness import differences, duckdb_bars, stored_bars
from rollup.benchmarks.incremental import cycle_trades, run_into

if TYPE_CHECKING:
    import pyarrow as pa

    from rollup.storage.tables import Tables

ILLIQUID = "ILLIQ-USD"
"""The sparse symbol: a few trades a day in the history, a tenth of the late windows."""
ILLIQUID_PER_DAY = 48
ILLIQUID_SHARE = 10
"""One late window in ILLIQUID_SHARE is the illiquid symbol's."""
LIQUID_SYMBOLS = 4
"""Late windows of the liquid symbols go to (at most) this many of the history's symbols."""
SAMPLE_1M = 300
"""Touched 1m windows checked against DuckDB (every touched 1d bar is checked)."""
EXCHANGE = "SYNTH"

_US_PER_MINUTE = 60_000_000
_US_PER_DAY = 86_400_000_000
_EPOCH = date(1970, 1, 1)
_LATE_IDS = 10**12  # trade ids of the late batch; far above the synthetic history's ids
_SPARSE_IDS = 5 * 10**11


@attrs.frozen
class ScatteredResult:
    """One scattered late batch: its timed cascade run, what each level did, the check."""

    history_days: int
    windows: int
    """Distinct (symbol, 1m window) pairs that the late batch touches."""
    illiquid_windows: int
    symbols: tuple[str, ...]
    cycle: Timing
    peak_mib: dict[str, float | None]
    levels: dict[str, dict[str, Any]]
    """Per level: status, windows (distinct window starts), partitions, changed, seconds."""
    exact: bool
    checked_1m: int
    checked_1d: int
    mismatches: tuple[str, ...] = ()
    """The first few differences from DuckDB (empty when exact)."""
    ordinary_after: Timing | None = None
    """One ordinary five-minute cycle right after the scattered batch."""

    def as_json(self, ordinary: Timing | None) -> dict[str, Any]:
        """The JSON-line keys; `ordinary` is the ordinary cycle on the same history."""
        def r(value: float | None) -> float | None:
            return None if value is None else round(value, 3)

        over = self.cycle.seconds / ordinary.seconds if ordinary else None
        after = self.ordinary_after.seconds if self.ordinary_after else None
        return {
            "scattered_windows": self.windows,
            "scattered_history_days": self.history_days,
            "scattered_cycle_s": r(self.cycle.seconds),
            "scattered_cpu_s": r(self.cycle.cpu_seconds),
            "scattered_peak_mib": r(self.peak_mib.get("jvm")),
            "scattered_python_peak_mib": r(self.peak_mib.get("python")),
            "ordinary_cycle_s": r(ordinary.seconds) if ordinary else None,
            "scattered_over_ordinary": r(over),
            "ordinary_after_scattered_s": r(after),
            "scattered_exact": self.exact,
            "scattered_checked": {"1m": self.checked_1m, "1d": self.checked_1d},
            "scattered_levels": {
                name: {"windows": v["windows"], "partitions": v["partitions"],
                       "status": v["status"]}
                for name, v in self.levels.items()},
        }

    def lines(self, ordinary: Timing | None) -> list[str]:
        """The rows of the printed table."""
        jvm, py = self.peak_mib.get("jvm"), self.peak_mib.get("python")
        out = [timing_row(f"scattered late {self.history_days}d", self.cycle,
                          f"{self.windows:,} 1m windows ({self.illiquid_windows:,} {ILLIQUID}), "
                          f"peak JVM {'-' if jvm is None else f'{jvm:,.0f}'} MiB, "
                          f"python {'-' if py is None else f'{py:,.0f}'} MiB", per_trade=False)]
        out.append("  per level: " + ", ".join(
            f"{name} {v['windows']:,} windows"
            + (f" / {v['partitions']} partitions" if v["partitions"] else "")
            + f" {v['seconds']:.2f}s" for name, v in self.levels.items()))
        out.append(f"  exact against DuckDB over the appended trades: {self.exact} "
                   f"({self.checked_1m} 1m bars sampled, all {self.checked_1d} touched 1d bars)"
                   + (f"; first differences: {'; '.join(self.mismatches)}"
                      if self.mismatches else ""))
        if self.ordinary_after is not None:
            out.append(timing_row("ordinary after scattered", self.ordinary_after,
                                  per_trade=False))
        if ordinary is not None:
            out.append(f"  scattered over ordinary cycle ({ordinary.seconds:.3f}s): "
                       f"{self.cycle.seconds / ordinary.seconds:.2f}")
        return out


# -- the trades --------------------------------------------------------------------------


def _liquid_symbols(symbols: int) -> list[tuple[str, int, int, int]]:
    """(name, price units, price tick units, quantity units) of the first liquid symbols."""
    from rollup.adapters.synthetic import SYMBOL_PROFILES

    out = []
    for profile in SYMBOL_PROFILES[:min(symbols, LIQUID_SYMBOLS, len(SYMBOL_PROFILES))]:
        tick = 10 ** (8 - profile.price_decimals)
        step = 10 ** (8 - profile.quantity_decimals)
        quantity = max(step, profile.median_quantity_units // step * step)
        out.append((profile.name, profile.start_price_units, tick, quantity))
    return out


_ILLIQUID = (ILLIQUID, 50_000_000, 10_000, 25 * 10**8)  # 0.5000 a unit, 25 units a trade


def _trades(rows: Sequence[tuple[str, int, int, int, int]]) -> pa.Table:
    """A trades table (TRADES_SCHEMA) of (symbol, ts micros, trade id, price, quantity units)."""
    import numpy as np
    import pyarrow as pa

    from rollup.adapters import PRICE_TYPE, QUANTITY_TYPE, TRADES_SCHEMA, TS_TYPE

    ordered = sorted(rows, key=lambda r: (r[1], r[0], r[2]))
    n = len(ordered)

    def decimals(values: list[int], type_: pa.DataType) -> pa.Array:
        units = np.asarray(values, dtype=np.int64)
        words = np.empty((n, 2), dtype="<i8")
        words[:, 0] = units
        words[:, 1] = units >> 63
        return pa.Array.from_buffers(type_, n, [None, pa.py_buffer(words)])

    return pa.Table.from_arrays([
        pa.array([EXCHANGE] * n, pa.string()),
        pa.array([r[0] for r in ordered], pa.string()),
        pa.array([r[2] for r in ordered], pa.int64()),
        pa.array([r[1] for r in ordered], pa.int64()).cast(TS_TYPE),
        decimals([r[3] for r in ordered], PRICE_TYPE),
        decimals([r[4] for r in ordered], QUANTITY_TYPE),
        pa.array(["buy" if i % 2 else "sell" for i in range(n)], pa.string()),
    ], schema=TRADES_SCHEMA)


def _price(rng: Any, units: int, tick: int) -> int:
    return max(tick, int(round(units * float(rng.lognormal(0.0, 0.02)) / tick)) * tick)


def sparse_history(first: date, days: int, *, per_day: int = ILLIQUID_PER_DAY,
                   seed: int = 7) -> pa.Table:
    """The illiquid symbol's history: `per_day` trades a day at random minutes."""
    import numpy as np

    rng = np.random.default_rng(seed)
    name, units, tick, quantity = _ILLIQUID
    start = (first - _EPOCH).days * _US_PER_DAY
    ts = np.sort(rng.integers(0, days * _US_PER_DAY, size=days * per_day, dtype=np.int64))
    return _trades([(name, start + int(t), _SPARSE_IDS + i, _price(rng, units, tick), quantity)
                    for i, t in enumerate(ts)])


def scattered_trades(windows: int, first: date, days: int, symbols: int, *,
                     seed: int = 13) -> pa.Table:
    """One trade in each of `windows` distinct random (symbol, minute) pairs of `days` days
    from `first`: a tenth on the illiquid symbol, the rest spread over the liquid ones."""
    import numpy as np

    rng = np.random.default_rng(seed)
    minutes = days * 24 * 60
    liquid = _liquid_symbols(symbols)
    illiquid = max(1, windows // ILLIQUID_SHARE) if windows > 1 else 0
    shares = [illiquid] + [(windows - illiquid) // len(liquid)] * len(liquid)
    shares[1] += windows - sum(shares)
    start = (first - _EPOCH).days * _US_PER_DAY
    rows: list[tuple[str, int, int, int, int]] = []
    for (name, units, tick, quantity), count in zip([_ILLIQUID, *liquid], shares, strict=True):
        picked = rng.choice(minutes, size=min(count, minutes), replace=False)
        offsets = rng.integers(0, _US_PER_MINUTE, size=picked.size, dtype=np.int64)
        for minute, offset in zip(picked.tolist(), offsets.tolist(), strict=True):
            rows.append((name, start + minute * _US_PER_MINUTE + offset,
                         _LATE_IDS + len(rows), _price(rng, units, tick), quantity))
    return _trades(rows)


def _write(table: pa.Table, path: Path) -> Path:
    import pyarrow.parquet as pq

    pq.write_table(table, path, store_decimal_as_integer=True)
    return path


# -- the independent check -----------------------------------------------------------------


def check_exact(
    tables: Tables, files: Sequence[Path], late: pa.Table, *, sample: int = SAMPLE_1M,
    threads: int = 2, seed: int = 17,
) -> tuple[bool, int, int, list[str]]:
    """Compare stored bars with DuckDB's bars of the trades in `files`: `sample` random 1m
    windows of the `late` trades and every 1d bar they touch. Returns (exact, 1m checked,
    1d checked, differences)."""
    import numpy as np

    micros = late.column("ts").cast("int64").to_pylist()
    touched = sorted({(e, s, t - t % _US_PER_MINUTE) for e, s, t in zip(
        late.column("exchange").to_pylist(), late.column("symbol").to_pylist(), micros,
        strict=True)})
    rng = np.random.default_rng(seed)
    picks = rng.choice(len(touched), size=min(sample, len(touched)), replace=False)
    minute_keys = {touched[int(i)] for i in picks}
    day_keys = {(e, s, t - t % _US_PER_DAY) for e, s, t in touched}
    con = duckdb_connection(threads)
    try:
        want_1m = duckdb_bars(con, files, minute_keys, _US_PER_MINUTE)
        want_1d = duckdb_bars(con, files, day_keys, _US_PER_DAY)
    finally:
        con.close()
    problems = differences("1m", want_1m, stored_bars(tables, "1m", minute_keys))
    problems += differences("1d", want_1d, stored_bars(tables, "1d", day_keys))
    # every sampled key has a trade, so a missing oracle row is a problem too
    problems += [f"1m {k}: no trades found by DuckDB" for k in sorted(minute_keys - set(want_1m))]
    return not problems, len(minute_keys), len(day_keys), problems


# -- the measurement -------------------------------------------------------------------------


def measure_scattered(
    tables: Tables, config: BenchConfig, clock: Clock, work: Path, appended: Sequence[Path],
    first: date, days: int, progress: Progress, *, threads: int = 2,
) -> ScatteredResult:
    """Run the scattered late batch on `tables` (levels up to date with `days` days of history
    from `first`, built from the trades Parquet files `appended`); see the module doc."""
    files = list(appended)
    progress(f"scattered: sparse history of {ILLIQUID} ({ILLIQUID_PER_DAY} trades a day)"
             + (", untimed cascade ..." if config.warmups else " ..."))
    sparse = _write(sparse_history(first, days), work / "scattered_sparse.parquet")
    append_trades(tables, [sparse])
    files.append(sparse)
    if config.warmups:
        run_into(tables, [])

    late = scattered_trades(config.scattered_windows, first, days, config.symbols)
    path = _write(late, work / "scattered_late.parquet")
    files.append(path)
    windows = len({(s, t // _US_PER_MINUTE) for s, t in zip(
        late.column("symbol").to_pylist(), late.column("ts").cast("int64").to_pylist(),
        strict=True)})
    symbols = tuple(sorted(set(late.column("symbol").to_pylist())))
    illiquid = sum(1 for s in late.column("symbol").to_pylist() if s == ILLIQUID)
    progress(f"scattered: {windows:,} late 1m windows over {days} day(s), "
             f"{len(symbols)} symbols; timed cascade ...")
    append_trades(tables, [path])
    results: list[Any] = []
    clock.reset_peaks()
    wall, cpu = clock.measure(functools.partial(run_into, tables, results))
    peak = clock.peak_mib()
    levels = {r.level: {"status": r.status, "windows": r.windows, "partitions": r.partitions,
                        "changed": r.changed, "deleted": r.deleted, "full": r.full,
                        "seconds": r.seconds} for r in results}
    progress(f"  scattered cycle: {wall:.2f}s (" + ", ".join(
        f"{r.level} {r.status} {r.windows} windows" for r in results) + ")")

    progress("scattered: checking 1m samples and touched 1d bars against DuckDB ...")
    exact, n1m, n1d, problems = check_exact(tables, files, late, threads=threads)
    if problems:
        progress(f"  NOT exact: {len(problems)} difference(s), first: {problems[0]}")

    cycle = work / "scattered_ordinary.parquet"
    _write(cycle_trades(config, config.cycles), cycle)
    append_trades(tables, [cycle])
    after: list[Any] = []
    awall, acpu = clock.measure(functools.partial(run_into, tables, after))
    progress(f"  ordinary cycle after the scattered batch: {awall:.2f}s")
    return ScatteredResult(
        days, windows, illiquid, symbols,
        Timing(f"scattered {days}d", (wall,), (cpu,)), peak, levels, exact, n1m, n1d,
        tuple(problems[:5]),
        Timing("ordinary after scattered", (awall,), (acpu,)),
    )
