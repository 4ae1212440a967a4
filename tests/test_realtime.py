"""Real-time reads (`rollup.realtime_bars(tables, level)`, `rollup bars --realtime`) against
the independent oracle of tests/oracle.py, computed from all the trades now in the table.

A cascade runs, then trades arrive that no run has applied (new windows, late trades in old
windows that have bars at every level, a new symbol) or are deleted: every level read in real
time equals the oracle on every column, `provisional` is True exactly for the windows holding
a changed trade, and the read writes nothing.
"""

from __future__ import annotations

import io
import random
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import rollup
from rollup.timeframes import Timeframe
from tests.oracle import (
    TIME_COLUMNS,
    Key,
    Trade,
    compare_level,
    from_micros,
    oracle_bars,
    read_trades,
    window_of,
)

pytestmark = pytest.mark.spark

CATALOG = "rollup"
NY_DAY = "1d@America/New_York"
LEVELS = {"1m": None, "5m": "1m", "30m": "5m", "1h": "30m", "1d": "1h", NY_DAY: "1h"}
STANDARD = ("1m", "5m", "30m", "1h", "1d")
START = datetime(2024, 3, 1, tzinfo=UTC)  # no DST change in New York near these days

Row = tuple[Any, ...]


def _trade(symbol: str, trade_id: int, ts: datetime, rng: random.Random) -> Row:
    return ("X", symbol, trade_id, ts, Decimal(rng.randrange(1_000_000, 1_100_000)) / 100,
            Decimal(rng.randrange(1, 10_000)) / 1000, rng.choice(("buy", "sell", None)))


def first_batch() -> list[Row]:
    """BTC and ETH trades over a day and a half."""
    rng = random.Random(16)
    rows = []
    for symbol in ("BTC", "ETH"):
        for trade_id in range(1, 121):
            rows.append(_trade(symbol, trade_id,
                               START + timedelta(microseconds=rng.randrange(36 * 3600 * 10**6)),
                               rng))
    return rows


def second_batch(first: list[Row]) -> list[Row]:
    """Late trades inside windows that already have bars (one microsecond before or at an
    earlier trade, so open and close may move), trades in new windows (and a new UTC and New
    York day), and a new symbol."""
    rng = random.Random(61)
    rows = []
    for n, old in enumerate(rng.sample(first, 6)):
        ts = old[3] - timedelta(microseconds=n % 2)
        if Timeframe.parse("1m").floor(ts) != Timeframe.parse("1m").floor(old[3]):
            ts = old[3]
        rows.append(_trade(old[1], 1000 + n, ts, rng))
    for n in range(8):
        rows.append(_trade("BTC", 2000 + n, START + timedelta(hours=36, minutes=47 * n + 3), rng))
    for n in range(5):
        rows.append(_trade("SOL", 1 + n, START + timedelta(hours=7 * n, seconds=11), rng))
    return rows


def append(tables: Any, rows: list[Row]) -> None:
    from rollup.specs.bar import TRADE_COLUMNS
    from rollup.specs.columns import spark_schema

    blanks = (None,) * (len(TRADE_COLUMNS) - 7)  # ingested_at, trade_ref
    tables.spark.createDataFrame([(*r, *blanks) for r in rows],
                                 spark_schema(TRADE_COLUMNS)).writeTo(tables.trades).append()


def new_tables(spark: Any, spec: dict[str, str | None] | None = None) -> Any:
    from rollup.storage.tables import Tables
    from rollup.timeframes import Dag

    namespace = f"rt_{uuid.uuid4().hex[:8]}"
    spark.sql(f"CREATE NAMESPACE IF NOT EXISTS {CATALOG}.{namespace}")
    tables = Tables(spark, CATALOG, namespace, Dag.from_spec(spec or LEVELS))
    tables.create_all()
    return tables


def windows_of(rows: list[Row], level: str) -> set[Key]:
    tf = Timeframe.parse(level)
    return {(r[0], r[1], window_of(r[3], tf)[0]) for r in rows}


def table_state(tables: Any) -> dict[str, Any]:
    """Every table's current snapshot and properties (what a read must not change)."""
    from rollup.storage import state

    names = [tables.trades, *(tables.bars(lv) for lv in tables.dag.order())]
    return {name: (state.current_snapshot(tables.spark, name),
                   state.table_properties(tables.spark, name)) for name in names}


