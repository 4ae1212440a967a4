"""New York days and months and CME sessions through the cascade (see
tests/calendar_scenario.py), against the zoneinfo oracle of tests/oracle.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from rollup.storage.tables import Tables
from rollup.timeframes import Timeframe
from tests.calendar_scenario import run_scenario, utc
from tests.oracle import window_of

pytestmark = pytest.mark.spark

LEVELS = {
    "1m": None, "1h": "1m",
    "1d@America/New_York": "1h", "1M@America/New_York": "1d@America/New_York",
    "1d@America/Chicago+17:00": "1h",
}


def test_the_oracle_windows_are_the_documented_ones() -> None:
    """The oracle itself, on the worked examples of docs/timeframes.md."""
    ny = Timeframe.parse("1d@America/New_York")
    assert window_of(utc(2026, 3, 8, 12), ny) == (utc(2026, 3, 8, 5), utc(2026, 3, 9, 4),
                                                  datetime(2026, 3, 8).date())
    start, end, _ = window_of(utc(2026, 11, 1, 12), ny)
    assert end - start == timedelta(hours=25)
    cme = Timeframe.parse("1d@America/Chicago+17:00")
    assert window_of(utc(2026, 3, 8, 22), cme) == (utc(2026, 3, 8, 22), utc(2026, 3, 9, 22),
                                                   datetime(2026, 3, 9).date())
    assert window_of(utc(2026, 3, 8, 21, 59), cme)[2] == datetime(2026, 3, 8).date()
    month = Timeframe.parse("1M@America/New_York")
    assert window_of(utc(2026, 3, 1, 4, 59), month)[2] == datetime(2026, 2, 1).date()


def test_new_york_days_months_and_cme_sessions_equal_the_oracle(spark, namespace) -> None:  # type: ignore[no-untyped-def]
    tables = run_scenario(spark, namespace, LEVELS, lakehouse=True)
    check_new_york_days(tables)


def check_new_york_days(tables: Tables) -> None:
    """`window_start` is the UTC instant of local midnight; the DST Sunday lasts 23 hours,
    November 1 lasts 25."""
    from pyspark.sql import functions as F

    rows = {r.window_date.isoformat(): r for r in tables.read_bars("1d@America/New_York")
            .select("window_date", F.unix_micros("window_start").alias("s"),
                    F.unix_micros("window_end").alias("e")).collect()}
    sunday = rows["2026-03-08"]
    assert datetime.fromtimestamp(sunday.s / 1e6, UTC) == utc(2026, 3, 8, 5)
    assert (sunday.e - sunday.s) == 23 * 3_600_000_000
    assert (rows["2026-11-01"].e - rows["2026-11-01"].s) == 25 * 3_600_000_000
