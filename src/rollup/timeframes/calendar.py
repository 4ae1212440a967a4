"""Calendar windows: days, weeks and months in an IANA time zone, optionally as trading sessions.

A calendar grid labels each window by a date (its *label*): the local date of a zoned day,
the trade date of a session (the day on which the session ends), the first date of a week or
month. The window of label D starts at the first instant whose local wall time is at or
after the *anchor* of D: local midnight of D, or `session` after midnight of the day before D
for a session. So a New York day lasts 23 or 25 hours on DST changes, a day whose midnight
does not exist starts when the clocks jump, and a skipped date (Samoa, 2011-12-30) is an
empty window. Everything here is pure Python (`zoneinfo`) and exact to the second.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from datetime import date, datetime, timedelta
from typing import Literal
from zoneinfo import ZoneInfo, available_timezones

import attrs

from rollup.specs.times import EPOCH, as_utc

CalendarUnit = Literal["d", "w", "M"]
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

_EPOCH_ORD = date(1970, 1, 1).toordinal()
_DAY = 86_400
CHECK_FROM = date(1970, 1, 1)
"""First label date examined when deciding whether a parent can build a child."""
CHECK_UNTIL = date(2100, 1, 1)
"""Labels before this date are examined (zone rules after 2037 follow the zone's POSIX rule)."""


@functools.cache
def known_zones() -> frozenset[str]:
    """The IANA zone names this machine knows (system zoneinfo or the `tzdata` package)."""
    return frozenset(available_timezones())


def zone_info(key: str) -> ZoneInfo:
    return ZoneInfo(key)


def epoch_seconds(instant: datetime) -> int:
    """Whole seconds since the epoch, rounded down (naive datetimes are taken as UTC)."""
    delta = as_utc(instant) - EPOCH
    return delta.days * _DAY + delta.seconds


def from_epoch(seconds: int) -> datetime:
    return EPOCH + timedelta(seconds=seconds)


def _wall_seconds(wall: datetime) -> int:
    """A naive local wall time as seconds since 1970-01-01 00:00 on the same wall clock."""
    return ((wall.toordinal() - _EPOCH_ORD) * _DAY + wall.hour * 3_600 + wall.minute * 60
            + wall.second)


def _offset(tz: ZoneInfo, wall: datetime) -> int:
    offset = tz.utcoffset(wall)
    assert offset is not None  # a ZoneInfo always has an offset
    return offset.days * _DAY + offset.seconds


def offset_at(tz: ZoneInfo, seconds: int) -> int:
    """UTC offset (seconds) in force at the instant `seconds` after the epoch."""
    offset = from_epoch(seconds).astimezone(tz).utcoffset()
    assert offset is not None
    return offset.days * _DAY + offset.seconds


def first_instant(tz: ZoneInfo, wall: datetime) -> int:
    """Epoch seconds of the first instant whose wall time in `tz` is at or after `wall`.

    An existing wall time gives its (first) occurrence; a wall time inside a gap (clocks
    jumping forward over it) gives the instant of the jump.
    """
    local = _wall_seconds(wall)
    before, after = _offset(tz, wall), _offset(tz, wall.replace(fold=1))
    if before >= after:  # unambiguous, or repeated (fold 0 is the first occurrence)
        return local - before
    lo, hi = local - after, local - before  # a gap: the jump lies in (lo, hi]
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if mid + offset_at(tz, mid) >= local:
            hi = mid
        else:
            lo = mid
    return hi


def _add_months(label: date, months: int) -> date:
    index = label.year * 12 + label.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


@attrs.frozen
class CalendarGrid:
    """The windows of a calendar timeframe: label dates, their anchors and their boundaries.

    Args:
        unit: `d` (days), `w` (weeks) or `M` (months).
        count: days, weeks or months per window (months: a divisor of 12).
        zone: IANA zone name (`UTC` for UTC).
        shift: seconds from midnight of the label date to the anchor: 0, or minus the time
            from the session start to midnight (a 17:00 session: -7 h, on the day before).
        week_start: first weekday of weeks, 0 (Monday) to 6 (Sunday).
    """

    unit: CalendarUnit
    count: int
    zone: str
    shift: int = 0
    week_start: int = 0

    @property
    def tz(self) -> ZoneInfo:
        return zone_info(self.zone)

    # label arithmetic ----------------------------------------------------------------------

    def _period_origin(self) -> tuple[int, int]:
        if self.unit == "d":
            return self.count, _EPOCH_ORD
        # the first such weekday of 1970 (1970-01-01 was a Thursday): Monday is 1970-01-05
        return 7 * self.count, _EPOCH_ORD + (self.week_start - 3) % 7

    def floor_label(self, day: date) -> date:
        """The label of the grid window whose labels include `day`."""
        if self.unit == "M":
            return _add_months(day.replace(day=1), -((day.month - 1) % self.count))
        period, origin = self._period_origin()
        return date.fromordinal(origin + (day.toordinal() - origin) // period * period)

    def next_label(self, label: date, steps: int = 1) -> date:
        if self.unit == "M":
            return _add_months(label, steps * self.count)
        return label + timedelta(days=steps * self._period_origin()[0])

    def labels(self, first: date, until: date) -> Iterator[date]:
        """Labels of the grid from the one holding `first` up to (excluding) `until`."""
        label = self.floor_label(first)
        while label < until:
            yield label
            label = self.next_label(label)

    # instants ------------------------------------------------------------------------------

    def anchor(self, label: date) -> datetime:
        """The local wall time (naive) at which the window of `label` starts."""
        return datetime(label.year, label.month, label.day) + timedelta(seconds=self.shift)

    def boundary(self, label: date) -> int:
        """Epoch seconds at which the window of `label` starts."""
        return first_instant(self.tz, self.anchor(label))

    def locate(self, seconds: int) -> tuple[date, int, int]:
        """(label, start, end) of the window holding the instant `seconds` (epoch seconds)."""
        wall = from_epoch(seconds).astimezone(self.tz).replace(tzinfo=None)
        label = self.floor_label((wall - timedelta(seconds=self.shift)).date())
        while self.boundary(label) > seconds:
            label = self.next_label(label, -1)
        following = self.next_label(label)
        while self.boundary(following) <= seconds:  # also skips empty windows
            label, following = following, self.next_label(following)
        return label, self.boundary(label), self.boundary(following)

    def boundaries(self) -> list[tuple[date, int]]:
        """(label, start) of every window with a label in [CHECK_FROM, CHECK_UNTIL)."""
        days = _day_boundaries(self.zone, self.shift)
        return [(label, days[label.toordinal() - CHECK_FROM.toordinal()])
                for label in self.labels(CHECK_FROM, CHECK_UNTIL) if label >= CHECK_FROM]


@functools.cache
def _day_boundaries(zone: str, shift: int) -> tuple[int, ...]:
    """Start (epoch seconds) of every day label in [CHECK_FROM, CHECK_UNTIL): 0.1 to 0.3 s.

    `first_instant` for each day, with its common case (the anchor is neither skipped nor
    repeated) inlined: this runs once per zone and session start in a process.
    """
    tz = zone_info(zone)
    offset = tz.utcoffset
    step = timedelta(days=1)
    wall = datetime(CHECK_FROM.year, CHECK_FROM.month, CHECK_FROM.day) + timedelta(seconds=shift)
    local = _wall_seconds(wall)
    starts = []
    for _ in range(CHECK_UNTIL.toordinal() - CHECK_FROM.toordinal()):
        before, after = offset(wall), offset(wall.replace(fold=1))
        if before == after and before is not None:
            starts.append(local - before.days * _DAY - before.seconds)
        else:
            starts.append(first_instant(tz, wall))
        wall += step
        local += _DAY
    return tuple(starts)
