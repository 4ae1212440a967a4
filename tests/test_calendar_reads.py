"""Calendar levels after a run: quality checks, `rollup bars`, `rollup.read_bars`, gap
filling and charts.

The expected windows are computed here from wall clocks with zoneinfo (a New York day from
local midnight to local midnight, a CME session from 17:00 Chicago the day before, labelled by
the day it ends), never with `rollup.timeframes`. The trades sit around New York's 23-hour
Sunday 2026-03-08 and the CME session that opens that evening (trade date Monday 2026-03-09).
"""

from __future__ import annotations

import io
import json
import random
import uuid
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd
import pytest

from rollup.readers.read import fill_gap_frame, window_date_bounds
from rollup.timeframes import Timeframe

NEW_YORK, CHICAGO = ZoneInfo("America/New_York"), ZoneInfo("America/Chicago")
NY_DAY, SESSION, NY_MONTH = "1d@America/New_York", "1d@America/Chicago+17:00", \
    "1M@America/New_York"
LEVELS = {"1m": None, "1h": "1m", NY_DAY: "1h", SESSION: "1h", NY_MONTH: NY_DAY}
CATALOG = "rollup"


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def new_york_day(day: date) -> tuple[datetime, datetime]:
    """[local midnight, next local midnight) of a New York date, as UTC instants."""
    def midnight(d: date) -> datetime:
        return datetime.combine(d, time(0), NEW_YORK).astimezone(UTC)
    return midnight(day), midnight(day + timedelta(days=1))


def cme_session(trade_date: date) -> tuple[datetime, datetime]:
    """[17:00 Chicago the day before, 17:00 Chicago on the trade date), as UTC instants."""
    def five_pm(d: date) -> datetime:
        return datetime.combine(d, time(17), CHICAGO).astimezone(UTC)
    return five_pm(trade_date - timedelta(days=1)), five_pm(trade_date)


EDGES = [
    utc(2026, 3, 8, 5, 0),    # New York's Sunday starts (00:00 EST)
    utc(2026, 3, 8, 22, 0),   # the CME session of Monday 2026-03-09 opens (17:00 CDT)
    utc(2026, 3, 9, 4, 0),    # New York's Monday starts (00:00 EDT)
]


def trades() -> list[tuple[Any, ...]]:
    """GC trades every few hours from 2026-02-26 to 2026-03-12, trades one microsecond
    around each edge; ES trades on three days only (so its bars have gaps)."""
    rng = random.Random(5)
    rows: list[tuple[Any, ...]] = []

    def add(symbol: str, ts: datetime) -> None:
        trade_id = len(rows) + 1
        rows.append(("CME", symbol, trade_id, ts, Decimal(rng.randrange(190_000, 210_000)) / 100,
                     Decimal(rng.randrange(1, 400)) / 100))

    at = utc(2026, 2, 26, 1)
    while at < utc(2026, 3, 12):
        add("GC", at + timedelta(seconds=rng.randrange(3_600)))
        at += timedelta(hours=rng.choice((2, 3, 5)))
    for edge in EDGES:
        for offset in (-1, 0, 1):
            add("GC", edge + timedelta(microseconds=offset))
    for day in (date(2026, 3, 2), date(2026, 3, 8), date(2026, 3, 11)):
        add("ES", datetime.combine(day, time(15, 30), NEW_YORK).astimezone(UTC))
    return rows


