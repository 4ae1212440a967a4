"""`rollup.specs.times.merge_intervals`, the one interval merge, and the helpers built on it."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from rollup.specs.times import as_utc, merge_intervals, to_micros
from rollup.timeframes import Timeframe
from rollup.transforms.bars import coarsen, merge_ranges

T0 = datetime(2024, 3, 4, tzinfo=UTC)


def at(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


def test_empty() -> None:
    assert merge_intervals([]) == []


def test_adjacent_intervals_are_joined() -> None:
    assert merge_intervals([(at(0), at(5)), (at(5), at(10))]) == [(at(0), at(10))]


def test_overlapping_and_contained_intervals_are_joined() -> None:
    assert merge_intervals([(at(0), at(6)), (at(4), at(9)), (at(1), at(2))]) == [(at(0), at(9))]


def test_unsorted_input_gives_sorted_disjoint_output() -> None:
    got = merge_intervals([(at(30), at(40)), (at(0), at(5)), (at(10), at(20)), (at(3), at(8))])
    assert got == [(at(0), at(8)), (at(10), at(20)), (at(30), at(40))]


def test_gaps_are_kept_and_empty_intervals_dropped() -> None:
    got = merge_intervals([(at(0), at(1)), (at(2), at(3)), (at(5), at(5)), (at(9), at(7))])
    assert got == [(at(0), at(1)), (at(2), at(3))]


def test_dates_merge_like_instants() -> None:
    days = [(date(2024, 3, 5), date(2024, 3, 6)), (date(2024, 3, 4), date(2024, 3, 5)),
            (date(2024, 3, 8), date(2024, 3, 9))]
    assert merge_intervals(days) == [(date(2024, 3, 4), date(2024, 3, 6)),
                                     (date(2024, 3, 8), date(2024, 3, 9))]


def test_window_starts_become_ranges() -> None:
    five = Timeframe.parse("5m")
    starts = [at(10), at(0), at(5), at(5), at(30)]
    assert merge_ranges(starts, five) == [(at(0), at(15)), (at(30), at(35))]
    assert merge_ranges([], five) == []


def test_coarsen_closes_the_smallest_gaps_first() -> None:
    ranges = [(at(0), at(1)), (at(2), at(3)), (at(10), at(11)), (at(11), at(12))]
    assert coarsen(ranges, 10) == [(at(0), at(1)), (at(2), at(3)), (at(10), at(12))]
    assert coarsen(ranges, 2) == [(at(0), at(3)), (at(10), at(12))]
    assert coarsen(ranges, 1) == [(at(0), at(12))]


def test_naive_instants_are_utc() -> None:
    assert as_utc(datetime(2024, 3, 4)) == T0
    assert to_micros(datetime(1970, 1, 1, 0, 0, 1)) == 1_000_000
    assert to_micros(T0 - timedelta(microseconds=1)) == to_micros(T0) - 1
