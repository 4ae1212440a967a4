"""External sources: the time filter reaches the source scan, and dedupe counts a trade once.

Bars are compared with the independent oracle (tests/oracle.py) of the deduplicated trades,
computed here in Python: each (exchange, symbol, trade_id) keeps its valid delivery with the
smallest (ts, price, quantity), as `rollup.transforms.source.dedupe_trades` documents.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from rollup.incremental.runner import plan_level, planned_bars, run_cascade
from rollup.storage.tables import Tables
from rollup.timeframes import Dag
from rollup.transforms.bars import Rollup
from rollup.transforms.source import TradeSource, merge_intervals
from tests.oracle import Trade, compare_level, from_micros, oracle_bars, read_stored
from tests.test_source import micros, seed_source

pytestmark = pytest.mark.spark

DAG = Dag.from_spec({"1m": None, "1h": "1m", "1d": "1h"})
"""1m read from the source (a merged level), 1h built from 1m and 1d from 1h (levels that
overwrite day and month partitions): what the source decides reaches two levels above it,
across a day boundary, at three levels' cost per run instead of five."""

Row = tuple[str, str, int, int, Decimal, Decimal]  # venue, pair, id, timestamp (us), px, size


def deduped(rows: Iterable[Row]) -> list[Trade]:
    """The trades a deduplicating source stands for (rows with a price <= 0 are invalid)."""
    best: dict[tuple[str, str, int], tuple[datetime, Decimal, Decimal]] = {}
    for venue, pair, trade_id, ts, px, size in rows:
        if px <= 0:
            continue
        pick = (from_micros(ts), px, size)
        key = (venue, pair, trade_id)
        if key not in best or pick < best[key]:
            best[key] = pick
    return [Trade(*key, *pick) for key, pick in best.items()]


def assert_oracle(tables: Tables, rows: Iterable[Row]) -> None:
    """Every level equals the oracle of the deduplicated `rows`."""
    trades = deduped(rows)
    stored = read_stored(tables)
    problems = [p for lv in tables.dag.order()
                for p in compare_level(lv.name, stored[lv.name],
                                       oracle_bars(trades, lv.timeframe))]
    assert not problems, "\n".join(problems)


def seed(spark: Any, namespace: str, tmp_path: Any) -> tuple[str, Tables]:
    """The seed design's raw_trades table (`tests.test_source.seed_source`: BIGINT
    microseconds, other column names, dedupe) and rollup's tables of DAG reading it."""
    return seed_source(spark, namespace, tmp_path, dag=DAG)  # no tables of other levels


def append(spark: Any, raw: str, rows: list[Row]) -> None:
    """One commit writing one data file."""
    spark.createDataFrame(rows, spark.table(raw).schema).coalesce(1).writeTo(raw).append()


def scans_of(df: Any, table: str) -> list[str]:
    text = str(df._jdf.queryExecution().executedPlan().toString())
    return [line for line in text.splitlines() if "BatchScan" in line and table in line]


def scanned_files(df: Any, table: str) -> tuple[int, int]:
    """(data files read, data files skipped) by the Iceberg scans of `table` in an executed
    DataFrame, from the scans' metrics."""
    jvm = df.sparkSession._jvm
    read = skipped = 0
    nodes = [df._jdf.queryExecution().executedPlan()]
    while nodes:
        node = nodes.pop()
        name = node.getClass().getSimpleName()
        if name == "AdaptiveSparkPlanExec":
            nodes.append(node.executedPlan())
        elif name.endswith("QueryStageExec"):
            nodes.append(node.plan())
        if name == "BatchScanExec" and table in node.toString():
            metrics = node.metrics()
            read += metrics.apply("resultDataFiles").value()
            skipped += metrics.apply("skippedDataFiles").value()
        nodes += list(jvm.scala.collection.JavaConverters.seqAsJavaList(node.children()))
    return read, skipped


DAY = datetime(2024, 5, 6, tzinfo=UTC)


