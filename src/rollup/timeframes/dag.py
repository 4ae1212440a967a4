"""The timeframe DAG: which level builds from which, and the per-level policy as data.

Nothing here imports pyspark: a DAG is validated before any SparkSession exists.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from datetime import timedelta
from graphlib import CycleError, TopologicalSorter
from typing import Any, Literal

import attrs

from rollup.errors import TimeframeError
from rollup.timeframes.timeframe import Timeframe

TRADES = "trades"
"""Name of the root of every DAG: the trades table."""

WriteMode = Literal["merge", "overwrite"]
Partitioning = Literal["days", "months"]

_TABLE_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,127}$")
_CRON_FIELD = re.compile(r"^[0-9*/,\-]+$")


def _to_timeframe(value: str | Timeframe) -> Timeframe:
    return Timeframe.parse(value)


def _to_parent(value: str | Timeframe | None) -> Timeframe | None:
    return None if value is None else Timeframe.parse(value)


def _to_levels(items: Iterable[Level]) -> tuple[Level, ...]:
    return tuple(items)


def _check_table_name(_: object, attribute: attrs.Attribute[str], value: str) -> None:
    if not _TABLE_NAME.match(value):
        raise TimeframeError(
            f"invalid table name {value!r}: expected lower-case letters, digits and underscores"
        )


def is_cron(value: str) -> bool:
    """True when `value` is a five-field cron string (the one cron rule of rollup)."""
    fields = value.split()
    return len(fields) == 5 and all(_CRON_FIELD.match(f) for f in fields)


def _check_cron(_: object, attribute: attrs.Attribute[str | None], value: str | None) -> None:
    if value is not None and not is_cron(value):
        raise TimeframeError(
            f"invalid cron schedule {value!r}: expected five fields like '*/5 * * * *'")


@attrs.frozen
class Level:
    """One bar table of the DAG and its policy.

    Args:
        timeframe: the bar duration of this level.
        parent: the finer timeframe this level is built from, or None for the trades.
        table: the Iceberg table name (default `bars_<timeframe.identifier>`: `bars_5m`,
            `bars_1d_america_new_york`, `bars_1mo`).
        partitioning: `days` or `months` of `window_date`.
        write_mode: `merge` (MERGE INTO changed windows) or `overwrite` (replace whole partitions).
        retention: how long bars are kept (None keeps them forever).
        schedule: a five-field UTC cron string for orchestration.
    """

    timeframe: Timeframe = attrs.field(converter=_to_timeframe)
    parent: Timeframe | None = attrs.field(default=None, converter=_to_parent)
    table: str = attrs.field(validator=_check_table_name)
    partitioning: Partitioning = attrs.field(validator=attrs.validators.in_(("days", "months")))
    write_mode: WriteMode = attrs.field(validator=attrs.validators.in_(("merge", "overwrite")))
    retention: timedelta | None = attrs.field(default=None)
    schedule: str | None = attrs.field(default=None, validator=_check_cron)

    @table.default
    def _default_table(self) -> str:
        return f"bars_{self.timeframe.identifier}"

    @partitioning.default
    def _default_partitioning(self) -> Partitioning:
        return "months" if self.timeframe.nominal_seconds >= 86_400 else "days"

    @write_mode.default
    def _default_write_mode(self) -> WriteMode:
        return "merge" if self.timeframe.nominal_seconds < 1_800 else "overwrite"

    def __attrs_post_init__(self) -> None:
        if self.parent is not None:
            self.parent.check_can_build(self.timeframe)
        if self.retention is not None and self.retention <= timedelta(0):
            raise TimeframeError(
                f"invalid retention {self.retention} for {self.name}: expected a positive duration"
            )

    @property
    def name(self) -> str:
        return self.timeframe.name

    @property
    def parent_name(self) -> str:
        return self.parent.name if self.parent is not None else TRADES

    @property
    def is_calendar(self) -> bool:
        """True for a zoned, session or month level (see `Timeframe.is_calendar`)."""
        return self.timeframe.is_calendar


def _standard_levels() -> tuple[Level, ...]:
    day = timedelta(days=1)
    return (
        Level("1m", None, retention=90 * day, schedule="*/5 * * * *"),
        Level("5m", "1m", retention=180 * day, schedule="5,20,35,50 * * * *"),
        Level("30m", "5m", retention=365 * day, schedule="10,40 * * * *"),
        Level("1h", "30m", retention=3 * 365 * day, schedule="15 * * * *"),
        Level("1d", "1h", retention=5 * 365 * day, schedule="5 0 * * *"),
    )


@attrs.frozen
class Dag:
    """A validated DAG of levels rooted at the trades.

    Every level names its parent; the root level(s) have no parent and build from trades.
    `Dag.standard()` is trades -> 1m -> 5m -> 30m -> 1h -> 1d; `dag.add("15m", parent="5m")`
    returns a new DAG with one more level.
    """

    levels: tuple[Level, ...] = attrs.field(converter=_to_levels)

    def __attrs_post_init__(self) -> None:
        seen: dict[str, Level] = {}
        tables: dict[str, str] = {}
        for level in self.levels:
            if level.name in seen:
                raise TimeframeError(f"duplicate timeframe {level.name!r} in the DAG")
            if level.table in tables:
                raise TimeframeError(
                    f"levels {tables[level.table]} and {level.name} share the table {level.table!r}"
                )
            seen[level.name] = level
            tables[level.table] = level.name
        for level in self.levels:
            if level.parent is not None and level.parent.name not in seen:
                raise TimeframeError(
                    f"timeframe {level.name} names the unknown parent {level.parent.name!r}; "
                    f"known: {', '.join(seen) or 'none'}"
                )
        try:
            self.order()
        except CycleError as exc:  # unreachable with 'finer parent' rule, kept as a guard
            raise TimeframeError(f"the DAG has a cycle through {exc.args[1]}") from exc

    @classmethod
    def standard(cls) -> Dag:
        return cls(_standard_levels())

    @classmethod
    def from_spec(cls, spec: Mapping[str, str | None]) -> Dag:
        """Build a DAG from `{"1m": None, "5m": "1m", ...}` (child -> parent, None for trades)."""
        standard = {level.name: level for level in _standard_levels()}
        levels = []
        for name, parent in spec.items():
            tf = Timeframe.parse(name)
            base = standard.get(tf.name)
            parent_tf = Timeframe.parse(parent) if parent not in (None, TRADES) else None
            if base is not None:
                levels.append(attrs.evolve(base, parent=parent_tf))
            else:
                levels.append(Level(tf, parent_tf))
        return cls(tuple(levels))

    def add(
        self, timeframe: str | Timeframe, parent: str | Timeframe | None, **policy: Any
    ) -> Dag:
        """Return a new DAG with one more level built from `parent` (None for trades)."""
        return Dag((*self.levels, Level(timeframe, parent, **policy)))

    def replace(self, name: str | Timeframe, **changes: Any) -> Dag:
        """Return a new DAG with the policy of one level changed (e.g. retention, schedule)."""
        target = self.level(name)
        return Dag(tuple(attrs.evolve(lv, **changes) if lv is target else lv for lv in self.levels))

    def level(self, name: str | Timeframe) -> Level:
        key = Timeframe.parse(name).name
        for level in self.levels:
            if level.name == key:
                return level
        raise TimeframeError(
            f"unknown timeframe {key!r}: this DAG has {', '.join(lv.name for lv in self.levels)}"
        )

    def order(self) -> list[Level]:
        """Levels in build order (parents before children; ties by timeframe size)."""
        by_name = {lv.name: lv for lv in self.levels}
        sorter: TopologicalSorter[str] = TopologicalSorter()
        for lv in sorted(self.levels, key=lambda lv: lv.timeframe.nominal_seconds):
            sorter.add(lv.name, *([lv.parent.name] if lv.parent is not None else []))
        return [by_name[name] for name in sorter.static_order()]

    def children(self, name: str | Timeframe) -> list[Level]:
        key = Timeframe.parse(name).name
        return [lv for lv in self.order() if lv.parent is not None and lv.parent.name == key]

    def ancestors(self, name: str | Timeframe) -> list[Level]:
        """The chain from the root level down to (and including) `name`."""
        chain = [self.level(name)]
        while chain[-1].parent is not None:
            chain.append(self.level(chain[-1].parent))
        return chain[::-1]

    def up_to(self, name: str | Timeframe) -> list[Level]:
        """The levels needed to build `name`, in build order."""
        needed = {lv.name for lv in self.ancestors(name)}
        return [lv for lv in self.order() if lv.name in needed]

    def descendants(self, name: str | Timeframe) -> list[Level]:
        """`name` and every level built from it, directly or not, in build order."""
        keep = {Timeframe.parse(name).name}
        result = []
        for lv in self.order():
            if lv.name in keep or (lv.parent is not None and lv.parent.name in keep):
                keep.add(lv.name)
                result.append(lv)
        return result

    def names(self) -> list[str]:
        return [lv.name for lv in self.order()]

    def __iter__(self) -> Iterator[Level]:
        return iter(self.order())

    def __len__(self) -> int:
        return len(self.levels)


def parse_dag(items: Iterable[str]) -> Dag:
    """Parse `["1m", "5m<1m", "15m<5m"]` (child<parent) into a DAG; used by config files."""
    spec: dict[str, str | None] = {}
    for item in items:
        child, _, parent = item.partition("<")
        spec[child.strip()] = parent.strip() or None
    return Dag.from_spec(spec)
