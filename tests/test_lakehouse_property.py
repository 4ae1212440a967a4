"""Exact under every lakehouse operation (issue 13), checked against an independent oracle.

A Hypothesis property test draws sequences of ingests (on time or late, re-deliveries),
runs of any level or the cascade, compactions (data files, position delete files, manifests)
of the trades or any bar table, DELETE and UPDATE of trades (price, and ts moved by hours or
days), rollbacks of the trades, snapshot expiry, retention and maintenance. After a final
`run_cascade`, every level must equal the pure-Python oracle of tests/oracle.py computed
from the trades then in the table.

Named deterministic tests pin each failure class of issue 13 on its own.
"""

from __future__ import annotations

import tempfile
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, Phase, example, given, note, settings
from hypothesis import strategies as st

from rollup.adapters import TRADES_SCHEMA
from rollup.incremental.retention import enforce_retention
from rollup.incremental.runner import run_cascade, run_level
from rollup.ingestion.batch import ingest_file
from rollup.operations.maintenance import maintain
from rollup.storage.tables import Tables
from rollup.timeframes import Dag
from tests.oracle import assert_matches_oracle

pytestmark = [pytest.mark.spark, pytest.mark.slow]

CATALOG = "rollup"
BASE = datetime(2024, 6, 10, 9, tzinfo=UTC)
DAY = timedelta(days=1)
LEVELS = ["1m", "5m", "30m", "1h", "1d"]
BAR_TABLES = [f"bars_{lv}" for lv in LEVELS]

Row = tuple[str, str, int, datetime, Decimal, Decimal]


# ---------------------------------------------------------------------------------------------
# Helpers: fresh tables, Parquet batches and the lakehouse operations


def short_retention_dag() -> Dag:
    """The standard DAG with retentions short enough for 40 days of test data."""
    return (Dag.standard().replace("1m", retention=30 * DAY).replace("5m", retention=33 * DAY)
            .replace("30m", retention=36 * DAY))


def fresh_tables(spark: Any, dag: Dag | None = None) -> Tables:
    """Every table created in a new namespace `t_<uuid>` of catalog `rollup`."""
    tables = Tables(spark, CATALOG, f"t_{uuid.uuid4().hex[:10]}", dag=dag or Dag.standard())
    tables.create_all()
    return tables


def write_batch(rows: list[Row], path: Path) -> Path:
    exchange, symbol, trade_id, ts, price, quantity = (list(c) for c in zip(*rows, strict=True))
    table = pa.table({
        "exchange": exchange, "symbol": symbol, "trade_id": pa.array(trade_id, pa.int64()),
        "ts": pa.array(ts, pa.timestamp("us", tz="UTC")),
        "price": pa.array(price, pa.decimal128(18, 8)),
        "quantity": pa.array(quantity, pa.decimal128(20, 8)),
        "side": pa.array([None] * len(rows), pa.string()),
    }, schema=TRADES_SCHEMA)
    pq.write_table(table, path)
    return path


def ingest(tables: Tables, rows: list[Row], directory: Path) -> None:
    path = write_batch(rows, directory / f"batch-{uuid.uuid4().hex[:8]}.parquet")
    report = ingest_file(tables, path)
    assert report.read == report.ingested + report.quarantined + report.duplicates


def ident(tables: Tables, table: str) -> str:
    """`namespace.table`: the table argument of an Iceberg procedure."""
    return f"{tables.namespace}.{table}"


def sql_now() -> str:
    return f"TIMESTAMP '{datetime.now(UTC):%Y-%m-%d %H:%M:%S.%f}'"


def compact(tables: Tables, table: str, kind: str = "data") -> None:
    """rewrite_data_files (every file), rewrite_position_delete_files or rewrite_manifests."""
    target = ident(tables, table)
    if kind == "data":
        tables.spark.sql(f"CALL {CATALOG}.system.rewrite_data_files(table => '{target}', "
                         "options => map('min-input-files','1'))").collect()
    elif kind == "deletes":
        tables.spark.sql(f"CALL {CATALOG}.system.rewrite_position_delete_files("
                         f"table => '{target}', options => map('min-input-files','1'))").collect()
    else:
        tables.spark.sql(f"CALL {CATALOG}.system.rewrite_manifests(table => '{target}')"
                         ).collect()


