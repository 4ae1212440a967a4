"""Calendar timeframes: zoned days, trading sessions, calendar months (pure: no Spark).

Expected windows are computed independently here, with zoneinfo date arithmetic: a local
midnight is `datetime(y, m, d, tzinfo=zone)` converted to UTC (exact for the zones used,
whose clocks never skip or repeat midnight), a session start is 17:00 local on the day
before the trade date.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rollup.errors import RollupError, TimeframeError
from rollup.timeframes import Dag, Level, Timeframe

NEW_YORK, LONDON, CHICAGO = (ZoneInfo("America/New_York"), ZoneInfo("Europe/London"),
                             ZoneInfo("America/Chicago"))
HOUR = timedelta(hours=1)
TICK = timedelta(microseconds=1)


def local_midnight(day: date, zone: ZoneInfo) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=zone).astimezone(UTC)


def session_open(trade_date: date, zone: ZoneInfo, hour: int = 17) -> datetime:
    before = trade_date - timedelta(days=1)
    return datetime(before.year, before.month, before.day, hour, tzinfo=zone).astimezone(UTC)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


# ---- spelling ---------------------------------------------------------------------------------

CANONICAL = ["1d@America/New_York", "1w@Europe/London", "1d@America/Chicago+17:00", "1M",
             "1M@America/New_York", "3M", "12M@Asia/Tokyo", "1w:sun", "1w:sun@America/New_York",
             "2d@Asia/Kolkata", "1d@UTC+17:00", "1w@America/Chicago+17:00",
             "1M@America/Chicago+17:00", "1d@Etc/GMT+5+09:30", "1d@America/Port-au-Prince"]


@pytest.mark.parametrize("text", CANONICAL)
def test_canonical_spellings_round_trip(text: str) -> None:
    tf = Timeframe.parse(text)
    assert str(tf) == tf.name == text
    assert Timeframe.parse(tf.name) == tf and hash(Timeframe.parse(text)) == hash(tf)
    assert Timeframe.parse(f" {text} ") == tf


@pytest.mark.parametrize(("text", "canonical"), [
    ("1d@UTC", "1d"), ("1w:mon", "1w"), ("1w:SUN", "1w:sun"), ("1M@UTC", "1M"),
    ("1w:mon@Europe/London", "1w@Europe/London")])
def test_other_spellings_normalise(text: str, canonical: str) -> None:
    assert Timeframe.parse(text).name == canonical
    assert Timeframe.parse(text) == Timeframe.parse(canonical)


@pytest.mark.parametrize("text", ["1m", "5m", "15m", "30m", "1h", "4h", "1d", "1w"])
def test_fixed_timeframes_are_what_they_were(text: str) -> None:
    tf = Timeframe.parse(text)
    count, unit = int(text[:-1]), text[-1]
    assert tf == Timeframe(count, unit) and repr(tf) == f"Timeframe(count={count}, unit={unit!r})"
    assert not tf.is_calendar and tf.calendar_grid is None
    assert tf.identifier == text and Level(tf).table == f"bars_{text}"
    assert tf.nominal_seconds == tf.seconds
    t = utc(2026, 3, 8, 13, 47, 59, 999_999)
    window = tf.window(t)
    assert (window.start, window.end, window.date) == (tf.floor(t), tf.floor(t) + tf.duration,
                                                       tf.floor(t).date())
    assert tf.window_start(t) == window.start and tf.window_end(t) == window.end


@pytest.mark.parametrize(("text", "expected"), [
    ("1d@America/New_Yrok", "unknown time zone 'America/New_Yrok'.*did you mean "
                            "'America/New_York'"),
    ("1d@america/new_york", "unknown time zone 'america/new_york'.*did you mean "
                            "'America/New_York'"),
    ("1d@../../etc/passwd", "unknown time zone '../../etc/passwd'"),
    ("1d@", "missing time zone after '@'"),
    ("1d@America/Chicago+7:00", "invalid session start '\\+7:00'.*\\+HH:MM"),
    ("1d@America/Chicago+24:00", "invalid session start '\\+24:00'"),
    ("1d@America/Chicago+17:60", "invalid session start '\\+17:60'"),
    ("1d@America/Chicago+00:00", "invalid session start '\\+00:00'"),
    ("1d@America/Chicago-07:00", "invalid session start in"),
    ("5m@America/New_York", "applies to days \\(d\\), weeks \\(w\\) and months \\(M\\) only"),
    ("1h@Asia/Kolkata", "minutes and hours are aligned to UTC"),
    ("1d:sun", "first weekday applies to weeks \\(w\\) only"),
    ("1w:sunday", "invalid first weekday 'sunday'.*mon, tue"),
    ("5M", "divide a year: 1M, 2M, 3M, 4M, 6M or 12M"),
    ("1mo", "calendar months are written '1M'"),
    ("1y", "years are written '12M'"),
    ("2q", "quarters are written '6M'"),
    ("1D", "lower-case"),
])
def test_parse_errors_name_the_text_and_what_was_expected(text: str, expected: str) -> None:
    with pytest.raises(TimeframeError, match=expected) as info:
        Timeframe.parse(text)
    message = str(info.value)
    assert repr(text) in message and "\n" not in message
    assert isinstance(info.value, RollupError) and isinstance(info.value, ValueError)


def test_direct_construction_is_checked_too() -> None:
    with pytest.raises(TimeframeError, match="unknown time zone 'Mars/Olympus'"):
        Timeframe(1, "d", "Mars/Olympus")
    with pytest.raises(TimeframeError, match="aligned to UTC"):
        Timeframe(1, "h", "America/New_York")
    assert Timeframe(1, "d", "UTC") == Timeframe(1, "d")


def test_calendar_timeframes_have_no_fixed_length() -> None:
    day = Timeframe.parse("1d@America/New_York")
    assert day.is_calendar and Timeframe.parse("1M").is_calendar
    assert not Timeframe.parse("1w:sun").is_calendar  # a fixed week, shifted to Sunday
    for attribute in ("seconds", "micros", "duration", "origin_seconds"):
        with pytest.raises(TimeframeError, match="1d@America/New_York has no fixed"):
            getattr(day, attribute)
    assert day.floor(utc(2026, 3, 8, 12)) == utc(2026, 3, 8, 5)


@pytest.mark.parametrize(("text", "identifier"), [
    ("1d@America/New_York", "1d_america_new_york"),
    ("1d@America/Chicago+17:00", "1d_america_chicago_1700"),
    ("1M", "1mo"), ("3M", "3mo"), ("1M@Europe/London", "1mo_europe_london"),
    ("1w:sun", "1w_sun"), ("1d@Etc/GMT+5", "1d_etc_gmt_plus_5"),
    ("1d@Etc/GMT-5", "1d_etc_gmt_minus_5"), ("1d@America/Port-au-Prince",
                                              "1d_america_port_minus_au_minus_prince"),
])
def test_default_table_names_are_identifiers(text: str, identifier: str) -> None:
    tf = Timeframe.parse(text)
    assert tf.identifier == identifier
    assert Level(tf).table == f"bars_{identifier}"
    assert re.fullmatch(r"[a-z_][a-z0-9_]*", Level(tf).table)


# ---- windows ----------------------------------------------------------------------------------

def test_new_york_day_on_the_march_dst_sunday() -> None:
    """The worked example of docs/timeframes.md."""
    day = Timeframe.parse("1d@America/New_York")
    window = day.window(utc(2026, 3, 8, 15, 30))
    assert window.start == utc(2026, 3, 8, 5) and window.end == utc(2026, 3, 9, 4)
    assert window.duration == 23 * HOUR and window.date == date(2026, 3, 8)
    assert window.label == "2026-03-08"
    assert day.window_date(utc(2026, 3, 9, 3, 59, 59, 999_999)) == date(2026, 3, 8)
    assert day.window_date(utc(2026, 3, 9, 4)) == date(2026, 3, 9)


@pytest.mark.parametrize(("zone", "first", "hours"), [
    (NEW_YORK, date(2026, 3, 6), {date(2026, 3, 8): 23}),
    (NEW_YORK, date(2026, 10, 29), {date(2026, 11, 1): 25}),
    (LONDON, date(2026, 3, 27), {date(2026, 3, 29): 23}),
    (LONDON, date(2026, 10, 23), {date(2026, 10, 25): 25}),
])
def test_zoned_days_across_dst(zone: ZoneInfo, first: date, hours: dict[date, int]) -> None:
    tf = Timeframe.parse(f"1d@{zone.key}")
    for day in (first + timedelta(days=n) for n in range(5)):
        start, end = local_midnight(day, zone), local_midnight(day + timedelta(days=1), zone)
        assert end - start == hours.get(day, 24) * HOUR
        for t in (start, start + (end - start) / 2, end - TICK):
            window = tf.window(t)
            assert (window.start, window.end, window.date) == (start, end, day)
    assert [w.date for w in tf.windows(local_midnight(first, zone), local_midnight(
        first + timedelta(days=5), zone))] == [first + timedelta(days=n) for n in range(5)]


def test_london_week_across_the_spring_change() -> None:
    week = Timeframe.parse("1w@Europe/London")
    window = week.window(utc(2026, 3, 29, 12))  # a Sunday: the week began Monday 2026-03-23
    assert window.start == local_midnight(date(2026, 3, 23), LONDON) == utc(2026, 3, 23)
    assert window.end == local_midnight(date(2026, 3, 30), LONDON) == utc(2026, 3, 29, 23)
    assert window.duration == 7 * 24 * HOUR - HOUR and window.date == date(2026, 3, 23)


def test_cme_sessions_over_a_week_with_a_sunday_open() -> None:
    session = Timeframe.parse("1d@America/Chicago+17:00")
    # DST starts in Chicago on Sunday 2026-03-08 at 02:00: the Sunday session is 23 h long.
    trade_dates = [date(2026, 3, 8) + timedelta(days=n) for n in range(7)]
    for trade_date in trade_dates:
        start, end = session_open(trade_date, CHICAGO), session_open(
            trade_date + timedelta(days=1), CHICAGO)
        for t in (start, start + HOUR, end - TICK):
            window = session.window(t)
            assert (window.start, window.end, window.date) == (start, end, trade_date)
    sunday_open = session.window(utc(2026, 3, 8, 22, 30))  # Sunday 17:30 CDT
    assert sunday_open.start == utc(2026, 3, 8, 22) and sunday_open.date == date(2026, 3, 9)
    assert session.window(utc(2026, 3, 8, 21, 59)).duration == 23 * HOUR  # trade date Sunday
    fall = session.window(utc(2026, 11, 1, 12))  # trade date Sunday 2026-11-01, 25 hours
    assert (fall.start, fall.end, fall.duration) == (utc(2026, 10, 31, 22), utc(2026, 11, 1, 23),
                                                     25 * HOUR)
    week = Timeframe.parse("1w@America/Chicago+17:00").window(utc(2026, 3, 11, 15))
    assert (week.start, week.end, week.date) == (
        session_open(date(2026, 3, 9), CHICAGO), session_open(date(2026, 3, 16), CHICAGO),
        date(2026, 3, 9))
    assert week.start == utc(2026, 3, 8, 22)  # Sunday 17:00 CDT


@pytest.mark.parametrize(("t", "start", "end", "label"), [
    (utc(2026, 1, 31, 23, 59, 59, 999_999), utc(2026, 1, 1), utc(2026, 2, 1), "2026-01"),
    (utc(2026, 2, 1), utc(2026, 2, 1), utc(2026, 3, 1), "2026-02"),
    (utc(2026, 2, 28, 12), utc(2026, 2, 1), utc(2026, 3, 1), "2026-02"),
    (utc(2028, 2, 29, 23), utc(2028, 2, 1), utc(2028, 3, 1), "2028-02"),
    (utc(2026, 12, 31, 23), utc(2026, 12, 1), utc(2027, 1, 1), "2026-12"),
])
def test_utc_months(t: datetime, start: datetime, end: datetime, label: str) -> None:
    window = Timeframe.parse("1M").window(t)
    assert (window.start, window.end, window.date, window.label) == (start, end, start.date(),
                                                                     label)


def test_zoned_months_quarters_and_years() -> None:
    month = Timeframe.parse("1M@America/New_York")
    march = month.window(utc(2026, 3, 15))
    assert (march.start, march.end) == (local_midnight(date(2026, 3, 1), NEW_YORK),
                                        local_midnight(date(2026, 4, 1), NEW_YORK))
    assert (march.start, march.end) == (utc(2026, 3, 1, 5), utc(2026, 4, 1, 4))
    late_january = month.window(utc(2026, 2, 1, 3))  # 22:00 on Jan 31 in New York
    assert late_january.date == date(2026, 1, 1) and late_january.end == utc(2026, 2, 1, 5)
    leap = month.window(utc(2028, 2, 29, 12))
    assert leap.end - leap.start == timedelta(days=29)
    assert Timeframe.parse("3M").window(utc(2026, 5, 5)).label == "2026-Q2"
    assert Timeframe.parse("3M").window_start(utc(2026, 5, 5)) == utc(2026, 4, 1)
    year = Timeframe.parse("12M@America/New_York").window(utc(2026, 7, 1))
    assert (year.label, year.start, year.end) == ("2026", utc(2026, 1, 1, 5), utc(2027, 1, 1, 5))
    assert [w.label for w in Timeframe.parse("1M").windows(utc(2026, 1, 15), utc(2026, 4, 1))] \
        == ["2026-01", "2026-02", "2026-03"]


def test_weeks_starting_on_sunday() -> None:
    assert Timeframe.parse("1w:sun").window_start(utc(2026, 3, 11)) == utc(2026, 3, 8)
    ny = Timeframe.parse("1w:sun@America/New_York").window(utc(2026, 3, 11))
    assert (ny.start, ny.end, ny.date) == (local_midnight(date(2026, 3, 8), NEW_YORK),
                                           local_midnight(date(2026, 3, 15), NEW_YORK),
                                           date(2026, 3, 8))
    assert Timeframe.parse("1d").check_can_build(Timeframe.parse("1w:sun")) is None
    with pytest.raises(TimeframeError, match="1w:sun cannot be built from 1w"):
        Timeframe.parse("1w").check_can_build(Timeframe.parse("1w:sun"))


def test_skipped_and_missing_midnights() -> None:
    # Samoa skipped 2011-12-30: that day is an empty window, never returned.
    apia = Timeframe.parse("1d@Pacific/Apia")
    days = [w.date for w in apia.windows(utc(2011, 12, 29), utc(2012, 1, 2))]
    assert date(2011, 12, 30) not in days and date(2011, 12, 31) in days
    # Sao Paulo sprang forward at midnight on 2018-11-04: the day starts at 01:00 local.
    day = Timeframe.parse("1d@America/Sao_Paulo").window(utc(2018, 11, 4, 12))
    assert day.start == utc(2018, 11, 4, 3) and day.duration == 23 * HOUR


# ---- building -------------------------------------------------------------------------------

@pytest.mark.parametrize(("parent", "child"), [
    ("1h", "1d@America/New_York"), ("30m", "1d@America/New_York"), ("1h", "1d@Europe/London"),
    ("1h", "1d@America/Chicago+17:00"), ("30m", "1d@Asia/Kolkata"),
    ("15m", "1d@Asia/Kathmandu"), ("1d@America/New_York", "1M@America/New_York"),
    ("1h", "1M@America/New_York"), ("1d", "1M"), ("1M", "3M"), ("3M@Asia/Tokyo", "12M@Asia/Tokyo"),
    ("1d@America/Chicago+17:00", "1w@America/Chicago+17:00"),
    ("1d@America/Chicago+17:00", "1M@America/Chicago+17:00"),
    ("1d@Europe/London", "1w@Europe/London"),
    ("1d@Asia/Tokyo", "1w@Asia/Tokyo"),
])
def test_parents_that_build(parent: str, child: str) -> None:
    p, c = Timeframe.parse(parent), Timeframe.parse(child)
    p.check_can_build(c)
    assert p.divides(c)


@pytest.mark.parametrize(("parent", "child", "message"), [
    ("1h", "1d@Asia/Kolkata",
     "1d@Asia/Kolkata cannot be built from 1h: its window of 1970-01-01 starts at "
     "1969-12-31T18:30:00Z \\(UTC\\+05:30\\), which is not a 1h boundary; 1d@Asia/Kolkata needs "
     "a parent whose windows divide 30m, such as 30m, 15m, 5m or 1m"),
    ("30m", "1d@Asia/Kathmandu",
     "1d@Asia/Kathmandu cannot be built from 30m: its window of 1986-01-02 starts at "
     "1986-01-01T18:15:00Z \\(UTC\\+05:45\\), which is not a 30m boundary; .* divide 15m, "
     "such as 15m, 5m or 1m"),
    ("1d", "1M@America/New_York", "not a 1d boundary; .*divide 1h.*, or 1d@America/New_York"),
    ("1d@America/New_York", "1M", "not a 1d@America/New_York boundary; build it from 1d "),
    ("1d@America/Chicago", "1w@America/Chicago+17:00",
     "build it from 1d@America/Chicago\\+17:00"),
    ("1w", "1M", "not a 1w boundary"),
    ("1d@Asia/Tokyo", "1w", "its window of 1970-01-05 starts at 1970-01-05T00:00:00Z, which is "
                            "not a 1d@Asia/Tokyo boundary"),
    ("1d@America/New_York", "1d@America/New_York", "the parent must be finer than the child"),
    ("1d@America/New_York", "1d@US/Eastern", "the parent must be finer than the child"),
    ("1M", "1d", "the parent must be finer than the child"),
    ("1d@Europe/London", "4h", "the parent must be finer than the child"),
    ("2M", "3M", "not a 2M boundary"),
    ("1m", "1d@Africa/Monrovia", "no timeframe of whole minutes divides its window starts"),
])
def test_parents_that_cannot_build_say_why(parent: str, child: str, message: str) -> None:
    p, c = Timeframe.parse(parent), Timeframe.parse(child)
    with pytest.raises(TimeframeError, match=message) as info:
        p.check_can_build(c)
    assert "\n" not in str(info.value)
    assert not p.divides(c) or c.nominal_seconds <= p.nominal_seconds


def test_dag_accepts_calendar_levels_and_rejects_what_cannot_be_built() -> None:
    dag = Dag.from_spec({"1m": None, "5m": "1m", "30m": "5m", "1h": "30m", "1d": "1h",
                         "1d@America/New_York": "1h", "1M@America/New_York": "1d@America/New_York",
                         "1d@America/Chicago+17:00": "1h", "1M": "1d"})
    assert dag.level("1M@America/New_York").table == "bars_1mo_america_new_york"
    assert dag.level("1d@America/Chicago+17:00").table == "bars_1d_america_chicago_1700"
    assert dag.level("1M").partitioning == "months"
    assert [lv.name for lv in dag.up_to("1M@America/New_York")] == [
        "1m", "5m", "30m", "1h", "1d@America/New_York", "1M@America/New_York"]
    with pytest.raises(TimeframeError, match="1d@Asia/Kolkata cannot be built from 1h:.*30m"):
        Dag.from_spec({"1m": None, "5m": "1m", "1h": "5m", "1d@Asia/Kolkata": "1h"})
    with pytest.raises(TimeframeError, match="1M@America/New_York cannot be built from 1d"):
        Dag.from_spec({"1m": None, "1h": "1m", "1d": "1h", "1M@America/New_York": "1d"})


# ---- properties -------------------------------------------------------------------------------

_ZONED = ["1d@America/New_York", "1d@Europe/London", "1d@America/Chicago+17:00", "1d@Asia/Kolkata",
          "1d@Asia/Kathmandu", "1d@Australia/Lord_Howe", "1d@America/St_Johns",
          "1d@America/Sao_Paulo", "1d@Pacific/Apia", "1d@Asia/Beirut", "2d@Pacific/Chatham",
          "1w@Europe/London", "1w:sun@America/New_York", "1w@America/Chicago+17:00",
          "1M", "1M@America/New_York", "3M@Asia/Kolkata", "1M@America/Chicago+17:00", "12M",
          "1d@UTC+09:30"]
_FIXED = ["1m", "5m", "15m", "1h", "4h", "1d", "1w", "1w:sun"]
instants = st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2099, 12, 1),
                        timezones=st.just(UTC))


def _trade_date(tf: Timeframe, instant: datetime) -> date:
    """The local date (shifted back by the session start) on which `instant` falls."""
    zone = ZoneInfo(tf.zone or "UTC")
    wall = instant.astimezone(zone).replace(tzinfo=None)
    return (wall + timedelta(minutes=1_440 - tf.session_minutes if tf.session_minutes else 0)
            ).date()


@settings(max_examples=150, deadline=None)
@given(text=st.sampled_from(_ZONED + _FIXED), t=instants)
def test_window_holds_the_instant_and_windows_tile(text: str, t: datetime) -> None:
    tf = Timeframe.parse(text)
    window = tf.window(t)
    assert window.start <= t < window.end
    assert tf.window(window.start) == window and tf.window(window.end - TICK) == window
    assert tf.window(window.end).start == window.end  # the next window follows without a gap
    assert tf.window_start(t) == tf.floor(t) == window.start
    if not tf.is_calendar:
        assert (window.start - datetime(1970, 1, 1, tzinfo=UTC)) % tf.duration == timedelta(
            seconds=tf.origin_seconds) % tf.duration


@settings(max_examples=150, deadline=None)
@given(text=st.sampled_from([z for z in _ZONED if z.startswith("1d@")]), t=instants)
def test_zoned_day_starts_where_the_local_date_changes(text: str, t: datetime) -> None:
    """A day (session) starts at the first instant of its local (trade) date."""
    tf = Timeframe.parse(text)
    window = tf.window(t)
    assert _trade_date(tf, window.start) >= window.date > _trade_date(tf, window.start - TICK)
    assert _trade_date(tf, window.end) > window.date >= _trade_date(tf, window.end - TICK)


@settings(max_examples=200, deadline=None)
@given(t=instants, zone=st.sampled_from(["America/New_York", "Europe/London", "Asia/Tokyo",
                                         "Australia/Sydney"]))
def test_zoned_days_and_months_match_local_midnights(t: datetime, zone: str) -> None:
    tz = ZoneInfo(zone)
    local = t.astimezone(tz).date()
    day = Timeframe.parse(f"1d@{zone}").window(t)
    assert (day.start, day.end, day.date) == (
        local_midnight(local, tz), local_midnight(local + timedelta(days=1), tz), local)
    first = local.replace(day=1)
    following = (first + timedelta(days=32)).replace(day=1)
    month = Timeframe.parse(f"1M@{zone}").window(t)
    assert (month.start, month.end, month.date) == (
        local_midnight(first, tz), local_midnight(following, tz), first)
    assert month.start.minute == 0