def test_window_recompute_filters_the_source_scan(spark, namespace, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The first level's recompute of one late window filters the raw `timestamp` column
    (BIGINT microseconds) in the Iceberg scan itself, which then skips the other days'
    files, and the key lookup of dedupe filters the raw `id` column; the bars stay exact."""
    raw, tables = seed(spark, namespace, tmp_path)
    rows: list[Row] = []
    for d in range(3):  # one file per day
        day = [("B", "BTC", 1000 * d + i, micros(DAY + timedelta(days=d, minutes=37 * i)),
                Decimal(100 + i), Decimal("0.5")) for i in range(30)]
        append(spark, raw, day)
        rows += day
    run_cascade(tables)
    late_ts = DAY + timedelta(days=1, hours=5, minutes=1, seconds=5)
    late: list[Row] = [("B", "BTC", 5000, micros(late_ts), Decimal(99), Decimal(1))]
    append(spark, raw, late)
    rows += late

    plan = plan_level(tables, "1m")
    assert plan.status == "recompute" and not plan.full and len(plan.touched.starts) == 1
    lo = micros(DAY + timedelta(days=1, hours=5, minutes=1))
    bars = planned_bars(tables, plan)
    scans = scans_of(bars, "raw_trades")
    assert scans, "no scan of the source in the plan"
    assert all(f"timestamp >= {lo}" in s and f"timestamp < {lo + 60_000_000}" in s
               for s in scans), scans
    assert len(bars.collect()) == 1
    assert scanned_files(bars, "raw_trades") == (2, 2)  # day 1 and the late file; not 0, 2

    source = tables.source
    assert source is not None
    whole = spark.table(raw)
    inside = source.time_filter(whole, [(late_ts, late_ts + timedelta(minutes=1))])
    assert inside is not None
    lookup = source.deliveries(whole.where(~inside), whole.where(inside))
    assert any("id >= 5000" in s and "id <= 5000" in s for s in scans_of(lookup, "raw_trades"))

    results = run_cascade(tables)
    assert results[0].windows == 1
    assert_oracle(tables, rows)
    assert {r.status for r in run_cascade(tables, full=True)} == {"unchanged"}


@pytest.mark.parametrize(("first", "delete_mode"), [("earlier", "copy-on-write"),
                                                    ("later", "merge-on-read")])
def test_moved_trade_across_a_day_boundary_counts_once(  # type: ignore[no-untyped-def]
    spark, namespace, tmp_path, first, delete_mode,
) -> None:
    """Trade 50 is delivered at 23:52:10 and, moved and corrected, at 00:07:40 the next day:
    different windows at every level. The earlier delivery counts, whichever arrives first;
    it keeps counting when a later run recomputes only the other delivery's window, and when
    it is deleted (a rewritten file, or a position delete file) the other one takes over."""
    raw, tables = seed(spark, namespace, tmp_path)
    spark.sql(f"ALTER TABLE {raw} SET TBLPROPERTIES ('format-version'='2', "
              f"'write.delete.mode'='{delete_mode}')")
    start = DAY + timedelta(hours=23, minutes=40)
    rows: list[Row] = [("B", "BTC", i, micros(start + timedelta(minutes=3 * i, seconds=i)),
                        Decimal(200 + i), Decimal("0.25")) for i in range(14)]
    append(spark, raw, rows)
    run_cascade(tables)
    assert_oracle(tables, rows)

    earlier: Row = ("B", "BTC", 50, micros(DAY + timedelta(hours=23, minutes=52, seconds=10)),
                    Decimal("210.5"), Decimal(2))
    later: Row = ("B", "BTC", 50, micros(DAY + timedelta(days=1, minutes=7, seconds=40)),
                  Decimal("210.75"), Decimal(2))
    beside: Row = ("B", "BTC", 70, earlier[3] + 20_000_000, Decimal(207), Decimal(1))
    batches = [[earlier, beside], [later]]  # `beside` shares a data file with `earlier`
    for batch in batches if first == "earlier" else batches[::-1]:
        append(spark, raw, batch)
        rows += batch
        run_cascade(tables)
        assert_oracle(tables, rows)

    # New trades in the later delivery's windows only: their recompute reads those minutes,
    # where trade 50's later delivery is but its earlier one is not.
    near_later: list[Row] = [("B", "BTC", 60, micros(DAY + timedelta(days=1, minutes=7)),
                              Decimal(199), Decimal(1)),
                             ("B", "BTC", 61, micros(DAY + timedelta(days=1, minutes=9)),
                              Decimal(198), Decimal(1))]
    append(spark, raw, near_later)
    rows += near_later
    plan = plan_level(tables, "1m")
    assert [s.minute for s in plan.touched.starts] == [7, 9]
    results = run_cascade(tables)
    assert results[0].windows == 2
    assert_oracle(tables, rows)
    assert {r.status for r in run_cascade(tables, full=True)} == {"unchanged"}

    # The delivery that counted is withdrawn: the other one counts from the next run on.
    spark.sql(f"DELETE FROM {raw} WHERE id = 50 AND `timestamp` = {earlier[3]}")  # noqa: S608
    rows.remove(earlier)
    summary = spark.sql(f"SELECT summary FROM {raw}.snapshots ORDER BY committed_at DESC "  # noqa: S608
                        "LIMIT 1").first()[0]
    assert ("added-position-deletes" in summary) == (delete_mode == "merge-on-read"), summary
    run_cascade(tables)
    assert_oracle(tables, rows)


def test_scoped_read_decides_dedupe_over_every_delivery(spark, namespace) -> None:  # type: ignore[no-untyped-def]
    """`canonical_trades(ranges=..., after=...)` of a deduplicating source: a delivery outside
    the times read still wins, an invalid one never does."""
    source = TradeSource(("rollup", namespace, "raw"), {"ts": "t", "trade_id": "id"}, "ms",
                         dedupe=True)
    tables = Tables(spark, "rollup", namespace, source=source)
    h = DAY + timedelta(hours=12)
    ms = timedelta(milliseconds=1)

    def at(offset: timedelta) -> int:
        return micros(h + offset) // 1000

    data = [  # exchange, symbol, id, t (ms), price, quantity
        ("B", "X", 1, at(-timedelta(hours=2)), Decimal(10), Decimal(1)),  # wins, before h
        ("B", "X", 1, at(timedelta(minutes=5)), Decimal(11), Decimal(1)),
        ("B", "X", 2, at(-timedelta(hours=1)), Decimal(-1), Decimal(1)),  # invalid
        ("B", "X", 2, at(timedelta(minutes=6)), Decimal(12), Decimal(1)),  # wins
        ("B", "X", 3, at(-ms), Decimal(13), Decimal(1)),  # 1 ms before h
        ("B", "X", 4, at(timedelta(0)), Decimal(14), Decimal(1)),  # at h
        ("B", "X", 5, at(timedelta(minutes=5)), Decimal(15), Decimal(1)),
        ("B", "X", 5, at(timedelta(minutes=5)), Decimal(15), Decimal(1)),  # same delivery twice
        ("B", "X", 6, at(timedelta(minutes=30)), Decimal(16), Decimal(1)),  # wins, outside
        ("B", "X", 6, at(timedelta(minutes=31)), Decimal(16), Decimal(1)),
    ]
    frame = spark.createDataFrame(
        data, "exchange STRING, symbol STRING, id BIGINT, t BIGINT, price DECIMAL(18,8), "
        "quantity DECIMAL(20,8)")
    rows = [(e, s, i, t * 1000, p, q) for e, s, i, t, p, q in data]
    expected = {(t.trade_id, t.ts) for t in deduped(rows)}

    def read(**kw: Any) -> set[tuple[int, datetime]]:
        from pyspark.sql import functions as F

        out = tables.canonical_trades(frame, **kw).select("trade_id", F.unix_micros("ts"))
        return {(r[0], from_micros(r[1])) for r in out.collect()}

    after = read(after=h)
    assert {x for x in after if x[1] >= h} == {x for x in expected if x[1] >= h}
    windows = [(h, h + timedelta(minutes=10)), (h + timedelta(minutes=31),
                                                h + timedelta(minutes=32))]
    got = read(ranges=windows)
    assert {x for x in got if any(lo <= x[1] < hi for lo, hi in windows)} == {
        x for x in expected if any(lo <= x[1] < hi for lo, hi in windows)}
    assert read(ranges=windows, dedupe=False) >= {(5, h + timedelta(minutes=5)),
                                                 (1, h + timedelta(minutes=5))}


@pytest.mark.parametrize(
    ("column", "spark_type", "unit", "per_second"),
    [("t", "BIGINT", "s", 1), ("t", "INT", "s", 1), ("t", "DECIMAL(16,3)", "s", 1),
     ("t", "BIGINT", "ms", 1_000), ("t", "BIGINT", "us", 1_000_000),
     ("t", "BIGINT", "ns", 1_000_000_000), ("t", "TIMESTAMP", None, None),
     ("t", "TIMESTAMP_NTZ", None, None)],
)
def test_time_filter_keeps_every_row_in_range(  # type: ignore[no-untyped-def]
    spark, column, spark_type, unit, per_second,
) -> None:
    """The raw filter keeps every row whose validated ts falls in the range (a superset only
    where a unit is coarser than the bound), for each supported column type."""
    from pyspark.sql import functions as F

    source = TradeSource(("c", "n", "t"), {"ts": column}, unit)
    lo = DAY + timedelta(seconds=10, microseconds=500)  # not on a unit edge
    hi = DAY + timedelta(seconds=20)
    offsets = [timedelta(seconds=s) for s in (-86_400, 9, 10, 11, 19, 20, 21)]
    instants = [DAY + o for o in offsets] + [lo, hi - timedelta(microseconds=1)]
    if per_second is None:
        frame = spark.createDataFrame([(i, t) for i, t in enumerate(instants)], "id INT, t0 "
                                      "TIMESTAMP").select("id", F.col("t0").cast(spark_type)
                                                          .alias("t"))
    else:
        values = [Decimal(micros(t)) * per_second / 1_000_000 for t in instants]
        if "DECIMAL" not in spark_type:
            values = [v.to_integral_value(rounding="ROUND_FLOOR") for v in values]
        frame = spark.createDataFrame([(i, str(v)) for i, v in enumerate(values)],
                                      "id INT, t0 STRING").select(
            "id", F.col("t0").cast(spark_type).alias("t"))
    raw = frame.select(F.lit("B").alias("exchange"), F.lit("X").alias("symbol"),
                       F.col("id").alias("trade_id"), "t", F.lit(1).alias("price"),
                       F.lit(1).alias("quantity"))
    valid = source.to_canonical(raw).select("trade_id", F.unix_micros("ts").alias("us"))
    inside = {r.trade_id for r in valid.collect() if micros(lo) <= r.us < micros(hi)}
    assert len(inside) >= 3
    condition = source.time_filter(raw, [(lo, hi)])
    assert condition is not None
    kept = {r.trade_id for r in raw.where(condition).collect()}
    assert inside <= kept
    assert 0 not in kept and len(kept) <= len(inside) + 2  # the day before, and unit edges
    assert source.time_filter(raw, [(lo, None)]) is not None


def test_time_filter_is_none_for_types_it_cannot_compare(spark) -> None:  # type: ignore[no-untyped-def]
    strings = spark.createDataFrame([("1714996800",)], "t STRING")
    assert TradeSource(("c", "n", "t"), {"ts": "t"}, "s").time_filter(
        strings, [(DAY, None)]) is None
    doubles = spark.createDataFrame([(1.5,)], "t DOUBLE")
    assert TradeSource(("c", "n", "t"), {"ts": "t"}, "s").time_filter(
        doubles, [(DAY, None)]) is None


def test_merge_intervals_is_bounded() -> None:
    spans = [(10 * i, 10 * i + 3) for i in range(100)] + [(5, 12)]
    merged = merge_intervals(spans, 8)
    assert len(merged) == 8
    assert all(any(lo <= a and b <= hi for lo, hi in merged) for a, b in spans)
    assert merge_intervals([(1, 2), (2, 5), (9, 9)], 64) == [(1, 5), (9, 9)]


def test_window_ranges_are_what_the_plan_reads() -> None:
    from rollup.timeframes import Dag

    one_m = Rollup(Dag.standard().level("1m"))
    starts = [DAY + timedelta(minutes=m) for m in (0, 1, 2, 10)]
    assert one_m.window_ranges(starts) == [
        (DAY, DAY + timedelta(minutes=3)),
        (DAY + timedelta(minutes=10), DAY + timedelta(minutes=11))]
    scattered = [DAY + timedelta(minutes=2 * m) for m in range(500)]
    assert len(one_m.window_ranges(scattered)) == 64


def test_spans_cut_ranges_at_the_horizon() -> None:
    from rollup.storage.tables import spans

    h = DAY + timedelta(hours=1)
    two = DAY + timedelta(hours=2)
    assert spans(None, h) == [(h, None)]
    assert spans([(DAY, two), (DAY, h)], h) == [(h, two)]
    assert spans([(DAY, h)], None) == [(DAY, h)]