def expire_snapshots(tables: Tables, table: str) -> None:
    """Expire every snapshot but the current one."""
    tables.spark.sql(f"CALL {CATALOG}.system.expire_snapshots(table => '{ident(tables, table)}', "
                     f"older_than => {sql_now()}, retain_last => 1)").collect()


def ancestors(tables: Tables, table: str) -> list[int]:
    """Snapshot ids of the table's current lineage, newest first."""
    rows = tables.spark.sql(
        f"SELECT snapshot_id FROM {tables.name(table)}.history WHERE is_current_ancestor "  # noqa: S608
        "ORDER BY made_current_at DESC").collect()
    return [int(r.snapshot_id) for r in rows]


def rollback(tables: Tables, snapshot_id: int, table: str = "trades") -> None:
    tables.spark.sql(f"CALL {CATALOG}.system.rollback_to_snapshot("
                     f"'{ident(tables, table)}', {int(snapshot_id)})").collect()


def bar_snapshots(tables: Tables) -> dict[str, int | None]:
    """Current snapshot id of every bar table (read from the snapshots metadata table)."""
    out: dict[str, int | None] = {}
    for table in BAR_TABLES:
        ids = ancestors(tables, table)
        out[table] = ids[0] if ids else None
    return out


def hourly_rows(start: datetime, hours: int, symbols: tuple[str, ...] = ("BTC", "ETH"),
                per_hour: int = 3, first_id: int = 0) -> list[Row]:
    """A few trades an hour per symbol; ids unique per symbol; prices vary."""
    rows: list[Row] = []
    tid = first_id
    for h in range(hours):
        for k in range(per_hour):
            for i, sym in enumerate(symbols):
                ts = start + timedelta(hours=h, minutes=7 * k + 3 * i, seconds=k)
                rows.append(("X", sym, tid, ts, Decimal(100 + (tid * 37) % 23) + Decimal(i) / 4,
                             Decimal(1 + tid % 3)))
            tid += 1
    return rows


# ---------------------------------------------------------------------------------------------
# The property test


def key_content(sym: str, tid: int, age: int) -> Row:
    """A trade whose content follows from its key: a re-delivery is an exact duplicate."""
    trade_id = tid + 1000 * age
    if age:
        ts = BASE - age * DAY + timedelta(seconds=(tid * 7919) % 7200)
    else:
        ts = BASE + timedelta(seconds=tid * 97)
    return ("X", sym, trade_id, ts, Decimal(100 + tid) + Decimal(age) / 8, Decimal(tid % 4))


AGES = st.sampled_from([0, 0, 0, 1, 2, 7, 20, 31, 34, 37, 40])  # days late


@st.composite
def batches(draw: st.DrawFn) -> list[Row]:
    n = draw(st.integers(1, 25))
    return [key_content(draw(st.sampled_from(["BTC", "ETH"])), draw(st.integers(0, 30)),
                        draw(AGES)) for _ in range(n)]


def scattered(n: int, offset: int) -> list[Row]:
    """`n` trades of an illiquid symbol, each alone in its 1m window, 4-9 minutes apart
    (gaps between windows), over days before BASE: a change set of `n` separate windows."""
    rows: list[Row] = []
    ts = BASE - 8 * DAY + timedelta(seconds=offset)
    for i in range(n):
        ts += timedelta(minutes=4 + (i * 7) % 6, seconds=i % 50)
        rows.append(("X", "ILLQ", offset * 10_000 + i, ts,
                     Decimal("0.5") + Decimal(i % 17) / 100, Decimal(i % 5)))
    return rows


SYMBOLS = st.sampled_from(["BTC", "ETH"])
ANY_TABLE = st.sampled_from(["trades", *BAR_TABLES])

