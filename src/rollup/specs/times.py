"""Instants and intervals: parsing user-given instants (--start/--end, API filters), reading
Spark's, epoch microseconds, and merging half-open intervals."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime, timedelta
from typing import TypeVar

from rollup.errors import InputError

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

TimeRange = tuple[datetime, datetime]
"""A half-open UTC interval [start, end)."""

Bound = TypeVar("Bound", datetime, date)


def as_utc(instant: datetime) -> datetime:
    """`instant` as an aware UTC datetime; a naive one is taken as UTC (user input, rollup's
    own values). Times collected from Spark are the other case: see `from_spark`."""
    return instant.astimezone(UTC) if instant.tzinfo else instant.replace(tzinfo=UTC)


def parse_instant(value: str | datetime | date, what: str = "time") -> datetime:
    """An aware UTC datetime from ISO-8601 text (UTC when no offset), a date or a datetime."""
    if isinstance(value, datetime):
        return as_utc(value)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    text = str(value).strip()
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise InputError(
            f"invalid {what} {value!r}: expected ISO-8601 such as 2024-01-02 or "
            "2024-01-02T03:04:05Z"
        ) from None
    return as_utc(parsed)


def iso(instant: datetime) -> str:
    """ISO-8601 text of an instant in UTC with a Z suffix."""
    return as_utc(instant).isoformat().replace("+00:00", "Z")


def from_spark(value: datetime) -> datetime:
    """An aware UTC datetime from a TIMESTAMP value collected from Spark (`Row` fields).

    PySpark returns TIMESTAMP values as naive datetimes in the local time zone of the Python
    process, not in Spark's session time zone, so a naive value is local time. (User input is
    the opposite: naive means UTC, see `parse_instant`.)
    """
    return value.astimezone(UTC)


def from_micros(micros: int) -> datetime:
    """The aware UTC instant of an epoch-microsecond count (exact, whatever the local zone)."""
    return EPOCH + timedelta(microseconds=int(micros))


def to_micros(instant: datetime) -> int:
    """Epoch microseconds of an instant (naive: UTC), exact."""
    return (as_utc(instant) - EPOCH) // timedelta(microseconds=1)


def merge_intervals(intervals: Iterable[tuple[Bound, Bound]]) -> list[tuple[Bound, Bound]]:
    """The sorted, disjoint half-open intervals covering `intervals`: overlapping and adjacent
    ones are joined, empty ones (end <= start) dropped. The one interval merge of rollup."""
    merged: list[tuple[Bound, Bound]] = []
    for lo, hi in sorted(i for i in intervals if i[1] > i[0]):
        if merged and lo <= merged[-1][1]:
            if hi > merged[-1][1]:
                merged[-1] = (merged[-1][0], hi)
        else:
            merged.append((lo, hi))
    return merged