@pytest.fixture(scope="module")
def calendar_env(spark: Any, warehouse: Path, tmp_path_factory: pytest.TempPathFactory
                 ) -> dict[str, Any]:
    """A namespace with the calendar DAG run once, and a rollup.toml naming its levels."""
    from rollup.incremental.runner import run_cascade
    from rollup.storage.tables import Tables
    from rollup.timeframes import Dag
    from tests.helpers import append_trades

    namespace = f"cal_{uuid.uuid4().hex[:8]}"
    spark.sql(f"CREATE NAMESPACE IF NOT EXISTS {CATALOG}.{namespace}")
    tables = Tables(spark, CATALOG, namespace, Dag.from_spec(LEVELS))
    tables.create_all()
    rows = trades()
    append_trades(tables, rows)
    results = run_cascade(tables)
    assert all(r.status == "written" for r in results), results
    config = tmp_path_factory.mktemp("calendar_config") / "rollup.toml"
    config.write_text("[levels]\n" + "".join(
        f'"{child}" = "{parent or "trades"}"\n' for child, parent in LEVELS.items()))
    return {"tables": tables, "namespace": namespace, "warehouse": str(warehouse),
            "config": str(config), "trades": rows}


def cli(env: dict[str, Any], *args: str) -> list[str]:
    return ["--catalog", CATALOG, "--namespace", env["namespace"], "--warehouse",
            env["warehouse"], "--config", env["config"], *args]


def stored(tables: Any, level: str) -> list[dict[str, Any]]:
    return [r.asDict() for r in tables.spark.table(tables.bars(level)).orderBy(
        "exchange", "symbol", "window_start").collect()]


def overwrite(tables: Any, level: str, rows: list[dict[str, Any]]) -> None:
    """Replace every partition the rows fall in (all of them: the rows are the whole table)."""
    spark = tables.spark
    schema = spark.table(tables.bars(level)).schema
    spark.createDataFrame([tuple(r[f.name] for f in schema.fields) for r in rows],
                          schema).writeTo(tables.bars(level)).overwritePartitions()


def key(row: dict[str, Any]) -> tuple[str, str, datetime]:
    return row["exchange"], row["symbol"], row["window_start"].replace(tzinfo=UTC)


def as_utc(naive: datetime) -> datetime:
    """A timestamp collected from Spark (naive, in the session's UTC time zone)."""
    return naive.replace(tzinfo=UTC)


# ---------------------------------------------------------------------------------- quality


@pytest.mark.spark
def test_every_check_passes_after_a_calendar_run(calendar_env: dict[str, Any]) -> None:
    from rollup.operations.quality import NAMES, run_checks

    results = run_checks(calendar_env["tables"])
    assert [(r.timeframe, r.check) for r in results] == [
        (tf, check) for tf in ("1m", "1h", NY_DAY, SESSION, NY_MONTH) for check in NAMES]
    assert [(r.timeframe, r.check, r.detail) for r in results if not r.passed] == []
    details = {(r.timeframe, r.check): r.detail for r in results}
    assert "window_end the next window's start" in details[NY_DAY, "alignment"]
    assert "0 bars differ" in details[SESSION, "reconcile"]
    # `since` inside New York's Sunday: reconciliation starts at the next local midnight
    late = run_checks(calendar_env["tables"], [NY_DAY], since="2026-03-08T12:00")
    assert all(r.passed for r in late), late
    reconcile = next(r for r in late if r.check == "reconcile")
    assert "windows from 2026-03-09T04:00:00Z" in reconcile.detail
    from rollup.cli import main

    assert main(cli(calendar_env, "check", "--strict", "--timeframe", SESSION)) == 0


def _damaged(rows: list[dict[str, Any]], when: date, change: dict[str, Any]) -> tuple[
        list[dict[str, Any]], dict[str, tuple[str, str, datetime]]]:
    """`rows` with the GC bar of window_date `when` changed by `change` (functions of it),
    and the bar's key before and after the change."""
    out = [dict(r) for r in rows]
    row = next(r for r in out if r["symbol"] == "GC" and r["window_date"] == when)
    before = key(row)
    row.update({name: f(row) for name, f in change.items()})
    return out, {"before": before, "after": key(row)}