operation = st.one_of(
    st.tuples(st.just("ingest"), batches()),
    st.tuples(st.just("ingest"), batches()),
    st.tuples(st.just("ingest"), st.tuples(st.sampled_from([300, 1200]), st.integers(0, 9))
              .map(lambda a: scattered(*a))),
    st.tuples(st.just("run"), st.sampled_from(LEVELS)),
    st.tuples(st.just("cascade"), st.none()),
    st.tuples(st.just("compact"),
              st.tuples(ANY_TABLE, st.sampled_from(["data", "data", "deletes", "manifests"]))),
    st.tuples(st.just("delete"), st.tuples(SYMBOLS, st.just("mod"), st.integers(0, 6))),
    st.tuples(st.just("delete"), st.tuples(SYMBOLS, st.just("age"), AGES)),
    st.tuples(st.just("update_price"), st.tuples(SYMBOLS, st.integers(0, 4))),
    st.tuples(st.just("update_ts"), st.tuples(SYMBOLS, st.integers(0, 4),
                                              st.sampled_from([1, 3, 24, 49, -26, -75]))),
    st.tuples(st.just("rollback"), st.integers(1, 3)),
    st.tuples(st.just("expire"), ANY_TABLE),
    st.tuples(st.just("retention"), st.sampled_from([0, 2, 5])),
    st.tuples(st.just("maintenance"), st.none()),
)


def apply(tables: Tables, op: tuple[str, Any], directory: Path) -> None:
    kind, arg = op
    spark = tables.spark
    trades = tables.trades
    if kind == "ingest":
        ingest(tables, arg, directory)
    elif kind == "run":
        run_level(tables, arg)
    elif kind == "cascade":
        run_cascade(tables)
    elif kind == "compact":
        table, how = arg
        compact(tables, table, how)
    elif kind == "delete":
        sym, how, n = arg
        where = (f"trade_id % 7 = {n}" if how == "mod"
                 else f"trade_id BETWEEN {n * 1000} AND {n * 1000 + 999}")  # one age: whole days
        spark.sql(f"DELETE FROM {trades} WHERE symbol = '{sym}' AND {where}")  # noqa: S608
    elif kind == "update_price":
        sym, n = arg
        spark.sql(f"UPDATE {trades} SET price = price + 1.5 "  # noqa: S608
                  f"WHERE symbol = '{sym}' AND trade_id % 5 = {n}")
    elif kind == "update_ts":
        sym, n, hours = arg
        sign = "+" if hours > 0 else "-"
        spark.sql(f"UPDATE {trades} SET ts = ts {sign} INTERVAL {abs(hours)} HOURS "  # noqa: S608
                  f"WHERE symbol = '{sym}' AND trade_id % 5 = {n}")
    elif kind == "rollback":
        lineage = ancestors(tables, "trades")
        if len(lineage) > arg:
            rollback(tables, lineage[arg])
    elif kind == "expire":
        expire_snapshots(tables, arg)
    elif kind == "retention":
        enforce_retention(tables, now=BASE + arg * DAY)
    elif kind == "maintenance":
        # as aggressive as it allows: partitions of two files, every snapshot but the newest
        maintain(tables, min_input_files=2, snapshot_age=timedelta(0))
    else:  # pragma: no cover
        raise AssertionError(kind)


# Two fixed sequences always run first: compaction hiding a late append plus corrections, and a
# scattered late batch with a compacted 1m table, expired trade snapshots and retention.
ON_TIME = [key_content(sym, tid, 0) for sym in ("BTC", "ETH") for tid in range(0, 30, 3)]
LATE = [key_content(sym, tid, age) for sym, tid, age in
        [("BTC", 4, 1), ("ETH", 5, 7), ("BTC", 6, 0), ("ETH", 7, 20), ("ETH", 3, 0)]]


@settings(max_examples=4, deadline=None, phases=[Phase.explicit, Phase.reuse, Phase.generate],
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.data_too_large])
@given(ops=st.lists(operation, min_size=4, max_size=10))
@example(ops=[("ingest", ON_TIME), ("cascade", None), ("ingest", LATE),
              ("compact", ("trades", "data")), ("run", "1m"), ("delete", ("ETH", "mod", 3)),
              ("update_ts", ("BTC", 1, 49))])
@example(ops=[("ingest", ON_TIME), ("cascade", None), ("ingest", scattered(1200, 0)),
              ("run", "1m"), ("compact", ("bars_1m", "data")), ("expire", "trades"),
              ("retention", 0)])
