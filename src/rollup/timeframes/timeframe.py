"""The `Timeframe` value: one parser, one alignment rule, one compatibility rule."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import attrs

from rollup.errors import TimeframeError

_UNIT_SECONDS = {"m": 60, "h": 3_600, "d": 86_400, "w": 604_800}
_UNIT_NAMES = {"m": "minute", "h": "hour", "d": "day", "w": "week"}
_PATTERN = re.compile(r"^([1-9][0-9]{0,4})([mhdw])$")
# 1970-01-01 was a Thursday: weekly windows start on Monday, four days after the epoch.
_WEEK_ORIGIN_SECONDS = 4 * 86_400
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@attrs.frozen(order=False)
class Timeframe:
    """A fixed-length bar duration with windows [start, end) in UTC.

    Windows are aligned to the Unix epoch (so days start at 00:00 UTC); weekly timeframes are
    aligned to Monday 00:00 UTC. Build one with `Timeframe.parse("5m")`.
    """

    count: int = attrs.field(validator=attrs.validators.gt(0))
    unit: str = attrs.field(validator=attrs.validators.in_(tuple(_UNIT_SECONDS)))

    @classmethod
    def parse(cls, text: str | Timeframe) -> Timeframe:
        """Parse `"1m"`, `"5m"`, `"15m"`, `"1h"`, `"4h"`, `"1d"`, `"1w"` (N then m, h, d or w)."""
        if isinstance(text, Timeframe):
            return text
        match = _PATTERN.match(text.strip()) if isinstance(text, str) else None
        if match is None:
            raise TimeframeError(
                f"invalid timeframe {text!r}: expected a count and a unit m, h, d or w "
                "such as '1m', '5m', '1h', '4h', '1d' or '1w'"
            )
        return cls(int(match.group(1)), match.group(2))

    @property
    def name(self) -> str:
        return f"{self.count}{self.unit}"

    @property
    def seconds(self) -> int:
        return self.count * _UNIT_SECONDS[self.unit]

    @property
    def micros(self) -> int:
        return self.seconds * 1_000_000

    @property
    def origin_seconds(self) -> int:
        """Offset of the window grid from the Unix epoch (Monday alignment for weeks)."""
        return _WEEK_ORIGIN_SECONDS if self.unit == "w" else 0

    @property
    def duration(self) -> timedelta:
        return timedelta(seconds=self.seconds)

    def floor_micros(self, epoch_micros: int) -> int:
        """Start (epoch microseconds) of the window holding `epoch_micros`."""
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

    def divides(self, other: Timeframe) -> bool:
        """True when every window of `other` is an exact union of windows of `self`."""
        return (
            other.seconds % self.seconds == 0
            and (other.origin_seconds - self.origin_seconds) % self.seconds == 0
        )

    def check_can_build(self, child: Timeframe) -> None:
        """Raise TimeframeError unless `child` can be rolled up from bars of `self`."""
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
        return f"{self.count} {unit}{'s' if self.count > 1 else ''}"

    def __str__(self) -> str:
        return self.name

    def __lt__(self, other: Timeframe) -> bool:
        return self.seconds < other.seconds
