"""Whether a calendar timeframe can be built from another: exact, from the zone's rules.

A child can be built from a parent when every child window start is a parent window start
on every date; for calendar timeframes this is decided over every window labelled between
`calendar.CHECK_FROM` and `calendar.CHECK_UNTIL`, so every UTC offset a zone has used or is
scheduled to use in that range (DST included) is taken into account.
"""

from __future__ import annotations

import functools
import math
from typing import TYPE_CHECKING

from rollup.timeframes.calendar import CalendarGrid, from_epoch, offset_at

if TYPE_CHECKING:
    from rollup.timeframes.timeframe import Timeframe

_SUGGESTIONS = (("1d", 86_400), ("4h", 14_400), ("1h", 3_600), ("30m", 1_800), ("15m", 900),
                ("5m", 300), ("1m", 60))


@functools.cache
def _grid_starts(grid: CalendarGrid) -> tuple[int, ...]:
    return tuple(start for _, start in grid.boundaries())


@functools.cache
def _grid_start_set(grid: CalendarGrid) -> frozenset[int]:
    return frozenset(_grid_starts(grid))


def _starts(tf: Timeframe) -> tuple[int, ...]:
    grid = tf.calendar_grid
    assert grid is not None
    return _grid_starts(grid)


def _length(seconds: int) -> str:
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _offset(seconds: int) -> str:
    sign, seconds = ("-" if seconds < 0 else "+"), abs(seconds)
    text = f"{sign}{seconds // 3_600:02d}:{seconds % 3_600 // 60:02d}"
    return text + (f":{seconds % 60:02d}" if seconds % 60 else "")


def _where(child: Timeframe, start: int) -> str:
    instant = from_epoch(start)
    grid = child.calendar_grid
    zone = (f" (UTC{_offset(offset_at(grid.tz, start))})"
            if grid is not None and child.zone is not None else "")
    return (f"its window of {child.window(instant).label} starts at "
            f"{instant.strftime('%Y-%m-%dT%H:%M:%SZ')}{zone}")


def _fixed_hint(child: Timeframe, starts: tuple[int, ...]) -> str:
    grid = math.gcd(*starts)
    fits = [name for name, size in _SUGGESTIONS if grid % size == 0][:4]
    if not fits:
        return (f"no timeframe of whole minutes divides its window starts "
                f"(they fall on a {grid}-second grid)")
    day = _day_of(child)
    return (f"{child.name} needs a parent whose windows divide {_length(grid)}, such as "
            f"{', '.join(fits[:-1])}{' or ' if len(fits) > 1 else ''}{fits[-1]}"
            + (f", or {day.name}" if day is not None and day.is_calendar else ""))


def _day_of(child: Timeframe) -> Timeframe | None:
    """The one-day timeframe of the child's zone and session, if the child is longer."""
    if child.unit == "d" and child.count == 1:
        return None
    return type(child)(1, "d", child.zone, child.session_minutes)


def _calendar_hint(parent: Timeframe, child: Timeframe) -> str:
    day = _day_of(child)
    if day is None or day == parent:
        return ""
    return f"; build it from {day.name} (days of the same zone and session)"


def first_gap(parent: Timeframe, child: Timeframe) -> str | None:
    """Why some child window does not start on a parent window start, or None if all do."""
    if not child.is_calendar and not parent.is_calendar:
        if (child.seconds % parent.seconds == 0
                and (child.origin_seconds - parent.origin_seconds) % parent.seconds == 0):
            return None
        return f"{parent.name} windows do not divide {child.name} windows evenly"
    if not parent.is_calendar:
        origin, size = parent.origin_seconds, parent.seconds
        starts = _starts(child)
        for start in starts:
            if (start - origin) % size:
                return (f"{_where(child, start)}, which is not a {parent.name} boundary; "
                        f"{_fixed_hint(child, starts)}")
        return None
    assert parent.calendar_grid is not None
    known = _grid_start_set(parent.calendar_grid)
    first, last = min(_starts(parent)), max(_starts(parent))
    if child.is_calendar:
        candidates = [start for start in _starts(child) if first <= start <= last]
    else:
        size, origin = child.seconds, child.origin_seconds
        begin = first + (origin - first) % size
        candidates = list(range(begin, last + 1, size))
    for start in candidates:
        if start not in known:
            return (f"{_where(child, start)}, which is not a {parent.name} boundary"
                    f"{_calendar_hint(parent, child) if child.is_calendar else ''}")
    return None


def why_not(parent: Timeframe, child: Timeframe) -> str | None:
    """The reason `child` cannot be rolled up from `parent`, or None when it can."""
    if child.nominal_seconds <= parent.nominal_seconds:
        return "the parent must be finer than the child"
    return first_gap(parent, child)