def test_any_sequence_of_lakehouse_operations_ends_exact(spark, ops) -> None:  # type: ignore[no-untyped-def]
    # Shrinking is off (each step costs seconds of Spark); the drawn sequence is printed.
    tables = fresh_tables(spark, short_retention_dag())
    note(f"namespace {tables.namespace}")
    with tempfile.TemporaryDirectory() as tmp:
        for i, op in enumerate(ops):
            note(f"op {i}: {op[0]} {op[1] if op[0] != 'ingest' else f'{len(op[1])} trades'}")
            apply(tables, op, Path(tmp))
    run_cascade(tables)
    assert_matches_oracle(tables)


# ---------------------------------------------------------------------------------------------
# Deterministic regression tests, one per failure class of issue 13


def assert_exact_and_checked(tables: Tables) -> None:
    """Every level equals the oracle, and `rollup check` (every quality check) passes."""
    from rollup.operations.quality import run_checks

    assert_matches_oracle(tables)
    failed = [r.as_json() for r in run_checks(tables) if not r.passed]
    assert failed == [], failed


@pytest.fixture
def fresh(spark):  # type: ignore[no-untyped-def]
    return fresh_tables(spark)


def test_a_compacting_trades_never_hides_late_trades(fresh, tmp_path) -> None:  # type: ignore[no-untyped-def]
    ingest(fresh, hourly_rows(BASE, 6), tmp_path)
    run_cascade(fresh)
    assert_matches_oracle(fresh)
    # new windows and days, and trades into windows already stored
    late = (hourly_rows(BASE - 3 * DAY, 4, first_id=10_000)
            + hourly_rows(BASE + timedelta(minutes=1), 2, first_id=20_000))
    ingest(fresh, late, tmp_path)
    compact(fresh, "trades", "data")
    run_cascade(fresh)
    assert_exact_and_checked(fresh)


def test_b_compacting_bars_1m_while_coarser_levels_lag(fresh, tmp_path) -> None:  # type: ignore[no-untyped-def]
    ingest(fresh, hourly_rows(BASE, 6), tmp_path)
    run_cascade(fresh)
    ingest(fresh, hourly_rows(BASE - 2 * DAY, 3, first_id=10_000)
           + hourly_rows(BASE + timedelta(minutes=2), 3, first_id=20_000), tmp_path)
    run_level(fresh, "1m")  # 5m and above lag behind 1m
    compact(fresh, "bars_1m", "data")
    compact(fresh, "bars_1m", "deletes")
    run_level(fresh, "5m")  # 30m lags behind 5m, then 5m is compacted
    ingest(fresh, hourly_rows(BASE - 5 * DAY, 2, first_id=30_000), tmp_path)
    run_level(fresh, "1m")
    run_level(fresh, "5m")
    compact(fresh, "bars_5m", "data")
    compact(fresh, "bars_5m", "manifests")
    run_cascade(fresh)
    assert_exact_and_checked(fresh)


