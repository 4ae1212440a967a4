"""London days and weeks and UTC months through the cascade (see tests/calendar_scenario.py),
against the zoneinfo oracle of tests/oracle.py."""

from __future__ import annotations

import pytest

from tests.calendar_scenario import run_scenario

pytestmark = pytest.mark.spark

LEVELS = {
    "1m": None, "30m": "1m",
    "1d@Europe/London": "30m", "1w@Europe/London": "1d@Europe/London", "1M": "30m",
}


def test_london_days_weeks_and_utc_months_equal_the_oracle(spark, namespace) -> None:  # type: ignore[no-untyped-def]
    tables = run_scenario(spark, namespace, LEVELS)
    weeks = tables.read_bars("1w@Europe/London").select("window_date").collect()
    assert {r.window_date.weekday() for r in weeks} == {0}  # London weeks start on Monday
