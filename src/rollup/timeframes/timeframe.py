"""The `Timeframe` value: one parser, one alignment rule, one compatibility rule.

Fixed timeframes (`5m`, `1h`, `1d`, `1w`) have windows of one length aligned to the Unix
epoch in UTC. Calendar timeframes (`1d@America/New_York`, `1d@America/Chicago+17:00`, `1M`)
have windows of varying length; their arithmetic lives in `rollup.timeframes.calendar`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta

import attrs

from rollup.errors import TimeframeError
from rollup.specs.times import as_utc
from rollup.timeframes import building
from rollup.timeframes.calendar import (
    WEEKDAYS,
    CalendarGrid,
    CalendarUnit,
    epoch_seconds,
    from_epoch,
)
from rollup.timeframes.spelling import check_combination, parse_parts, to_zone

_UNIT_SECONDS = {"m": 60, "h": 3_600, "d": 86_400, "w": 604_800}
_UNIT_NAMES = {"m": "minute", "h": "hour", "d": "day", "w": "week", "M": "month"}
_PATTERN = re.compile(r"^([1-9][0-9]{0,4})([mhdw])$")
# 1970-01-01 was a Thursday: weekly windows start on Monday, four days after the epoch.
_WEEK_ORIGIN_SECONDS = 4 * 86_400
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Average Gregorian month: only orders timeframes and picks policy defaults, never windows.
_NOMINAL_MONTH_SECONDS = 2_629_746


@attrs.frozen
class Window:
    """One window [start, end) of a timeframe (UTC instants) and its `date` label.

    `date` is the `window_date` of the bar: the UTC date of `start` for fixed timeframes, the
    local date of a zoned day, the trade date (the day it ends) of a session, the first day
    of a zoned week or month.
    """

    start: datetime
    end: datetime
    date: date
    label: str

    @property
    def duration(self) -> timedelta:
        return self.end - self.start


@attrs.frozen(order=False, repr=False)
class Timeframe:
    """A bar duration with windows [start, end) in UTC.

    Fixed timeframes are aligned to the Unix epoch (so days start at 00:00 UTC); weekly
    timeframes are aligned to Monday 00:00 UTC (or `week_start`). Calendar timeframes
    (`is_calendar`) follow local midnights in `zone`, trading sessions starting
    `session_minutes` after local midnight, or calendar months. Build one with
    `Timeframe.parse("5m")` or `Timeframe.parse("1d@America/New_York")`.
    """

    count: int = attrs.field(validator=attrs.validators.gt(0))
    unit: str = attrs.field(validator=attrs.validators.in_((*_UNIT_SECONDS, "M")))
    zone: str | None = attrs.field(default=None, converter=to_zone)
    session_minutes: int = attrs.field(default=0,
                                       validator=attrs.validators.and_(
                                           attrs.validators.ge(0), attrs.validators.lt(1_440)))
    week_start: int = attrs.field(default=0, validator=attrs.validators.in_(range(7)))

    def __attrs_post_init__(self) -> None:
        check_combination(self.name, self.unit, self.count, self.zone, self.session_minutes,
                          self.week_start)

    @classmethod
    def parse(cls, text: str | Timeframe) -> Timeframe:
        """Parse `"5m"`, `"1h"`, `"1d"`, `"1w"`, `"1M"`, `"1d@America/New_York"`, ...

        The grammar is `<count><unit>[:<weekday>][@<zone>[+HH:MM]]`: a count; a unit m, h,
        d, w or M (calendar months); for weeks an optional first weekday (`1w:sun`); for
        days, weeks and months an optional IANA zone, and a session start (`+17:00`: windows
        from 17:00 local time the day before to 17:00, labelled by the day they end).

        Raises:
            TimeframeError: the text does not follow the grammar, names an unknown zone or
                combines parts that do not fit (a zone on minutes, a weekday on days, ...).
        """
        if isinstance(text, Timeframe):
            return text
        match = _PATTERN.match(text.strip()) if isinstance(text, str) else None
        if match is not None:
            return cls(int(match.group(1)), match.group(2))
        parts = parse_parts(text)
        return cls(parts.count, parts.unit, parts.zone, parts.session_minutes, parts.week_start)

    # ---- what every timeframe has -----------------------------------------------------------

    @property
    def name(self) -> str:
        """The canonical spelling: `str(Timeframe.parse(name)) == name`."""
        text = f"{self.count}{self.unit}"
        if self.week_start:
            text += f":{WEEKDAYS[self.week_start]}"
        if self.zone is not None or self.session_minutes:
            text += f"@{self.zone or 'UTC'}"
        if self.session_minutes:
            text += f"+{self.session_minutes // 60:02d}:{self.session_minutes % 60:02d}"
        return text

    @property
    def identifier(self) -> str:
        """The name as lower-case letters, digits and underscores (default table `bars_<id>`).

        `1d@America/New_York` -> `1d_america_new_york`, `1d@America/Chicago+17:00` ->
        `1d_america_chicago_1700`, `1M` -> `1mo`; a fixed timeframe's identifier is its name.
        """
        text = f"{self.count}{'mo' if self.unit == 'M' else self.unit}"
        if self.week_start:
            text += f"_{WEEKDAYS[self.week_start]}"
        if self.zone is not None or self.session_minutes:
            zone = (self.zone or "UTC").lower().replace("+", "_plus_").replace("-", "_minus_")
            text += "_" + re.sub(r"_+", "_", re.sub(r"[^a-z0-9]", "_", zone)).strip("_")
        if self.session_minutes:
            text += f"_{self.session_minutes // 60:02d}{self.session_minutes % 60:02d}"
        return text

    @property
    def is_calendar(self) -> bool:
        """True for windows of varying length: zoned, session or month timeframes (Spark
        finds their windows in a table, `rollup.transforms.windows`)."""
        return self.unit == "M" or self.zone is not None or self.session_minutes > 0

    @property
    def nominal_seconds(self) -> int:
        """Typical window length, for ordering and policy defaults only (a month: 30.44 days)."""
        if self.unit == "M":
            return self.count * _NOMINAL_MONTH_SECONDS
        return self.count * _UNIT_SECONDS[self.unit]

    @property
    def calendar_grid(self) -> CalendarGrid | None:
        """The calendar windows of a calendar timeframe; None for a fixed one."""
        if not self.is_calendar:
            return None
        unit: CalendarUnit = "d" if self.unit == "d" else "w" if self.unit == "w" else "M"
        shift = self.session_minutes * 60 - 86_400 if self.session_minutes else 0
        return CalendarGrid(unit, self.count, self.zone or "UTC", shift, self.week_start)

    # ---- fixed-length arithmetic (a calendar timeframe raises) ----------------------------

    def _fixed(self, what: str) -> None:
        if self.is_calendar:
            raise TimeframeError(
                f"timeframe {self.name} has no fixed {what}: its windows follow a calendar; "
                "use window_start, window_end and windows instead"
            )

    @property
    def seconds(self) -> int:
        self._fixed("length")
        return self.count * _UNIT_SECONDS[self.unit]

    @property
    def micros(self) -> int:
        return self.seconds * 1_000_000

    @property
    def origin_seconds(self) -> int:
        """Offset of the window grid from the Unix epoch (Monday alignment for weeks)."""
        self._fixed("grid origin")
        if self.unit == "w":
            # the first `week_start` weekday of 1970: Monday is 1970-01-05
            return _WEEK_ORIGIN_SECONDS if not self.week_start else (
                (self.week_start - 3) % 7 * 86_400)
        return 0

    @property
    def duration(self) -> timedelta:
        return timedelta(seconds=self.seconds)

    def floor_micros(self, epoch_micros: int) -> int:
        """Start (epoch microseconds) of the window holding `epoch_micros`."""
        if self.is_calendar:
            return self._locate(epoch_micros // 1_000_000)[1] * 1_000_000
        origin = self.origin_seconds * 1_000_000
        return (epoch_micros - origin) // self.micros * self.micros + origin

    def floor(self, instant: datetime) -> datetime:
        """Start of the window holding `instant` (naive datetimes are taken as UTC)."""
        if instant.tzinfo is None:
            instant = instant.replace(tzinfo=UTC)
        delta = instant - _EPOCH
        micros = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
        return _EPOCH + timedelta(microseconds=self.floor_micros(micros))

    def is_aligned(self, instant: datetime) -> bool:
        return self.floor(instant) == (instant if instant.tzinfo else instant.replace(tzinfo=UTC))

    # ---- windows of every timeframe -------------------------------------------------------

    def _locate(self, seconds: int) -> tuple[date, int, int]:
        grid = self.calendar_grid
        assert grid is not None
        return grid.locate(seconds)

    def window(self, instant: datetime) -> Window:
        """The window holding `instant` (naive datetimes are taken as UTC)."""
        if not self.is_calendar:
            start = self.floor(instant)
            return Window(start, start + self.duration, start.date(), self._label(start, None))
        label, first, after = self._locate(epoch_seconds(instant))
        return Window(from_epoch(first), from_epoch(after), label, self._label(None, label))

    def window_start(self, instant: datetime) -> datetime:
        """Start (UTC) of the window holding `instant`."""
        return self.window(instant).start

    def window_end(self, instant: datetime) -> datetime:
        """End (UTC, exclusive) of the window holding `instant`: the next window's start."""
        return self.window(instant).end

    def window_date(self, instant: datetime) -> date:
        """The `window_date` of the window holding `instant` (see `Window.date`)."""
        return self.window(instant).date

    def window_label(self, instant: datetime) -> str:
        """A short label of the window holding `instant`: `2026-03-08`, `2026-03`, `2026-Q1`."""
        return self.window(instant).label

    def windows(self, start: datetime, end: datetime) -> Iterator[Window]:
        """The windows intersecting [start, end) in time order (empty calendar days skipped)."""
        end = as_utc(end)
        if as_utc(start) >= end:
            return
        window = self.window(start)
        while window.start < end:
            if window.end > window.start:
                yield window
            window = self.window(window.end)

    def _label(self, start: datetime | None, label: date | None) -> str:
        if label is None:
            assert start is not None
            if self.unit in ("d", "w"):
                return start.date().isoformat()
            return start.strftime("%Y-%m-%dT%H:%MZ")
        if self.unit != "M":
            return label.isoformat()
        if self.count == 12:
            return f"{label.year}"
        if self.count == 3:
            return f"{label.year}-Q{(label.month - 1) // 3 + 1}"
        return f"{label.year}-{label.month:02d}"

    # ---- building one timeframe from another ---------------------------------------------

    def divides(self, other: Timeframe) -> bool:
        """True when every window of `other` is an exact union of windows of `self`."""
        if self.is_calendar or other.is_calendar:
            return building.first_gap(self, other) is None
        return (
            other.seconds % self.seconds == 0
            and (other.origin_seconds - self.origin_seconds) % self.seconds == 0
        )

    def check_can_build(self, child: Timeframe) -> None:
        """Raise TimeframeError unless `child` can be rolled up from bars of `self`.

        A calendar child (or parent) is decided exactly from the zone's rules between
        `calendar.CHECK_FROM` and `calendar.CHECK_UNTIL`: every child window start must be a
        parent window start on every date, DST changes included.
        """
        if self.is_calendar or child.is_calendar:
            reason = building.why_not(self, child)
            if reason is not None:
                raise TimeframeError(
                    f"timeframe {child.name} cannot be built from {self.name}: {reason}")
            return
        if child.seconds <= self.seconds:
            raise TimeframeError(
                f"timeframe {child.name} cannot be built from {self.name}: "
                f"the parent must be finer than the child"
            )
        if not self.divides(child):
            raise TimeframeError(
                f"timeframe {child.name} cannot be built from {self.name}: "
                f"{self.name} windows do not divide {child.name} windows evenly"
            )

    def describe(self) -> str:
        unit = _UNIT_NAMES[self.unit]
        text = f"{self.count} {unit}{'s' if self.count > 1 else ''}"
        if self.week_start:
            text += f" from {WEEKDAYS[self.week_start].capitalize()}"
        if self.session_minutes:
            start = f"{self.session_minutes // 60:02d}:{self.session_minutes % 60:02d}"
            text += f" of sessions from {start}"
        if self.zone is not None or self.session_minutes:
            text += f" in {self.zone or 'UTC'}"
        return text

    def __str__(self) -> str:
        return self.name

    def __repr__(self) -> str:
        extra = "".join(f", {name}={value!r}" for name, value, default in (
            ("zone", self.zone, None), ("session_minutes", self.session_minutes, 0),
            ("week_start", self.week_start, 0)) if value != default)
        return f"Timeframe(count={self.count!r}, unit={self.unit!r}{extra})"

    def __lt__(self, other: Timeframe) -> bool:
        return self.nominal_seconds < other.nominal_seconds