def test_c_corrections_of_trades_reach_every_level(fresh, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """One warehouse through three corrections in turn, each checked on its own: a DELETE
    (c1), an UPDATE of price (c2), UPDATEs moving ts to another day and back by hours (c3)."""
    ingest(fresh, hourly_rows(BASE - 2 * DAY, 30), tmp_path)
    run_cascade(fresh)
    assert_matches_oracle(fresh)

    # c1: a DELETE of trades reaches every level
    fresh.spark.sql(f"DELETE FROM {fresh.trades} WHERE symbol = 'ETH' AND "  # noqa: S608
                    "(trade_id % 4 = 1 OR trade_id BETWEEN 20 AND 35)")
    run_cascade(fresh)
    assert_exact_and_checked(fresh)

    # c2: an UPDATE of price reaches every level (BTC: untouched by c1's DELETE)
    fresh.spark.sql(f"UPDATE {fresh.trades} SET price = price * 2 "  # noqa: S608
                    "WHERE symbol = 'BTC' AND trade_id % 3 = 0")
    run_cascade(fresh)
    assert_exact_and_checked(fresh)

    # c3: an UPDATE moving ts to another day is counted once
    fresh.spark.sql(f"UPDATE {fresh.trades} SET ts = ts + INTERVAL 26 HOURS "  # noqa: S608
                    "WHERE symbol = 'BTC' AND trade_id BETWEEN 5 AND 12")
    run_cascade(fresh)
    assert_matches_oracle(fresh)
    fresh.spark.sql(f"UPDATE {fresh.trades} SET ts = ts - INTERVAL 3 HOURS "  # noqa: S608
                    "WHERE symbol = 'ETH' AND trade_id % 2 = 0")
    run_cascade(fresh)
    assert_exact_and_checked(fresh)


def test_d_rollback_of_trades(fresh, tmp_path) -> None:  # type: ignore[no-untyped-def]
    ingest(fresh, hourly_rows(BASE, 8), tmp_path)
    run_cascade(fresh)
    good = ancestors(fresh, "trades")[0]
    # a bad load: new windows, new days, and trades into stored windows
    ingest(fresh, hourly_rows(BASE - 4 * DAY, 5, first_id=10_000)
           + hourly_rows(BASE + timedelta(seconds=30), 4, first_id=20_000), tmp_path)
    run_cascade(fresh)
    rollback(fresh, good)
    run_cascade(fresh)
    assert_exact_and_checked(fresh)


def test_e_full_run_removes_vanished_bars_and_emptied_partitions(fresh, tmp_path) -> None:  # type: ignore[no-untyped-def]
    may31 = datetime(2024, 5, 31, 20, tzinfo=UTC)
    ingest(fresh, hourly_rows(may31, 30), tmp_path)  # 2024-05-31 20:00 .. 2024-06-02 02:00
    run_cascade(fresh)
    assert_matches_oracle(fresh)
    # all of May 31 (a whole day partition, and the whole May partition of 1d), and some
    # ETH windows of June 1 (vanished windows in partitions that keep other bars)
    fresh.spark.sql(f"DELETE FROM {fresh.trades} WHERE ts < TIMESTAMP '2024-06-01 00:00:00' "  # noqa: S608
                    "OR (symbol = 'ETH' AND ts BETWEEN TIMESTAMP '2024-06-01 05:00:00' AND "
                    "TIMESTAMP '2024-06-01 09:00:00')")
    run_cascade(fresh, full=True)
    assert_exact_and_checked(fresh)
    for level in LEVELS:
        left = fresh.read_bars(level).where("window_date < DATE '2024-06-01'").count()
        assert left == 0, f"{level}: {left} bars left in partitions whose trades were deleted"


def test_f_scattered_late_batch_of_an_illiquid_symbol(fresh, tmp_path) -> None:  # type: ignore[no-untyped-def]
    ingest(fresh, hourly_rows(BASE, 4), tmp_path)
    run_cascade(fresh)
    # 1,500 trades of one illiquid symbol, each alone in its 1m window, with gaps, over a week
    ingest(fresh, scattered(1500, 0), tmp_path)
    run_cascade(fresh)
    assert fresh.read_bars("1m").where("symbol = 'ILLQ'").count() == 1500
    assert_exact_and_checked(fresh)


def test_g_full_run_after_retention_commits_nothing(spark, tmp_path) -> None:  # type: ignore[no-untyped-def]
    dag = (Dag.standard().replace("1m", retention=5 * DAY).replace("5m", retention=8 * DAY)
           .replace("30m", retention=12 * DAY))
    tables = fresh_tables(spark, dag)
    rows: list[Row] = []
    for day in range(20):  # 20 days, two hours of trades each
        rows += hourly_rows(BASE - day * DAY, 2, first_id=100 * day)
    ingest(tables, rows, tmp_path)
    run_cascade(tables)
    enforce_retention(tables, now=BASE + DAY)  # drops old partitions of 1m, 5m and 30m
    run_cascade(tables)
    assert_matches_oracle(tables)
    before = bar_snapshots(tables)
    run_cascade(tables, full=True)
    assert bar_snapshots(tables) == before, "run --full after retention committed a snapshot"
    run_cascade(tables, full=True)
    assert bar_snapshots(tables) == before, "a second run --full committed a snapshot"
    assert_exact_and_checked(tables)
