"""Spark finds calendar windows exactly where zone history is unusual: hand-derived cases."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from rollup.timeframes import Level
from rollup.transforms.bars import Rollup
from tests.helpers import trades_frame

pytestmark = pytest.mark.spark


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def windows(spark, level: str, instants: list[datetime]) -> list[tuple[datetime, datetime, date]]:  # type: ignore[no-untyped-def]
    from pyspark.sql import functions as F

    rows = [("X", "S", i, t, Decimal(1), Decimal(1)) for i, t in enumerate(instants)]
    bars = Rollup(Level(level, None)).plan(trades_frame(spark, rows))
    got = bars.select(F.unix_micros("window_start").alias("s"),
                      F.unix_micros("window_end").alias("e"), "window_date").collect()
    return sorted((datetime.fromtimestamp(r.s / 1e6, UTC), datetime.fromtimestamp(r.e / 1e6, UTC),
                   r.window_date) for r in got)


def test_samoa_skipped_a_day_and_its_neighbours_meet(spark) -> None:  # type: ignore[no-untyped-def]
    """Apia jumped from 2011-12-29 23:59:59 (UTC-10) to 2011-12-31 00:00 (UTC+14) at
    2011-12-30T10:00Z: December 30 has no window, December 29 ends where December 31 starts."""
    assert windows(spark, "1d@Pacific/Apia", [utc(2011, 12, 30, 9), utc(2011, 12, 30, 11)]) == [
        (utc(2011, 12, 29, 10), utc(2011, 12, 30, 10), date(2011, 12, 29)),
        (utc(2011, 12, 30, 10), utc(2011, 12, 31, 10), date(2011, 12, 31)),
    ]


def test_a_day_east_of_utc_starts_the_day_before_also_in_1970(spark) -> None:  # type: ignore[no-untyped-def]
    """Tokyo (UTC+9): January 1, 1970 starts at 1969-12-31T15:00Z, before the epoch."""
    assert windows(spark, "1d@Asia/Tokyo", [utc(1969, 12, 31, 16), utc(2026, 3, 8, 14, 59)]) == [
        (utc(1969, 12, 31, 15), utc(1970, 1, 1, 15), date(1970, 1, 1)),
        (utc(2026, 3, 7, 15), utc(2026, 3, 8, 15), date(2026, 3, 8)),
    ]


def test_kathmandu_quarter_hour_offset_and_a_three_month_window(spark) -> None:  # type: ignore[no-untyped-def]
    assert windows(spark, "1d@Asia/Kathmandu", [utc(2026, 3, 8, 18, 15)]) == [
        (utc(2026, 3, 8, 18, 15), utc(2026, 3, 9, 18, 15), date(2026, 3, 9))]
    assert windows(spark, "3M", [utc(2026, 5, 17)]) == [
        (utc(2026, 4, 1), utc(2026, 7, 1), date(2026, 4, 1))]


def test_an_instant_outside_the_calendar_fails_with_its_value(spark) -> None:  # type: ignore[no-untyped-def]
    """Before the grid (1970 in New York starts at 05:00Z) nothing is dropped: the plan fails."""
    with pytest.raises(Exception, match=r"1969-06-01 12:00:00 is outside the calendar of "
                                        r"1d@America/New_York \(1970-01-01 to 2100-01-01\)"):
        windows(spark, "1d@America/New_York", [utc(1969, 6, 1, 12)])
