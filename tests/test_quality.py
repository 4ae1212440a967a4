"""Quality checks: each planted violation is found exactly, a clean cascade passes."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from rollup.operations.quality import (
    CHECKS,
    NAMES,
    CheckResult,
    Freshness,
    check_name,
    freshness_result,
)

T0 = datetime(2024, 1, 2, tzinfo=UTC)


# ---------------------------------------------------------------------------------------------
# Pure: freshness arithmetic and result shapes


def _fresh(**kw: Any) -> Freshness:
    base: dict[str, Any] = dict(level="5m", pending=False, parent_newest=T0, consumed=T0,
                                reflected=T0, newest_trade=T0)
    base.update(kw)
    return Freshness(**base)


def test_freshness_lags_are_data_time_and_never_negative() -> None:
    info = _fresh(parent_newest=T0 + timedelta(minutes=7), consumed=T0,
                  reflected=T0 - timedelta(minutes=1), newest_trade=T0 + timedelta(minutes=9))
    assert info.lag_parent == timedelta(minutes=7)
    assert info.lag_trades == timedelta(minutes=10)
    ahead = _fresh(reflected=T0 + timedelta(hours=1))  # a 1d bar ends after the newest trade
    assert ahead.lag_trades == timedelta(0)
    assert _fresh(consumed=None).lag_parent is None


def test_freshness_passes_without_limits_and_fails_past_them() -> None:
    info = _fresh(newest_trade=T0 + timedelta(minutes=30), pending=True)
    now = T0 + timedelta(days=400)
    assert freshness_result(info, max_age=None, max_lag=None, now=now).passed
    lag = freshness_result(info, max_age=None, max_lag=timedelta(minutes=15), now=now)
    assert (lag.passed, lag.violations) == (False, 1)
    assert "lag behind trades over 15m" in lag.detail and "pending input: yes" in lag.detail
    age = freshness_result(info, max_age=timedelta(days=1), max_lag=None, now=now)
    assert not age.passed and "age 400d" in age.detail
    young = freshness_result(info, max_age=timedelta(days=1), max_lag=None,
                            now=T0 + timedelta(hours=3))
    assert young.passed
    never_ran = _fresh(consumed=None, reflected=None)
    assert not freshness_result(never_ran, max_age=timedelta(days=1), max_lag=None, now=now).passed


def test_check_result_json_names_keys_in_utc() -> None:
    result = CheckResult("1h", "price", False, 1, (("X", "BTC", T0),), "detail")
    assert result.as_json() == {
        "timeframe": "1h", "check": "price", "passed": False, "violations": 1,
        "samples": [{"exchange": "X", "symbol": "BTC", "window_start": "2024-01-02T00:00:00Z"}],
        "detail": "detail",
    }


def test_checks_are_functions_named_after_what_they_check() -> None:
    from rollup.errors import InputError
    from rollup.operations.quality import run_checks

    assert NAMES == ("price", "vwap", "volume", "alignment", "unique", "reconcile", "freshness")
    assert [check_name(c) for c in CHECKS] == list(NAMES) and all(map(callable, CHECKS))
    with pytest.raises(InputError, match="unknown check 'ohlc': expected one of price, vwap"):
        run_checks(None, checks=("ohlc",))  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# Spark helpers


def append_trades(tables: Any, arrow: Any) -> None:
    """Append a trades-frame pyarrow table to the trades table (bypassing ingest)."""
    from rollup.specs.bar import FEED_NAMES, TRADE_COLUMNS
    from rollup.specs.columns import spark_schema

    stamps = (None,) * (len(TRADE_COLUMNS) - len(FEED_NAMES))  # ingested_at, trade_ref
    rows = [(*[r[n] for n in FEED_NAMES], *stamps) for r in arrow.to_pylist()]
    tables.spark.createDataFrame(rows, spark_schema(TRADE_COLUMNS)).writeTo(
        tables.trades).append()


def new_tables(spark: Any, dag: Any = None) -> Any:
    from rollup.storage.tables import Tables
    from rollup.timeframes import Dag

    namespace = f"q_{uuid.uuid4().hex[:8]}"
    tables = Tables(spark, "rollup", namespace, dag or Dag.standard())
    tables.create_all()
    return tables


def cascade(spark: Any, n: int = 400, symbols: int = 4, days: int = 2) -> Any:
    from rollup.adapters.synthetic import synthetic_trades
    from rollup.incremental.runner import run_cascade

    tables = new_tables(spark)
    append_trades(tables, synthetic_trades(n, symbols=symbols, day=T0.date(), days=days))
    run_cascade(tables)
    return tables


def failing(results: list[CheckResult]) -> dict[tuple[str, str], set[tuple[str, str, datetime]]]:
    return {(r.timeframe, r.check): set(r.samples) for r in results if not r.passed}


@pytest.fixture(scope="module")
def clean(spark: Any) -> Any:
    """A cascade of 2 days x 4 symbols, never modified by the tests."""
    return cascade(spark)


@pytest.fixture(scope="module")
def scratch(spark: Any) -> Any:
    """Another such cascade, which tests change: planted 1d rows, later trades."""
    return cascade(spark)


# ---------------------------------------------------------------------------------------------
# Spark tests


@pytest.mark.spark
def test_row_invariants_on_handmade_bars(spark: Any) -> None:
    """Each invariant flags exactly the bars breaking it; zero-volume bars are legitimate."""
    from pyspark.sql import functions as F

    from rollup.operations.quality import row_violations
    from rollup.specs.columns import spark_schema
    from rollup.timeframes import Timeframe

    def bar(name: str, **kw: Any) -> tuple[Any, ...]:
        d = Decimal
        row: dict[str, Any] = dict(
            exchange="X", symbol=name, window_start=T0.replace(tzinfo=None),
            window_end=(T0 + timedelta(minutes=5)).replace(tzinfo=None), window_date=T0.date(),
            open=d("10"), high=d("12"), low=d("9"), close=d("11"), volume=d("2"),
            quote_volume=d("21"), trade_count=2, vwap=d("10.5"),
            buy_volume=d("1"), sell_volume=d("1"), buy_count=1, sell_count=1,
            open_ts=T0.replace(tzinfo=None), close_ts=T0.replace(tzinfo=None),
            created_at=T0.replace(tzinfo=None), updated_at=T0.replace(tzinfo=None), run_id="r")
        row.update(kw)
        return tuple(row.values())

    rows = [
        bar("ok"),
        bar("zero-volume", volume=Decimal(0), quote_volume=Decimal(0), vwap=None),
        bar("high-below-close", close=Decimal("12.5")),
        bar("low-above-open", low=Decimal("10.5"), vwap=Decimal("11")),
        bar("vwap-above-high", vwap=Decimal("12.1")),
        bar("vwap-null-with-volume", vwap=None),
        bar("vwap-with-zero-volume", volume=Decimal(0), quote_volume=Decimal(0)),
        bar("no-trades", trade_count=0),
        bar("negative-volume", volume=Decimal(-1), vwap=None),
        bar("long-window", window_end=(T0 + timedelta(minutes=10)).replace(tzinfo=None)),
        bar("unaligned", window_start=(T0 + timedelta(minutes=1)).replace(tzinfo=None),
            window_end=(T0 + timedelta(minutes=6)).replace(tzinfo=None)),
        bar("wrong-date", window_date=date(2024, 1, 3)),
    ]
    df = spark.createDataFrame(rows, spark_schema())
    flags = row_violations(Timeframe.parse("5m"))
    found = {name: {r.symbol for r in df.where(flag).select("symbol").collect()}
             for name, flag in flags.items()}
    assert found == {
        "price": {"high-below-close", "low-above-open"},
        "vwap": {"vwap-null-with-volume", "vwap-with-zero-volume", "vwap-above-high"},
        "volume": {"no-trades", "negative-volume"},
        "alignment": {"long-window", "unaligned", "wrong-date"},
    }
    assert df.where(F.col("symbol") == "ok").count() == 1


@pytest.mark.spark
def test_clean_cascade_passes_every_check(clean: Any) -> None:
    from rollup.operations.quality import run_checks

    results = run_checks(clean)
    assert [(r.timeframe, r.check) for r in results] == [
        (tf, check) for tf in ("1m", "5m", "30m", "1h", "1d") for check in NAMES]
    assert failing(results) == {}
    assert all(r.violations == 0 and r.samples == () for r in results)
    reconcile = [r for r in results if r.check == "reconcile"]
    assert all("0 bars differ" in r.detail for r in reconcile)


@pytest.mark.spark
def test_planted_violations_are_found_exactly(spark: Any, scratch: Any, warehouse: Any) -> None:
    """Write bad 1d rows directly; each check reports exactly the planted keys."""
    from rollup.operations.quality import run_checks

    tables = scratch
    table = tables.bars("1d")
    rows = [r.asDict() for r in spark.table(table).orderBy("exchange", "symbol", "window_start")
            .collect()]
    assert len(rows) == 8  # 4 symbols x 2 days

    def key(row: dict[str, Any]) -> tuple[str, str, datetime]:
        return (row["exchange"], row["symbol"], row["window_start"].replace(tzinfo=UTC))

    k = [key(r) for r in rows]
    tick = Decimal("0.00000001")
    rows[0]["open"] = rows[0]["high"] + tick                       # price (and reconcile)
    rows[1]["vwap"] = rows[1]["high"] + tick                       # vwap only
    rows[2]["trade_count"] = 0                                     # volume (and reconcile)
    rows[3]["window_end"] = rows[3]["window_end"] + timedelta(days=1)  # alignment only
    rows[4]["window_date"] = rows[4]["window_date"] + timedelta(days=1)  # alignment only
    duplicate = dict(rows[5])                                      # unique only
    rows[6]["trade_count"] = rows[6]["trade_count"] + 1            # reconcile only
    orphaned = rows.pop(7)                                         # reconcile (orphan children)
    shifted = dict(rows[3])                                        # alignment + reconcile
    shifted["window_start"] = shifted["window_start"] + timedelta(hours=1)
    shifted["window_end"] = shifted["window_start"] + timedelta(days=1)
    schema = spark.table(table).schema
    bad = [tuple(r[f.name] for f in schema.fields) for r in (*rows, duplicate, shifted)]
    # every 1d bar is in the January partition: replacing it replaces the whole table
    spark.createDataFrame(bad, schema).writeTo(table).overwritePartitions()
    assert spark.table(table).count() == 9

    results = run_checks(tables)
    k_shifted = key(shifted)
    assert failing(results) == {
        ("1d", "price"): {k[0]},
        ("1d", "vwap"): {k[1]},
        ("1d", "volume"): {k[2]},
        ("1d", "alignment"): {k[3], k[4], k_shifted},
        ("1d", "unique"): {k[5]},
        ("1d", "reconcile"): {k[0], k[2], k[6], key(orphaned), k_shifted},
    }
    by = {(r.timeframe, r.check): r for r in results}
    assert by["1d", "reconcile"].violations == 5
    assert "3 bars differ" in by["1d", "reconcile"].detail
    assert "1 windows with children but no bar" in by["1d", "reconcile"].detail
    assert "1 bars without children" in by["1d", "reconcile"].detail
    assert by["1d", "unique"].detail == "1 keys held by 2 rows"

    # --since keeps only the second day's keys
    second = run_checks(tables, ["1d"], since="2024-01-03")
    for r in second:
        assert all(s[2] >= datetime(2024, 1, 3, tzinfo=UTC) for s in r.samples)
    assert {s for r in second for s in r.samples} == {
        x for x in (*k[:7], key(orphaned), k_shifted) if x[2].date() == date(2024, 1, 3)}

    # the command line: warnings by default, exit 1 with --strict
    from rollup.cli import main

    args = ["--catalog", "rollup", "--namespace", tables.namespace, "--warehouse", str(warehouse),
            "check", "--timeframe", "1d"]
    assert main(args) == 0
    assert main([*args, "--strict"]) == 1


@pytest.mark.spark
def test_freshness_reports_lag_of_unrun_levels(scratch: Any) -> None:
    from rollup.adapters.synthetic import synthetic_trades
    from rollup.incremental.runner import run_cascade
    from rollup.operations.quality import run_checks

    tables = scratch
    later = synthetic_trades(20, symbols=1, day=date(2024, 1, 4), seed=7)
    append_trades(tables, later)
    newest = max(later.column("ts").to_pylist())
    run_cascade(tables, up_to="5m")  # 30m and above have not seen the new day yet

    results = {r.timeframe: r for r in run_checks(tables, checks=("freshness",))}
    assert all(r.passed for r in results.values())  # no limits configured: report only
    assert "pending input: no" in results["5m"].detail
    assert "pending input: yes" in results["30m"].detail
    limited = {r.timeframe: r for r in run_checks(
        tables, checks=("freshness",), max_lag=timedelta(hours=1))}
    assert {tf for tf, r in limited.items() if not r.passed} == {"30m", "1h", "1d"}
    aged = run_checks(tables, ["1m"], checks=("freshness",), max_age=timedelta(days=1),
                      now=newest + timedelta(hours=2))
    assert aged[0].passed
    stale = run_checks(tables, ["1m"], checks=("freshness",), max_age=timedelta(days=1),
                       now=newest + timedelta(days=3))
    assert not stale[0].passed


@pytest.mark.spark
def test_check_command_json(
    clean: Any, warehouse: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    from rollup.cli import main

    common = ["--catalog", "rollup", "--namespace", clean.namespace, "--warehouse", str(warehouse)]
    code = main([*common, "check", "--json", "--strict", "--timeframe", "30m"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0
    assert [r["check"] for r in out] == list(NAMES)
    assert all(r["passed"] and r["timeframe"] == "30m" for r in out)
    assert main([*common, "check", "--timeframe", "7x"]) == 2
    assert main([*common, "check", "--max-age", "soon"]) == 2
    assert "invalid max age 'soon'" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# Each check can fail: a table damaged for one check fails exactly that check


TICK = Decimal("0.00000001")
Rows = list[dict[str, Any]]


def _duplicate(rows: Rows) -> Rows:
    return [*rows, dict(rows[0])]


def _changed(**change: Any) -> Any:
    def damage(rows: Rows) -> Rows:
        first = dict(rows[0])
        first.update({k: f(first) for k, f in change.items()})
        return [first, *rows[1:]]
    return damage


# check -> (damage of the 1d bars, also done to their 1m children (so the bar still equals
# the combination of its children), extra run_checks arguments)
DAMAGE: dict[str, tuple[Any, bool, dict[str, Any]]] = {
    "price": (_changed(open=lambda r: r["high"] + TICK), True, {}),
    "vwap": (_changed(vwap=lambda r: r["high"] + TICK), False, {}),
    "volume": (_changed(trade_count=lambda r: 0), True, {}),
    "alignment": (_changed(window_date=lambda r: r["window_date"] + timedelta(days=1)), False,
                  {}),
    "unique": (_duplicate, False, {}),
    "reconcile": (_changed(trade_count=lambda r: r["trade_count"] + 1), False, {}),
    "freshness": (None, False, {"max_age": timedelta(days=1),
                                "now": datetime(2024, 2, 1, tzinfo=UTC)}),
}


@pytest.mark.spark
def test_each_check_fails_alone_on_a_table_damaged_for_it(spark: Any) -> None:
    """On a 1m -> 1d DAG whose 1d bars each have one child, every check in CHECKS has a
    damage that makes exactly that check fail on 1d (a new check needs one in DAMAGE)."""
    from rollup.incremental.runner import run_cascade
    from rollup.operations.quality import run_checks
    from rollup.timeframes import Dag
    from tests.helpers import append_trades as append_rows

    tables = new_tables(spark, Dag.from_spec({"1m": None, "1d": "1m"}))
    at = T0.replace(hour=10)
    append_rows(tables, [
        (ex, sym, i, at + timedelta(seconds=10 * i), Decimal(100 + i % 3), Decimal(i))
        for i in range(1, 4) for ex, sym in (("X", "AAA"), ("X", "BBB"))])
    run_cascade(tables)

    def stored(level: str) -> Rows:
        return [r.asDict() for r in spark.table(tables.bars(level)).orderBy(
            "exchange", "symbol", "window_start").collect()]

    def write(level: str, rows: Rows) -> None:
        schema = spark.table(tables.bars(level)).schema
        spark.createDataFrame([tuple(r[f.name] for f in schema.fields) for r in rows],
                              schema).writeTo(tables.bars(level)).overwritePartitions()

    original = {level: stored(level) for level in ("1m", "1d")}
    assert len(original["1d"]) == len(original["1m"]) == 2  # one child per 1d bar
    assert [r.check for r in run_checks(tables, ["1d"]) if not r.passed] == []
    for check in CHECKS:
        name = check_name(check)
        damage, to_children, options = DAMAGE[name]
        damaged = [] if damage is None else ["1d", "1m"] if to_children else ["1d"]
        for level in damaged:
            write(level, damage(original[level]))
        failed = [r for r in run_checks(tables, ["1d"], **options) if not r.passed]
        assert [r.check for r in failed] == [name], name
        assert failed[0].violations >= 1, name
        if name != "freshness":
            first = original["1d"][0]
            assert failed[0].samples == (
                (first["exchange"], first["symbol"], first["window_start"].replace(
                    tzinfo=UTC)),), name
        for level in damaged:
            write(level, original[level])
