"""The text of a timeframe: `<count><unit>[:<weekday>][@<zone>[+HH:MM]]`, checked part by part."""

from __future__ import annotations

import difflib
import re

import attrs

from rollup.errors import TimeframeError
from rollup.timeframes.calendar import WEEKDAYS, known_zones

_HEAD = re.compile(r"^([1-9][0-9]{0,4})([mhdwM])(?::([A-Za-z]+))?$")
_COUNT_WORD = re.compile(r"^([1-9][0-9]{0,4})([A-Za-z]+)$")
_ZONE = re.compile(r"^[A-Za-z0-9_+\-]+(?:/[A-Za-z0-9_+\-]+)*$")
_SESSION = re.compile(r"^([0-9]{2}):([0-9]{2})$")
_EXPECTED = ("expected a count and a unit m, h, d, w or M such as '1m', '5m', '1h', '4h', "
             "'1d', '1w' or '1M', optionally followed by @ and an IANA zone such as "
             "'1d@America/New_York'")


@attrs.frozen
class Parts:
    """The fields of a parsed timeframe (see `Timeframe`)."""

    count: int
    unit: str
    zone: str | None
    session_minutes: int
    week_start: int


def to_zone(value: str | None) -> str | None:
    """The `zone` field: None for UTC (so `1d@UTC` is `1d`), else the IANA name as given."""
    return None if value in (None, "UTC") else value


def _hint(head: str) -> str:
    match = _COUNT_WORD.match(head)
    if match is None:
        return ""
    count, word = int(match.group(1)), match.group(2).lower()
    if word in ("mo", "mon", "month", "months"):
        return f" (calendar months are written '{count}M')"
    if word in ("q", "quarter", "quarters"):
        return f" (quarters are written '{3 * count}M')"
    if word in ("y", "yr", "year", "years"):
        return f" (years are written '{12 * count}M')"
    if word in ("D", "H", "W", "d", "h", "w") or match.group(2) in ("D", "H", "W"):
        return f" (units other than M are lower-case: '{count}{word}')"
    return ""


def check_zone(zone: str, text: str) -> None:
    """Raise TimeframeError unless `zone` is an IANA zone name known to this machine."""
    if zone == "UTC" or (_ZONE.match(zone) and zone in known_zones()):
        return
    names = {name.lower(): name for name in known_zones()}
    close = [names[zone.lower()]] if zone.lower() in names else difflib.get_close_matches(
        zone, sorted(known_zones()), n=1)
    raise TimeframeError(
        f"unknown time zone {zone!r} in {text!r}: expected an IANA zone name such as "
        f"'America/New_York' or 'Europe/London'" + (f" (did you mean {close[0]!r}?)" if close
                                                    else "")
    )


def check_combination(text: str, unit: str, count: int, zone: str | None,
                      session_minutes: int, week_start: int) -> None:
    """Raise TimeframeError for parts that do not fit together (a zone on minutes, ...)."""
    if unit in ("m", "h") and (zone is not None or session_minutes):
        raise TimeframeError(
            f"invalid timeframe {text!r}: a time zone or session applies to days (d), weeks (w) "
            "and months (M) only; minutes and hours are aligned to UTC"
        )
    if week_start and unit != "w":
        raise TimeframeError(
            f"invalid timeframe {text!r}: a first weekday applies to weeks (w) only, "
            "e.g. '1w:sun'")
    if unit == "M" and 12 % count:
        raise TimeframeError(
            f"invalid timeframe {text!r}: months come in counts that divide a year: "
            "1M, 2M, 3M, 4M, 6M or 12M"
        )
    if zone is not None:
        check_zone(zone, text)


def _session(spelled: str, text: str) -> int:
    match = _SESSION.match(spelled)
    hours, minutes = (int(match.group(1)), int(match.group(2))) if match else (0, 0)
    if match is None or hours > 23 or minutes > 59 or hours == minutes == 0:
        raise TimeframeError(
            f"invalid session start {'+' + spelled!r} in {text!r}: expected the local start "
            "time as +HH:MM from +00:01 to +23:59, e.g. '1d@America/Chicago+17:00'"
        )
    return hours * 60 + minutes


def parse_parts(text: object) -> Parts:
    """Split and check the text of a timeframe that is not a plain `<count><m|h|d|w>`."""
    if not isinstance(text, str):
        raise TimeframeError(f"invalid timeframe {text!r}: {_EXPECTED}")
    head, at, rest = text.strip().partition("@")
    match = _HEAD.match(head)
    if match is None:
        raise TimeframeError(f"invalid timeframe {text!r}: {_EXPECTED}{_hint(head)}")
    count, unit, weekday = int(match.group(1)), match.group(2), match.group(3)
    week_start = 0
    if weekday is not None:
        if weekday.lower() not in WEEKDAYS:
            raise TimeframeError(
                f"invalid first weekday {weekday!r} in {text!r}: expected one of "
                f"{', '.join(WEEKDAYS)}")
        week_start = WEEKDAYS.index(weekday.lower())
    zone: str | None = None
    session_minutes = 0
    if at:
        zone = rest
        if ":" in rest:
            zone, plus, start = rest.rpartition("+")
            if not plus:
                raise TimeframeError(
                    f"invalid session start in {text!r}: expected the zone followed by "
                    "+HH:MM, the local time the session starts, e.g. "
                    "'1d@America/Chicago+17:00'")
            session_minutes = _session(start, text)
        if not zone:
            raise TimeframeError(
                f"missing time zone after '@' in {text!r}: expected an IANA zone name such as "
                "'America/New_York'")
    check_combination(text, unit, count, zone, session_minutes, week_start)
    return Parts(count, unit, to_zone(zone), session_minutes, week_start)