SUNDAY, MONDAY = date(2026, 3, 8), date(2026, 3, 9)
DAMAGE: dict[str, tuple[str, date, dict[str, Any], dict[str, set[str]]]] = {
    # the DST Sunday given a naive 24-hour window
    "24h Sunday": (NY_DAY, SUNDAY, {"window_end": lambda r: r["window_start"]
                                    + timedelta(hours=24)}, {"alignment": {"after"}}),
    # a session dated by the UTC date of its start instead of its trade date
    "UTC-dated session": (SESSION, MONDAY, {"window_date": lambda r: SUNDAY},
                          {"alignment": {"after"}}),
    # a New York day starting at 00:00 UTC, not a local midnight: misaligned, its children
    # have no bar (before) and it has no children (after)
    "UTC midnight": (NY_DAY, date(2026, 3, 3), {"window_start": lambda r: r["window_start"]
                                                - timedelta(hours=5)},
                     {"alignment": {"after"}, "reconcile": {"before", "after"}}),
    # wrong values: the bar no longer equals its 1h children
    "wrong trade count": (SESSION, MONDAY, {"trade_count": lambda r: r["trade_count"] + 1},
                          {"reconcile": {"after"}}),
    "wrong volume": (NY_DAY, SUNDAY, {"volume": lambda r: r["volume"] + 1},
                     {"reconcile": {"after"}}),
}


@pytest.mark.spark
@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_damaged_calendar_bar_fails_its_check(calendar_env: dict[str, Any],
                                                damage: str) -> None:
    from rollup.operations.quality import run_checks

    tables = calendar_env["tables"]
    level, when, change, expected = DAMAGE[damage]
    original = stored(tables, level)
    rows, keys = _damaged(original, when, change)
    try:
        overwrite(tables, level, rows)
        failed = {r.check: r for r in run_checks(tables, [level]) if not r.passed}
        assert set(failed) == set(expected), (damage, failed)
        for check, which in expected.items():
            assert set(failed[check].samples) == {keys[k] for k in which}, failed[check]
            assert failed[check].violations == len(which), failed[check]
        if damage == "24h Sunday":
            from rollup.cli import main

            assert main(cli(calendar_env, "check", "--strict", "--timeframe", level)) == 1
    finally:
        overwrite(tables, level, original)
    assert all(r.passed for r in run_checks(tables, [level], checks=("alignment", "reconcile")))


# ------------------------------------------------------------------------------------ reads


