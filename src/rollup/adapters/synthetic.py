"""Deterministic synthetic trades for demos, tests and benchmarks.

`synthetic_trades` builds a trades frame (`rollup.adapters.TRADES_SCHEMA`) with numpy only:
every decimal is produced from an exact integer number of 1e-8 units, so prices and
quantities are exact decimals by construction (no float ever reaches a decimal column).

Symbols cycle through `SYMBOL_PROFILES`, which span the realistic extremes: BTC-like prices
around 60,000 with 2 decimals and quantities of a few hundredths with 8 decimals; meme-coin
prices around 1e-5 with 8 decimals and whole-unit quantities around 1e9; and several in
between. Each symbol's price is a multiplicative random walk rounded to its tick size.

Guaranteed features (for every symbol with at least two trades):

- ties: about 5% of trades share the timestamp of the previous trade of the same symbol,
  and the first two trades of each symbol always share a timestamp;
- minute boundaries: about 1% of trades fall exactly on a whole minute, and the first trade
  of each symbol always does;
- trade ids unique and strictly increasing per (exchange, symbol) in (ts, trade_id) order,
  with small random gaps.

Rows are ordered by ts (stable: ties keep their trade_id order, symbols in profile order).
The same arguments always give an equal table (numpy ``default_rng(seed)``).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from rollup.adapters import PRICE_TYPE, QUANTITY_TYPE, TRADES_SCHEMA, TS_TYPE
from rollup.errors import ConfigError

__all__ = ["SYMBOL_PROFILES", "SymbolProfile", "synthetic_trades", "write_trades_parquet"]

_UNITS = 10**8  # 1e-8 units per whole unit: decimals are built from integers of these
_US_PER_DAY = 86_400_000_000
_US_PER_MINUTE = 60_000_000
_EPOCH = date(1970, 1, 1)
_MAX_PRICE_UNITS = 10**18 - 1  # decimal128(18, 8)
_MAX_QUANTITY_UNITS = 2**62  # keep well inside int64 (decimal128(20, 8) allows more)
_TIE_SHARE = 0.05
_BOUNDARY_SHARE = 0.01
_NULL_SIDE_SHARE = 0.02


@dataclass(frozen=True)
class SymbolProfile:
    """How one synthetic symbol looks: start price, tick sizes and trade-size distribution."""

    name: str
    start_price_units: int  # start price in 1e-8 units
    price_decimals: int  # prices are multiples of 10**-price_decimals
    quantity_decimals: int  # quantities are multiples of 10**-quantity_decimals
    median_quantity_units: int  # median trade size in 1e-8 units
    daily_volatility: float  # standard deviation of the daily log return
    weight: float  # relative share of the trades


SYMBOL_PROFILES: tuple[SymbolProfile, ...] = (
    SymbolProfile("BTC-USD", 60_000 * _UNITS, 2, 8, 2_000_000, 0.03, 4.0),
    SymbolProfile("PEPE-USD", 1_234, 8, 0, 1_000_000_000 * _UNITS, 0.08, 2.0),
    SymbolProfile("ETH-USD", 3_000 * _UNITS, 2, 4, 50_000_000, 0.04, 3.0),
    SymbolProfile("DOGE-USD", 8_000_000, 5, 0, 5_000 * _UNITS, 0.06, 2.0),
    SymbolProfile("SOL-USD", 100 * _UNITS, 3, 3, 300_000_000, 0.05, 1.5),
    SymbolProfile("SHIB-USD", 987, 8, 0, 20_000_000 * _UNITS, 0.07, 1.0),
    SymbolProfile("XRP-USD", 60_000_000, 4, 1, 500 * _UNITS, 0.05, 1.0),
    SymbolProfile("AAPL", 190 * _UNITS, 2, 0, 100 * _UNITS, 0.015, 1.0),
)
"""The profiles symbols cycle through; symbol i > 7 is ``f"{profile.name}-{i // 8}"``."""


def _profiles(symbols: int) -> list[tuple[str, SymbolProfile]]:
    out = []
    for i in range(symbols):
        profile = SYMBOL_PROFILES[i % len(SYMBOL_PROFILES)]
        round_ = i // len(SYMBOL_PROFILES)
        out.append((profile.name if round_ == 0 else f"{profile.name}-{round_}", profile))
    return out


def _decimal_from_units(units: np.ndarray, type_: pa.Decimal128Type) -> pa.Array:
    """An exact decimal128 array whose unscaled integers are ``units`` (int64).

    decimal128 stores each value as a 16-byte little-endian two's-complement integer; the low
    8 bytes are the int64 itself and the high 8 bytes its sign extension.
    """
    units = np.ascontiguousarray(units, dtype=np.int64)
    words = np.empty((units.size, 2), dtype="<i8")
    words[:, 0] = units
    words[:, 1] = units >> 63
    return pa.Array.from_buffers(type_, units.size, [None, pa.py_buffer(words)])


def _timestamps(rng: np.random.Generator, n: int, start_us: int, span_us: int) -> np.ndarray:
    ts = rng.integers(0, span_us, size=n, dtype=np.int64)
    boundary = rng.random(n) < _BOUNDARY_SHARE
    ts[boundary] -= ts[boundary] % _US_PER_MINUTE
    ts.sort()
    if n >= 2:
        ts[0] -= ts[0] % _US_PER_MINUTE  # stays <= ts[1]
        tie = rng.random(n) < _TIE_SHARE
        tie[0] = False
        tie[1] = True
        # a tied trade takes the time of the nearest earlier untied trade: sortedness is kept
        source = np.maximum.accumulate(np.where(tie, 0, np.arange(n)))
        ts = ts[source]
    return ts + start_us


def _prices(
    rng: np.random.Generator, n: int, profile: SymbolProfile, trades_per_day: float
) -> np.ndarray:
    tick = 10 ** (8 - profile.price_decimals)
    sigma = profile.daily_volatility / np.sqrt(max(trades_per_day, 1.0))
    log_path = np.cumsum(rng.standard_normal(n) * sigma)
    ticks = np.rint(np.exp(log_path) * (profile.start_price_units / tick))
    ticks = np.clip(ticks, 1, _MAX_PRICE_UNITS // tick)
    units: np.ndarray = ticks.astype(np.int64) * tick
    return units


def _quantities(rng: np.random.Generator, n: int, profile: SymbolProfile) -> np.ndarray:
    step = 10 ** (8 - profile.quantity_decimals)
    raw = rng.lognormal(mean=0.0, sigma=1.0, size=n) * (profile.median_quantity_units / step)
    steps = np.clip(np.rint(raw), 1, _MAX_QUANTITY_UNITS // step)
    units: np.ndarray = steps.astype(np.int64) * step
    return units


def synthetic_trades(
    n_trades: int,
    *,
    symbols: int = 5,
    day: date = date(2024, 1, 2),
    days: int = 1,
    exchange: str = "SYNTH",
    seed: int = 0,
) -> pa.Table:
    """``n_trades`` deterministic synthetic trades in the trades-frame schema.

    Trades of ``symbols`` symbols (see `SYMBOL_PROFILES`) spread uniformly over ``days``
    whole UTC days starting at midnight of ``day``. Symbols get shares of the trades by
    profile weight (multinomial draw). See the module docstring for the guaranteed ties,
    minute-boundary instants and trade-id properties. ``side`` is "buy" or "sell", null for
    about 2% of trades. Vectorised with numpy: millions of rows per second.
    """
    if isinstance(n_trades, bool) or not isinstance(n_trades, int) or n_trades < 0:
        raise ConfigError(f"n_trades must be an int >= 0, got {n_trades!r}")
    if isinstance(symbols, bool) or not isinstance(symbols, int) or symbols < 1:
        raise ConfigError(f"symbols must be an int >= 1, got {symbols!r}")
    if isinstance(days, bool) or not isinstance(days, int) or days < 1:
        raise ConfigError(f"days must be an int >= 1, got {days!r}")
    if not isinstance(day, date):
        raise ConfigError(f"day must be a datetime.date, got {day!r}")
    if not isinstance(exchange, str) or not exchange:
        raise ConfigError(f"exchange must be a non-empty string, got {exchange!r}")

    rng = np.random.default_rng(seed)
    profiles = _profiles(symbols)
    weights = np.array([p.weight for _, p in profiles], dtype=np.float64)
    counts = rng.multinomial(n_trades, weights / weights.sum())
    start_us = (day - _EPOCH).days * _US_PER_DAY
    span_us = days * _US_PER_DAY

    ts_parts, id_parts, price_parts, qty_parts, sym_parts = [], [], [], [], []
    for index, ((_, profile), count) in enumerate(zip(profiles, counts, strict=True)):
        n = int(count)
        ts_parts.append(_timestamps(rng, n, start_us, span_us))
        first_id = int(rng.integers(1, 10**9))
        id_parts.append(first_id + np.cumsum(rng.integers(1, 4, size=n, dtype=np.int64)))
        price_parts.append(_prices(rng, n, profile, n / days))
        qty_parts.append(_quantities(rng, n, profile))
        sym_parts.append(np.full(n, index, dtype=np.int32))
    side_code = rng.integers(0, 2, size=n_trades, dtype=np.int8)
    side_null = rng.random(n_trades) < _NULL_SIDE_SHARE

    ts = np.concatenate(ts_parts) if ts_parts else np.empty(0, np.int64)
    order = np.argsort(ts, kind="stable")  # per-symbol runs are sorted: cheap merge
    ts = ts[order]
    trade_id = np.concatenate(id_parts)[order]
    price = np.concatenate(price_parts)[order]
    quantity = np.concatenate(qty_parts)[order]
    symbol_index = np.concatenate(sym_parts)[order]

    names = pa.array([name for name, _ in profiles], pa.string())
    symbol = pa.DictionaryArray.from_arrays(pa.array(symbol_index, pa.int32()), names)
    side = pa.DictionaryArray.from_arrays(
        pa.array(side_code, pa.int8(), mask=side_null), pa.array(["buy", "sell"], pa.string())
    )
    columns = [
        pa.DictionaryArray.from_arrays(
            pa.array(np.zeros(n_trades, np.int8)), pa.array([exchange], pa.string())
        ).cast(pa.string()),
        symbol.cast(pa.string()),
        pa.array(trade_id, pa.int64()),
        pa.array(ts, pa.int64()).cast(TS_TYPE),
        _decimal_from_units(price, PRICE_TYPE),
        _decimal_from_units(quantity, QUANTITY_TYPE),
        side.cast(pa.string()),
    ]
    return pa.Table.from_arrays(columns, schema=TRADES_SCHEMA)


def write_trades_parquet(
    table: pa.Table,
    path: str | os.PathLike[str],
    rows_per_file: int = 1_000_000,
    *,
    compression: str = "zstd",
    overwrite: bool = False,
) -> list[Path]:
    """Write ``table`` as Parquet files ``part-00000.parquet``, ... into directory ``path``.

    Each file holds at most ``rows_per_file`` consecutive rows of ``table`` (an empty table
    gives one empty file, so the schema is still on disk). The directory is created if
    needed; if it already holds ``part-*.parquet`` files, `ConfigError` is raised unless
    ``overwrite=True``, which deletes them first. Returns the written paths in order.
    """
    if isinstance(rows_per_file, bool) or not isinstance(rows_per_file, int) or rows_per_file < 1:
        raise ConfigError(f"rows_per_file must be an int >= 1, got {rows_per_file!r}")
    directory = Path(path)
    if directory.exists() and not directory.is_dir():
        raise ConfigError(f"{directory}: exists and is not a directory")
    directory.mkdir(parents=True, exist_ok=True)
    existing = sorted(directory.glob("part-*.parquet"))
    if existing:
        if not overwrite:
            raise ConfigError(f"{directory}: already holds part-*.parquet files")
        for old in existing:
            old.unlink()
    written: list[Path] = []
    starts = range(0, max(table.num_rows, 1), rows_per_file)
    for number, start in enumerate(starts):
        target = directory / f"part-{number:05d}.parquet"
        # Decimals of precision <= 18 as INT64, as Spark's and Iceberg's writers store them
        # (pyarrow's default, a fixed-length byte array, costs readers a conversion per value).
        pq.write_table(table.slice(start, rows_per_file), target, compression=compression,
                       store_decimal_as_integer=True)
        written.append(target)
    return written


def _main() -> None:  # pragma: no cover - manual benchmark: python -m rollup.adapters.synthetic
    for n in (1_000_000, 5_000_000):
        began = time.perf_counter()
        synthetic_trades(n)
        print(f"{n:>9,} trades in {time.perf_counter() - began:.2f} s")


if __name__ == "__main__":  # pragma: no cover
    _main()
