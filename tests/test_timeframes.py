"""Timeframe parsing, alignment and DAG validation (pure: no Spark)."""

from __future__ import annotations

import sys
from datetime import UTC, datetime, timedelta

import pytest

from rollup.errors import RollupError, TimeframeError
from rollup.timeframes import Dag, Level, Timeframe, parse_dag


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("1m", 60), ("5m", 300), ("15m", 900), ("30m", 1800), ("1h", 3600), ("4h", 14400),
     ("1d", 86400), ("1w", 604800)],
)
def test_parse_standard_timeframes(text: str, seconds: int) -> None:
    tf = Timeframe.parse(text)
    assert tf.seconds == seconds
    assert tf.name == text
    assert Timeframe.parse(f" {text} ") == tf


@pytest.mark.parametrize("bad", ["", "m", "0m", "5", "1mo", "1y", "-5m", "5 m", "1.5h", "01m"])
def test_parse_rejects_with_one_sentence_naming_value(bad: str) -> None:
    with pytest.raises(TimeframeError) as info:
        Timeframe.parse(bad)
    message = str(info.value)
    assert repr(bad) in message
    assert "\n" not in message
    assert isinstance(info.value, ValueError) and isinstance(info.value, RollupError)


def test_floor_is_epoch_aligned_and_days_start_at_midnight_utc() -> None:
    t = datetime(2024, 1, 2, 13, 47, 59, 999_999, tzinfo=UTC)
    assert Timeframe.parse("1m").floor(t) == datetime(2024, 1, 2, 13, 47, tzinfo=UTC)
    assert Timeframe.parse("5m").floor(t) == datetime(2024, 1, 2, 13, 45, tzinfo=UTC)
    assert Timeframe.parse("4h").floor(t) == datetime(2024, 1, 2, 12, 0, tzinfo=UTC)
    assert Timeframe.parse("1d").floor(t) == datetime(2024, 1, 2, tzinfo=UTC)


def test_weeks_start_on_monday() -> None:
    week = Timeframe.parse("1w")
    # 2024-01-07 is a Sunday, 2024-01-08 a Monday.
    assert week.floor(datetime(2024, 1, 7, 23, 59, tzinfo=UTC)) == datetime(2024, 1, 1, tzinfo=UTC)
    assert week.floor(datetime(2024, 1, 8, tzinfo=UTC)) == datetime(2024, 1, 8, tzinfo=UTC)
    assert week.floor(datetime(2024, 1, 8, tzinfo=UTC)).weekday() == 0


def test_floor_before_epoch_and_naive_as_utc() -> None:
    tf = Timeframe.parse("1h")
    assert tf.floor(datetime(1969, 12, 31, 23, 30)) == datetime(1969, 12, 31, 23, tzinfo=UTC)
    assert tf.floor_micros(-1) == -3_600_000_000


@pytest.mark.parametrize(
    ("parent", "child", "ok"),
    [("1m", "5m", True), ("5m", "15m", True), ("5m", "30m", True), ("30m", "1h", True),
     ("1h", "4h", True), ("1h", "1d", True), ("1d", "1w", True), ("1h", "1w", True),
     ("5m", "7m", False), ("10m", "15m", False), ("2d", "1w", False), ("1h", "1h", False),
     ("1d", "1h", False), ("3d", "1w", False)],
)
def test_compatibility_rule(parent: str, child: str, ok: bool) -> None:
    p, c = Timeframe.parse(parent), Timeframe.parse(child)
    if ok:
        p.check_can_build(c)
    else:
        with pytest.raises(TimeframeError, match=f"{child} cannot be built from {parent}"):
            p.check_can_build(c)


def test_standard_dag_order_and_policy() -> None:
    dag = Dag.standard()
    assert dag.names() == ["1m", "5m", "30m", "1h", "1d"]
    policy = {lv.name: (lv.parent_name, lv.table, lv.partitioning, lv.write_mode,
                        lv.retention, lv.schedule) for lv in dag}
    day = timedelta(days=1)
    assert policy == {
        "1m": ("trades", "bars_1m", "days", "merge", 90 * day, "*/5 * * * *"),
        "5m": ("1m", "bars_5m", "days", "merge", 180 * day, "5,20,35,50 * * * *"),
        "30m": ("5m", "bars_30m", "days", "overwrite", 365 * day, "10,40 * * * *"),
        "1h": ("30m", "bars_1h", "days", "overwrite", 3 * 365 * day, "15 * * * *"),
        "1d": ("1h", "bars_1d", "months", "overwrite", 5 * 365 * day, "5 0 * * *"),
    }


def test_user_dag_with_custom_levels() -> None:
    dag = Dag.standard().add("15m", "5m").add("4h", "1h").add("1w", "1d")
    assert dag.names() == ["1m", "5m", "15m", "30m", "1h", "4h", "1d", "1w"]
    assert [lv.name for lv in dag.ancestors("1w")] == ["1m", "5m", "30m", "1h", "1d", "1w"]
    assert [lv.name for lv in dag.children("1h")] == ["4h", "1d"]
    assert [lv.name for lv in dag.descendants("1h")] == ["1h", "4h", "1d", "1w"]
    assert [lv.name for lv in dag.up_to("15m")] == ["1m", "5m", "15m"]
    assert dag.level("1w").partitioning == "months"
    assert dag.level("15m").write_mode == "merge"
    assert dag.level("4h").write_mode == "overwrite"


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: Dag.standard().add("7m", "5m"), "7m cannot be built from 5m"),
        (lambda: Dag.standard().add("5m", "1m"), "duplicate timeframe '5m'"),
        (lambda: Dag.standard().add("2h", "2m"), "unknown parent '2m'"),
        (lambda: Dag.standard().add("1m", "5m"), "parent must be finer"),
        (lambda: Dag((Level("5m", "1m"),)), "unknown parent '1m'"),
        (lambda: Dag((Level("1m"), Level("5m", "1m", table="bars_1m"))), "share the table"),
        (lambda: Level("1m", table="Bars; DROP"), "invalid table name"),
        (lambda: Level("1m", schedule="every minute"), "invalid cron schedule"),
        (lambda: Level("1m", retention=timedelta(0)), "invalid retention"),
        (lambda: Dag.standard().level("2m"), "unknown timeframe '2m'"),
    ],
)
def test_definition_time_errors(build, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(TimeframeError, match=message) as info:
        build()
    assert "\n" not in str(info.value)


def test_cycle_is_impossible_because_parents_are_finer() -> None:
    with pytest.raises(TimeframeError):
        Dag((Level("5m", "1h"), Level("1h", "5m")))


def test_parse_dag_and_replace_policy() -> None:
    dag = parse_dag(["1m", "5m<1m", "15m<5m", "1h<15m"])
    assert dag.names() == ["1m", "5m", "15m", "1h"]
    changed = dag.replace("5m", retention=timedelta(days=7))
    assert changed.level("5m").retention == timedelta(days=7)
    assert dag.level("5m").retention == timedelta(days=180)


def test_timeframes_package_does_not_import_pyspark() -> None:
    import subprocess

    code = ("import sys, rollup.timeframes, rollup.specs.bar, rollup\n"
            "assert 'pyspark' not in sys.modules, sorted(m for m in sys.modules if 'spark' in m)")
    subprocess.run([sys.executable, "-c", code], check=True)
