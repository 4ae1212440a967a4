"""Instants: parsing user-given ones (--start/--end, API filters), reading Spark's."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from rollup.errors import InputError


def parse_instant(value: str | datetime | date, what: str = "time") -> datetime:
    """An aware UTC datetime from ISO-8601 text (UTC when no offset), a date or a datetime."""
    if isinstance(value, datetime):
        return value.astimezone(UTC) if value.tzinfo else value.replace(tzinfo=UTC)
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
    return parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def iso(instant: datetime) -> str:
    """ISO-8601 text of an instant in UTC with a Z suffix."""
    aware = instant.astimezone(UTC) if instant.tzinfo else instant.replace(tzinfo=UTC)
    return aware.isoformat().replace("+00:00", "Z")


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def from_spark(value: datetime) -> datetime:
    """An aware UTC datetime from a TIMESTAMP value collected from Spark (`Row` fields).

    PySpark returns TIMESTAMP values as naive datetimes in the local time zone of the Python
    process, not in Spark's session time zone, so a naive value is local time. (User input is
    the opposite: naive means UTC, see `parse_instant`.)
    """
    return value.astimezone(UTC)


def from_micros(micros: int) -> datetime:
    """The aware UTC instant of an epoch-microsecond count (exact, whatever the local zone)."""
    return _EPOCH + timedelta(microseconds=int(micros))