def collect(frames: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """The rows of real-time frames (bar columns, window times aware UTC, `provisional`) by
    level, in one Spark job."""
    from pyspark.sql import functions as F

    from rollup.transforms.bars import BAR_OUTPUT

    union = None
    for name, frame in frames.items():
        part = frame.select(F.lit(name).alias("_level"), *(
            F.unix_micros(c).alias(c) if c in TIME_COLUMNS else F.col(c)
            for c in (*BAR_OUTPUT, "provisional")))
        union = part if union is None else union.unionByName(part)
    assert union is not None
    out: dict[str, list[dict[str, Any]]] = {name: [] for name in frames}
    for row in union.collect():
        values = row.asDict()
        for c in TIME_COLUMNS:
            values[c] = None if values[c] is None else from_micros(values[c])
        out[values.pop("_level")].append(values)
    return out


def check_realtime(tables: Any, tops: list[str], changed: list[Row] | dict[str, list[Row]]
                   ) -> None:
    """Every level up to `tops[0]` (one walk: `realtime_levels`) and the other `tops` (through
    `Tables.read_bars`), read in real time, equals the oracle of all trades now in the table;
    exactly the windows holding a `changed` trade (of that level, when `changed` maps levels
    to trades) that still hold trades are provisional; nothing is written."""
    from rollup.incremental.realtime import realtime_levels

    before = table_state(tables)
    frames = {step.level.name: step.bars for step in realtime_levels(tables, tops[0])}
    frames |= {top: rollup.realtime_bars(tables, top) for top in tops[1:]}
    got = collect(frames)
    trades = read_trades(tables)
    problems: list[str] = []
    for name in frames:
        expected = oracle_bars(trades, Timeframe.parse(name))
        problems += compare_level(f"{name} (realtime)", got[name], expected)
        rows = changed.get(name, []) if isinstance(changed, dict) else changed
        wanted = windows_of(rows, name) & set(expected)
        provisional = {(r["exchange"], r["symbol"], r["window_start"]) for r in got[name]
                       if r["provisional"]}
        if provisional != wanted:
            problems.append(f"{name}: provisional {sorted(provisional)[:3]} "
                            f"(+{len(provisional - wanted)} / -{len(wanted - provisional)}), "
                            f"expected {sorted(wanted)[:3]}")
    assert not problems, "\n".join(problems)
    assert table_state(tables) == before, "a real-time read changed a table"


@pytest.fixture(scope="module")
def pending(spark: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A warehouse whose cascade ran, then more trades arrived (`late`) that no run applied,
    and a rollup.toml naming its levels."""
    from rollup.incremental.runner import run_cascade

    tables = new_tables(spark)
    first = first_batch()
    append(tables, first)
    assert all(r.status == "written" for r in run_cascade(tables))
    late = second_batch(first)
    append(tables, late)
    config = tmp_path_factory.mktemp("realtime_config") / "rollup.toml"
    config.write_text("[levels]\n" + "".join(
        f'"{child}" = "{parent or "trades"}"\n' for child, parent in LEVELS.items()))
    return {"tables": tables, "first": first, "late": late, "config": str(config)}


def test_every_level_read_in_real_time_is_exact(pending: dict[str, Any]) -> None:
    check_realtime(pending["tables"], ["1d", NY_DAY], pending["late"])


def test_cli_bars_realtime(pending: dict[str, Any], warehouse: Path, capsys: Any) -> None:
    from rollup.cli import main

    tables = pending["tables"]
    base = ["--warehouse", str(warehouse), "--catalog", CATALOG, "--namespace",
            tables.namespace, "--config", pending["config"], "bars", "1h", "--format", "csv"]
    assert main([*base, "--realtime"]) == 0
    frame = pd.read_csv(io.StringIO(capsys.readouterr().out), dtype=str)
    expected = oracle_bars(read_trades(tables), Timeframe.parse("1h"))
    rows = {(r.exchange, r.symbol, pd.Timestamp(r.window_start).to_pydatetime()): r
            for r in frame.itertuples()}
    assert set(rows) == set(expected)
    for key, bar in expected.items():
        row = rows[key]
        assert (Decimal(row.open), Decimal(row.close), Decimal(row.volume),
                int(row.trade_count)) == (bar["open"], bar["close"], bar["volume"],
                                          bar["trade_count"]), key
    provisional = {key for key, row in rows.items() if row.provisional == "True"}
    assert provisional == windows_of(pending["late"], "1h")
    assert set(frame["provisional"]) == {"True", "False"}
    assert main(base) == 0
    stored = pd.read_csv(io.StringIO(capsys.readouterr().out), dtype=str)
    assert "provisional" not in stored.columns and len(stored) < len(frame)


def test_pyiceberg_reader_refuses_realtime(pending: dict[str, Any], warehouse: Path) -> None:
    from rollup.errors import RealtimeReadError
    from rollup.readers.read import read_bars

    with pytest.raises(RealtimeReadError, match=r"rollup.realtime_bars\(tables, level\)"):
        read_bars("1h", warehouse=warehouse, namespace=pending["tables"].namespace,
                  config=pending["config"], realtime=True)


def test_partly_run_cascade_then_deleted_trades(pending: dict[str, Any]) -> None:
    """Runs only up to 5m, then deletes trades every level has applied (changes `pending`:
    keep this test after the other tests of `pending`)."""
    from rollup.incremental.runner import run_cascade

    tables, first, late = pending["tables"], pending["first"], pending["late"]
    run_cascade(tables, up_to="5m")
    above = {"30m": late, "1h": late, "1d": late}
    check_realtime(tables, ["1d"], above)
    one_minute = Timeframe.parse("1m")
    by_minute: dict[Key, list[Row]] = {}
    for row in first + late:
        by_minute.setdefault((row[0], row[1], one_minute.floor(row[3])), []).append(row)
    ours = [rows for rows in by_minute.values() if rows[0] in first]
    alone = [rows[0] for rows in ours if len(rows) == 1][:2]  # their 1m bars vanish
    shared = [rows[0] for rows in ours if len(rows) > 1][:1]  # its 1m bar changes
    assert len(alone) == 2 and shared
    gone = alone + shared
    where = " OR ".join(f"(symbol = '{r[1]}' AND trade_id = {int(r[2])})" for r in gone)
    tables.spark.sql(f"DELETE FROM {tables.trades} WHERE {where}")  # noqa: S608 - test values
    check_realtime(tables, ["1d"], {"1m": gone, "5m": gone,
                                    **{name: late + gone for name in above}})
    vanished = {(r[0], r[1], one_minute.floor(r[3])) for r in alone}
    minutes = {(r.exchange, r.symbol, r.window_start.replace(tzinfo=UTC))
               for r in rollup.realtime_bars(tables, "1m").collect()}
    assert vanished and not vanished & minutes


def test_levels_never_run_and_the_retention_horizon(spark: Any) -> None:
    """Levels that never ran are computed whole; windows before a level's retention horizon
    keep their stored values, as in runs (docs/retention.md)."""
    from rollup.incremental.realtime import realtime_levels
    from rollup.incremental.runner import run_cascade

    tables = new_tables(spark, {lv: LEVELS[lv] for lv in STANDARD})
    first = first_batch()
    append(tables, first)
    run_cascade(tables, up_to="5m")  # 30m, 1h and 1d never ran: computed whole, provisional
    check_realtime(tables, ["1d"], {name: first for name in ("30m", "1h", "1d")})

    horizon = START + timedelta(days=1)  # as if retention had dropped 1m's older partitions
    tables.spark.sql(f"ALTER TABLE {tables.bars('1m')} SET TBLPROPERTIES "
                     f"('rollup.retained-from' = '{horizon.date().isoformat()}')")
    late = second_batch(first)
    append(tables, late)
    assert {r[3] < horizon for r in late} == {True, False}
    before = table_state(tables)
    got = collect({step.level.name: step.bars for step in realtime_levels(tables, "1d")})
    assert table_state(tables) == before
    old_trades = [Trade(*r) for r in first]
    all_trades = read_trades(tables)
    problems = []
    for name in STANDARD:
        tf = Timeframe.parse(name)
        expected = {k: v for k, v in oracle_bars(old_trades, tf).items() if k[2] < horizon}
        expected |= {k: v for k, v in oracle_bars(all_trades, tf).items() if k[2] >= horizon}
        problems += compare_level(name, got[name], expected)
        provisional = {(r["exchange"], r["symbol"], r["window_start"]) for r in got[name]
                       if r["provisional"]}
        wanted = (set(expected) if name in ("30m", "1h", "1d")
                  else {k for k in windows_of(late, name) if k[2] >= horizon})
        if provisional != wanted:
            problems.append(f"{name}: provisional {len(provisional)}, expected {len(wanted)}")
    assert not problems, "\n".join(problems)