@pytest.mark.spark
def test_rollup_bars_prints_new_york_days_from_local_midnight(
        calendar_env: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    """`rollup bars 1d@America/New_York --format csv`: every window_start is the UTC instant
    of the local midnight of its window_date, window_end the next one, values exact."""
    from rollup.cli import main
    from tests.oracle import Trade, oracle_bars

    assert main(cli(calendar_env, "bars", NY_DAY, "--format", "csv")) == 0
    frame = pd.read_csv(io.StringIO(capsys.readouterr().out), dtype=str)
    python = [Trade(*r) for r in calendar_env["trades"]]
    expected = oracle_bars(python, Timeframe.parse(NY_DAY))
    assert len(frame) == len(expected) > 14
    for row in frame.itertuples():
        day = date.fromisoformat(row.window_date)
        start, end = new_york_day(day)
        assert row.window_start == start.strftime("%Y-%m-%dT%H:%M:%S.000000Z"), row
        assert row.window_end == end.strftime("%Y-%m-%dT%H:%M:%S.000000Z"), row
        bar = expected[(row.exchange, row.symbol, start)]
        for column in ("open", "high", "low", "close", "volume", "trade_count"):
            assert Decimal(getattr(row, column)) == bar[column], (row, column)
    sunday = frame[(frame.window_date == "2026-03-08") & (frame.symbol == "GC")].iloc[0]
    assert (sunday.window_start, sunday.window_end) == (
        "2026-03-08T05:00:00.000000Z", "2026-03-09T04:00:00.000000Z")  # 23 hours


@pytest.mark.spark
@pytest.mark.parametrize("fmt", ["table", "csv", "json", "parquet"])
def test_rollup_bars_formats_and_read_bars_agree_on_sessions(
        calendar_env: dict[str, Any], tmp_path: Path, fmt: str) -> None:
    """A range ending before the UTC date of the session's label still finds the session:
    the one opening Sunday 2026-03-08 22:00Z is dated Monday (its trade date)."""
    from rollup.cli import main
    from rollup.readers.export import write_frame
    from rollup.readers.read import read_bars

    span = {"start": "2026-03-08T20:00Z", "end": "2026-03-08T23:00Z"}
    out = tmp_path / f"cli.{fmt}"
    assert main(cli(calendar_env, "bars", SESSION, "--symbol", "GC", "--output", str(out),
                    "--format", fmt, "--start", span["start"], "--end", span["end"])) == 0
    bars = read_bars(SESSION, symbol="GC", warehouse=calendar_env["warehouse"],
                     namespace=calendar_env["namespace"], config=calendar_env["config"], **span)
    assert len(bars) == 1
    opened, closed = cme_session(MONDAY)
    assert (bars.window_start[0], bars.window_end[0], bars.window_date[0]) == (
        opened, closed, MONDAY)
    assert opened == utc(2026, 3, 8, 22)
    mine = tmp_path / f"read.{fmt}"
    write_frame(bars, fmt, str(mine))
    if fmt == "parquet":
        pd.testing.assert_frame_equal(pd.read_parquet(out), pd.read_parquet(mine),
                                      check_dtype=False)  # ns (Spark) vs us (pyiceberg)
    else:
        assert out.read_text() == mine.read_text()
    if fmt == "json":
        row = json.loads(out.read_text())
        assert row["window_start"] == "2026-03-08T22:00:00Z" and row["window_date"] is not None


@pytest.mark.spark
def test_read_bars_prunes_by_labels_and_keeps_every_window(calendar_env: dict[str, Any]
                                                            ) -> None:
    """Ranges of New York days and sessions read exactly the windows starting inside them."""
    from rollup.readers.read import read_bars

    where = {"warehouse": calendar_env["warehouse"], "namespace": calendar_env["namespace"],
             "config": calendar_env["config"], "symbol": "GC"}
    every = {tf: read_bars(tf, **where) for tf in (NY_DAY, SESSION, NY_MONTH)}
    for tf, (lo, hi) in [(NY_DAY, (utc(2026, 3, 8, 5), utc(2026, 3, 9, 4))),
                         (SESSION, (utc(2026, 3, 6, 23), utc(2026, 3, 9, 23))),
                         (NY_MONTH, (utc(2026, 2, 1), utc(2026, 3, 2)))]:
        got = read_bars(tf, start=lo, end=hi, **where)
        want = every[tf][(every[tf].window_start >= lo) & (every[tf].window_start < hi)]
        assert len(got) == len(want) > 0, tf
        assert list(got.window_start) == list(want.window_start), tf
    months = every[NY_MONTH]
    assert [(m.window_start, m.window_date) for m in months.itertuples()] == [
        (utc(2026, 2, 1, 5), date(2026, 2, 1)), (utc(2026, 3, 1, 5), date(2026, 3, 1))]


@pytest.mark.spark
def test_gap_filling_follows_the_calendar(calendar_env: dict[str, Any]) -> None:
    """ES traded on three New York days: the days between are filled, each a local day."""
    from rollup.readers.read import read_bars

    filled = read_bars(NY_DAY, symbol="ES", start="2026-03-02T05:00Z", end="2026-03-12T04:00Z",
                       fill_gaps=True, warehouse=calendar_env["warehouse"],
                       namespace=calendar_env["namespace"], config=calendar_env["config"])
    days = [date(2026, 3, d) for d in range(2, 12)]
    assert list(filled.window_date) == days
    assert [d.day for d in filled[~filled.filled].window_date] == [2, 8, 11]
    for row in filled.itertuples():
        assert (row.window_start, row.window_end) == new_york_day(row.window_date), row
    sunday = filled[filled.window_date == SUNDAY].iloc[0]
    assert sunday.window_end - sunday.window_start == timedelta(hours=23)
    gap = filled[filled.window_date == date(2026, 3, 9)].iloc[0]
    assert gap.filled and gap.open == gap.close == sunday.close and gap.volume == 0


def test_fill_gap_frame_of_months_in_new_york() -> None:
    def bar(month: int, close: str) -> dict[str, Any]:
        start = datetime(2026, month, 1, tzinfo=NEW_YORK).astimezone(UTC)
        end = datetime(2026, month + 1, 1, tzinfo=NEW_YORK).astimezone(UTC)
        price = Decimal(close)
        return {"exchange": "X", "symbol": "A", "window_start": pd.Timestamp(start),
                "window_end": pd.Timestamp(end), "window_date": date(2026, month, 1),
                "open": price, "high": price, "low": price, "close": price,
                "volume": Decimal(1), "quote_volume": price, "trade_count": 1}

    bars = pd.DataFrame([bar(1, "5"), bar(4, "6")])
    out = fill_gap_frame(bars, Timeframe.parse(NY_MONTH), None, None)
    local = [datetime(2026, m, 1, tzinfo=NEW_YORK).astimezone(UTC) for m in (1, 2, 3, 4)]
    assert list(out.window_start) == local  # 05:00Z until March, 04:00Z from April (EDT)
    assert list(out.window_date) == [date(2026, m, 1) for m in (1, 2, 3, 4)]
    assert list(out.filled) == [False, True, True, False]
    assert list(out.close) == [Decimal(v) for v in "5556"]
    # a range inside January and April: filled from February, up to April
    ranged = fill_gap_frame(bars, Timeframe.parse(NY_MONTH), utc(2026, 1, 2), utc(2026, 4, 2))
    assert list(ranged.window_start) == local
    assert list(ranged.window_end[ranged.filled]) == local[2:4]


def test_window_date_bounds_are_the_labels() -> None:
    session = Timeframe.parse(SESSION)
    assert window_date_bounds(session, utc(2026, 3, 8, 20), utc(2026, 3, 8, 23)) == (
        SUNDAY, MONDAY)  # the session opening at 22:00Z is Monday's
    tokyo = Timeframe.parse("1d@Asia/Tokyo")  # 2026-03-09 starts at 2026-03-08T15:00Z
    assert window_date_bounds(tokyo, utc(2026, 3, 8, 15), utc(2026, 3, 8, 15, 1)) == (
        MONDAY, MONDAY)
    assert window_date_bounds(Timeframe.parse("1h"), utc(2026, 3, 8, 20),
                              utc(2026, 3, 9)) == (SUNDAY, MONDAY)
    assert window_date_bounds(session, None, None) == (None, None)


# ----------------------------------------------------------------------------------- charts


@pytest.mark.spark
def test_chart_of_sessions_is_dated_by_trade_date(calendar_env: dict[str, Any],
                                                  tmp_path: Path) -> None:
    pytest.importorskip("mplfinance")
    import matplotlib

    matplotlib.use("Agg")
    from rollup.cli import main
    from rollup.readers.charts import ohlcv_frame, plot
    from rollup.readers.read import read_bars

    where = {"warehouse": calendar_env["warehouse"], "namespace": calendar_env["namespace"],
             "config": calendar_env["config"]}
    bars = read_bars(SESSION, "CME", "GC", **where)
    frame = ohlcv_frame(bars, by_date=True)
    assert list(frame.index.date) == list(bars.window_date)
    assert MONDAY in set(frame.index.date)
    fig = plot(SESSION, "CME", "GC", **where)
    assert fig.axes[0].get_title() == f"CME/GC {SESSION} (by window_date), {len(bars)} bars"
    out = tmp_path / "sessions.png"
    assert main(cli(calendar_env, "chart", SESSION, "--exchange", "CME", "--symbol", "GC",
                    "--output", str(out))) == 0
    assert out.read_bytes()[:4] == b"\x89PNG"
