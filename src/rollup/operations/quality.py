"""Data quality: invariant checks per timeframe, each a Spark aggregation over the whole table.

The checks (see docs/quality.md) are `CHECKS`, a tuple of functions of one signature:
`check(context: CheckContext) -> CheckResult`, named `check_<name>` (`price`, `vwap`,
`volume`, `alignment`, `unique`, `reconcile` and `freshness`). `run_checks` builds a context per
level and applies them in that order. A result holds the number of violations and up to ten
offending keys (exchange, symbol, window_start). Nothing collects a table to the driver: each
check is one aggregation (the four row checks share one, counted once per context), plus one
small `limit(10)` query for the samples of a failed check.

Zero-volume bars are legitimate: rollup keeps zero-quantity trades (real feeds have them), so a
bar whose trades all had quantity 0 has volume 0, quote_volume 0 and a null vwap. The `volume`
check therefore asks volume >= 0 and trade_count > 0, and the `vwap` check asks vwap within
[low, high] when volume > 0 and vwap null exactly when volume = 0.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

import attrs
from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from rollup.incremental.retention import combine_horizon, retained_from
from rollup.specs.bar import COMBINED_COLUMNS, KEY_COLUMNS
from rollup.specs.times import as_utc, from_spark, iso, parse_instant
from rollup.storage import state
from rollup.storage.tables import Tables
from rollup.timeframes import Level, Timeframe
from rollup.transforms.bars import Rollup, window_start_micros
from rollup.transforms.windows import grid_span_micros, with_window

RECONCILED = COMBINED_COLUMNS
SAMPLES = 10
_MICROS_PER_DAY = 86_400_000_000

Key = tuple[str, str, datetime]
"""(exchange, symbol, window_start) of an offending bar."""


@attrs.frozen
class CheckResult:
    """The outcome of one check on one timeframe.

    `samples` holds up to ten offending keys in key order; `detail` explains in one line.
    """

    timeframe: str
    check: str
    passed: bool
    violations: int
    samples: tuple[Key, ...] = ()
    detail: str = ""

    def as_json(self) -> dict[str, Any]:
        return {
            "timeframe": self.timeframe, "check": self.check, "passed": self.passed,
            "violations": self.violations,
            "samples": [{"exchange": e, "symbol": s, "window_start": iso(w)}
                        for e, s, w in self.samples],
            "detail": self.detail,
        }


# ---------------------------------------------------------------------------------------------
# Row invariants: each a Column that is True for an offending bar (nulls count as offending)


def _bad(ok: Column) -> Column:
    return ~F.coalesce(ok, F.lit(False))


def price_violation() -> Column:
    """high >= max(open, close) and low <= min(open, close)."""
    return _bad((F.col("high") >= F.greatest("open", "close"))
                & (F.col("low") <= F.least("open", "close")))


def vwap_violation() -> Column:
    """low <= vwap <= high when volume > 0, else vwap null (a bad volume is `volume`'s)."""
    in_range = F.col("vwap").between(F.col("low"), F.col("high"))
    return _bad(F.when(F.col("volume") > 0, in_range).otherwise(F.col("vwap").isNull()))


def volume_violation() -> Column:
    """volume >= 0, quote_volume >= 0 and trade_count > 0 (zero-quantity trades are allowed)."""
    return _bad((F.col("volume") >= 0) & (F.col("quote_volume") >= 0)
                & (F.col("trade_count") > 0))


def alignment_violation(tf: Timeframe) -> Column:
    """window_end - window_start = tf, window_start on the tf grid, window_date its UTC date.

    For a calendar `tf` the bars must first pass through `with_calendar_windows`: then
    window_start must be a window start of the calendar, window_end the next window's start
    and window_date the window's label.
    """
    start = F.unix_micros(F.col("window_start"))
    if tf.is_calendar:
        return _bad((F.col("_cw_start") == start)
                    & (F.col("_cw_end") == F.unix_micros(F.col("window_end")))
                    & (F.col("window_date") == F.col("_cw_date")))
    utc_date = F.date_from_unix_date(F.floor(start / F.lit(_MICROS_PER_DAY)).cast("int"))
    return _bad((F.unix_micros(F.col("window_end")) - start == F.lit(tf.micros))
                & (window_start_micros(start, tf) == start)
                & (F.col("window_date") == utc_date))


def with_calendar_windows(bars: DataFrame, tf: Timeframe) -> DataFrame:
    """`bars` plus the calendar window (`_cw_start`, `_cw_end`, `_cw_date`) holding each
    window_start, which `alignment_violation` compares; `bars` unchanged for a fixed `tf`.

    A window_start outside the calendar's grid is looked up as the grid's first instant, so
    it is reported as misaligned instead of failing the whole check.
    """
    if not tf.is_calendar:
        return bars
    first, last = grid_span_micros(tf)
    start = F.unix_micros(F.col("window_start"))
    inside = start.isNotNull() & (start >= F.lit(first)) & (start < F.lit(last))
    return with_window(bars, F.when(inside, start).otherwise(F.lit(first)), tf,
                       what="window_start")


def row_violations(tf: Timeframe) -> dict[str, Column]:
    return {
        "price": price_violation(),
        "vwap": vwap_violation(),
        "volume": volume_violation(),
        "alignment": alignment_violation(tf),
    }


_ROW_DETAIL = {
    "price": "high >= max(open, close) and low <= min(open, close)",
    "vwap": "low <= vwap <= high when volume > 0, vwap null when volume = 0",
    "volume": "volume >= 0, quote_volume >= 0 and trade_count > 0",
    "alignment": "window_end - window_start = {tf}, window_start aligned, window_date = UTC date",
}
_CALENDAR_ALIGNMENT = ("window_start a {tf} window start, window_end the next window's start, "
                       "window_date its label")


def _samples(df: DataFrame) -> tuple[Key, ...]:
    rows = df.select(*KEY_COLUMNS).distinct().orderBy(*KEY_COLUMNS).limit(SAMPLES).collect()
    return tuple((r.exchange, r.symbol, from_spark(r.window_start)) for r in rows)


@attrs.frozen
class CheckContext:
    """What every check of one level looks at: its bars (from `since`, when given), the
    tables, and the limits and clock of the freshness check."""

    tables: Tables = attrs.field(eq=False, repr=False)
    level: Level
    bars: DataFrame = attrs.field(eq=False, repr=False)
    since: datetime | None = None
    freshness: Freshness | None = None
    """The level's freshness (`freshness`); computed by the check when None."""
    max_age: timedelta | None = None
    max_lag: timedelta | None = None
    now: datetime = attrs.field(factory=lambda: datetime.now(UTC))
    _row_counts: dict[str, int] = attrs.field(factory=dict, init=False, eq=False, repr=False)

    @property
    def checked_bars(self) -> DataFrame:
        """The bars the row invariants look at (with their calendar windows, if any)."""
        return with_calendar_windows(self.bars, self.level.timeframe)

    def row_count(self, name: str) -> int:
        """Bars breaking row invariant `name`; the first call counts every row invariant in
        one aggregation."""
        if not self._row_counts:
            flags = row_violations(self.level.timeframe)
            counts = self.checked_bars.agg(
                *[F.count_if(flag).alias(n) for n, flag in flags.items()]).first()
            self._row_counts.update(
                {n: int(counts[n] or 0) if counts is not None else 0 for n in flags})
        return self._row_counts[name]


Check = Callable[[CheckContext], CheckResult]
"""A quality check: one level's context in, one result out."""


def _row_check(ctx: CheckContext, name: str) -> CheckResult:
    n = ctx.row_count(name)
    tf = ctx.level.timeframe
    flag = row_violations(tf)[name]
    detail = _CALENDAR_ALIGNMENT if name == "alignment" and tf.is_calendar else _ROW_DETAIL[name]
    return CheckResult(ctx.level.name, name, n == 0, n,
                       _samples(ctx.checked_bars.where(flag)) if n else (),
                       detail.format(tf=ctx.level.name))


def check_price(ctx: CheckContext) -> CheckResult:
    """high >= max(open, close) and low <= min(open, close)."""
    return _row_check(ctx, "price")


def check_vwap(ctx: CheckContext) -> CheckResult:
    """low <= vwap <= high when volume > 0, else vwap null."""
    return _row_check(ctx, "vwap")


def check_volume(ctx: CheckContext) -> CheckResult:
    """volume >= 0, quote_volume >= 0 and trade_count > 0."""
    return _row_check(ctx, "volume")


def check_alignment(ctx: CheckContext) -> CheckResult:
    """Window length, grid and date."""
    return _row_check(ctx, "alignment")


def check_unique(ctx: CheckContext) -> CheckResult:
    """One bar per (exchange, symbol, window_start)."""
    dupes = ctx.bars.groupBy(*KEY_COLUMNS).agg(F.count(F.lit(1)).alias("n")).where(
        F.col("n") > 1)
    row = dupes.agg(F.count(F.lit(1)).alias("keys"), F.sum("n").alias("rows")).first()
    keys = int(row["keys"] or 0) if row is not None else 0
    rows = int(row["rows"] or 0) if row is not None else 0
    detail = f"{keys} keys held by {rows} rows" if keys else "one bar per key"
    return CheckResult(ctx.level.name, "unique", keys == 0, keys,
                       _samples(dupes) if keys else (), detail)


# ---------------------------------------------------------------------------------------------
# Cross-level reconciliation


def _parent_rows(
    tables: Tables, level: Level, snapshot: int | None
) -> tuple[DataFrame, str, bool]:
    """The parent rows as of `snapshot` (None: current), a description, and whether the
    snapshot could be read (False when it expired and the current rows are used instead)."""
    spark = tables.spark
    name = tables.parent_of(level)
    raw = spark.table(name)
    how, exact = "current parent", True
    if snapshot is not None and snapshot != state.current_snapshot(spark, name):
        try:
            raw = spark.read.option("snapshot-id", str(int(snapshot))).table(name)
            raw.schema  # noqa: B018 - resolve now so a missing snapshot fails here
            how = f"parent at the consumed snapshot {snapshot}"
        except Exception:  # noqa: BLE001 - an expired snapshot: fall back to the current rows
            raw = spark.table(name)
            how, exact = f"current parent (consumed snapshot {snapshot} is gone)", False
    elif snapshot is not None:
        how = f"parent at the consumed snapshot {snapshot}"
    if level.parent is None:
        raw = tables.canonical_trades(raw)
    return raw, how, exact


def check_horizon(tables: Tables, level: Level) -> datetime | None:
    """First window start the reconciliation covers: earlier ones lost children to retention."""
    own = retained_from(tables.spark, tables.bars(level))
    parent = retained_from(tables.spark, tables.parent_of(level))
    return combine_horizon(level, own, parent, whole_partitions=False)


def _expected(
    parent: DataFrame, level: Level, bound: datetime | None, prefix: str
) -> DataFrame:
    """The bars the children give (windows from `bound`), value columns prefixed."""
    if bound is not None:
        time_col = "ts" if level.parent is None else "window_start"
        parent = parent.where(F.col(time_col) >= F.lit(bound))
    return Rollup(level).plan(parent).select(
        *KEY_COLUMNS, *[F.col(c).alias(f"{prefix}_{c}") for c in RECONCILED],
        F.lit(True).alias(f"{prefix}_present"))


def _matches(prefix: str) -> Column:
    cond = F.col(f"{prefix}_present").isNotNull()
    for c in RECONCILED:
        cond = cond & F.col(f"{prefix}_{c}").eqNullSafe(F.col(f"a_{c}"))
    return cond


def check_reconcile(ctx: CheckContext) -> CheckResult:
    """Every bar equals the combination of its children; no child lacks its bar.

    While the level has parent changes still to consume, a bar may equal the combination of
    its children either in the parent snapshot it last consumed or in the current parent
    (after a backfill), and windows that exist in only one of the two are not reported: the
    freshness check reports pending input. Windows before the retention horizon (whose
    children were deleted) are not compared.
    """
    tables, level, since = ctx.tables, ctx.level, ctx.since
    spark = tables.spark
    bounds = [b for b in (check_horizon(tables, level), since) if b is not None]
    bound = max(bounds) if bounds else None
    actual = ctx.bars
    if bound is not None:
        window = level.timeframe.window(bound)  # fixed or calendar: its start and the next
        bound = window.start
        if since is not None and bound < since:  # a window straddling `since`: skip it
            bound = window.end
        actual = actual.where(F.col("window_start") >= F.lit(bound))
    current_rows, _, _ = _parent_rows(tables, level, None)
    now = _expected(current_rows, level, bound, "n")
    position = state.position(spark, tables.bars(level), tables.parent_of(level))
    scope = f"vs {level.parent_name}"
    expected: DataFrame | None = None
    if position is not None and position != state.current_snapshot(
            spark, tables.parent_of(level)):
        rows, how, exact = _parent_rows(tables, level, position)
        if exact:
            then = _expected(rows, level, bound, "t")
            expected = now.join(then, list(KEY_COLUMNS), "full_outer")
            scope += f" (current, or {how})"
    if expected is None:
        expected = now.select("*", *[F.col(f"n_{c}").alias(f"t_{c}") for c in RECONCILED],
                              F.col("n_present").alias("t_present"))
    a = actual.select(*KEY_COLUMNS, *[F.col(c).alias(f"a_{c}") for c in RECONCILED],
                      F.lit(True).alias("a_present"))
    has_bar = F.col("a_present").isNotNull()
    in_now, in_then = F.col("n_present").isNotNull(), F.col("t_present").isNotNull()
    kind = (F.when(~has_bar & in_now & in_then, "orphan")
            .when(has_bar & ~in_now & ~in_then, "childless")
            .when(has_bar & ~(_matches("n") | _matches("t")), "mismatch"))
    bad = (expected.join(a, list(KEY_COLUMNS), "full_outer")
           .select(*KEY_COLUMNS, kind.alias("kind")).where(F.col("kind").isNotNull()))
    by_kind = {r.kind: int(r.n) for r in
               bad.groupBy("kind").agg(F.count_distinct(*KEY_COLUMNS).alias("n")).collect()}
    total = sum(by_kind.values())
    if bound is not None:
        scope += f", windows from {iso(bound)}"
    counts = ", ".join(f"{by_kind.get(k, 0)} {label}" for k, label in (
        ("mismatch", "bars differ from their children"),
        ("orphan", "windows with children but no bar"),
        ("childless", "bars without children")))
    return CheckResult(level.name, "reconcile", total == 0, total,
                       _samples(bad) if total else (), f"{scope}: {counts}")


# ---------------------------------------------------------------------------------------------
# Freshness


@attrs.frozen
class Freshness:
    """How far a level is behind: in data time (parent, trades) and, optionally, wall time."""

    level: str
    pending: bool
    parent_newest: datetime | None
    consumed: datetime | None
    reflected: datetime | None
    newest_trade: datetime | None

    @property
    def lag_parent(self) -> timedelta | None:
        if self.parent_newest is None or self.consumed is None:
            return None
        return max(self.parent_newest - self.consumed, timedelta(0))

    @property
    def lag_trades(self) -> timedelta | None:
        if self.newest_trade is None or self.reflected is None:
            return None
        return max(self.newest_trade - self.reflected, timedelta(0))

    def age(self, now: datetime) -> timedelta | None:
        return None if self.reflected is None else max(now - self.reflected, timedelta(0))


def _newest(df: DataFrame, col: str) -> datetime | None:
    row = df.agg(F.max(col)).first()
    return from_spark(row[0]) if row is not None and row[0] is not None else None


def freshness(tables: Tables, levels: Sequence[Level]) -> dict[str, Freshness]:
    """Per level: newest parent time consumed vs stored, and the newest trade it reflects.

    `consumed` is the newest parent time (trade ts, or bar window_end) in the parent snapshot
    the level last consumed; `reflected` the newest trade time that reached the level through
    the chain (bounded by every ancestor's `consumed`).
    """
    spark = tables.spark
    needed = {lv.name for level in levels for lv in tables.dag.ancestors(level.name)}
    newest_trade = _newest(tables.canonical_trades(), "ts")
    out: dict[str, Freshness] = {}
    for level in tables.dag.order():
        if level.name not in needed:
            continue
        parent_name = tables.parent_of(level)
        time_col = "ts" if level.parent is None else "window_end"
        current_rows, _, _ = _parent_rows(tables, level, None)
        parent_newest = _newest(current_rows, time_col)
        position = state.position(spark, tables.bars(level), parent_name)
        current = state.current_snapshot(spark, parent_name)
        consumed: datetime | None = None
        if position is not None:
            if position == current:
                consumed = parent_newest
            else:
                rows, _, exact = _parent_rows(tables, level, position)
                consumed = _newest(rows, time_col) if exact else None
        reflected = consumed
        if level.parent is not None and consumed is not None:
            upstream = out[level.parent.name].reflected
            reflected = min(consumed, upstream) if upstream is not None else None
        out[level.name] = Freshness(
            level.name, position != current, parent_newest, consumed, reflected, newest_trade)
    return out


def _duration(value: timedelta | None) -> str:
    if value is None:
        return "unknown"
    seconds = int(value.total_seconds())
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7_200:
        return f"{seconds // 60}m"
    if seconds < 172_800:
        return f"{seconds // 3600}h"
    return f"{seconds // 86_400}d"


def check_freshness(ctx: CheckContext) -> CheckResult:
    """Lag behind the parent and the newest trade; fails only past the configured limits."""
    info = ctx.freshness or freshness(ctx.tables, [ctx.level])[ctx.level.name]
    return freshness_result(info, max_age=ctx.max_age, max_lag=ctx.max_lag, now=ctx.now)


def freshness_result(
    info: Freshness, *, max_age: timedelta | None, max_lag: timedelta | None, now: datetime
) -> CheckResult:
    """The freshness check's verdict on a level's `Freshness` against the limits at `now`."""
    problems = []
    if max_lag is not None and (info.lag_trades is None or info.lag_trades > max_lag):
        problems.append(f"lag behind trades over {_duration(max_lag)}")
    age = info.age(now)
    if max_age is not None and (age is None or age > max_age):
        problems.append(f"age over {_duration(max_age)}")
    detail = (f"behind parent {_duration(info.lag_parent)}, behind newest trade "
              f"{_duration(info.lag_trades)}, pending input: {'yes' if info.pending else 'no'}")
    if max_age is not None:
        detail += f", age {_duration(age)}"
    if problems:
        detail += " (" + "; ".join(problems) + ")"
    return CheckResult(info.level, "freshness", not problems, 1 if problems else 0, (), detail)


# ---------------------------------------------------------------------------------------------
# Entry point


CHECKS: tuple[Check, ...] = (
    check_price, check_vwap, check_volume, check_alignment, check_unique, check_reconcile,
    check_freshness,
)
"""Every check, in the order `run_checks` reports them."""


def check_name(check: Check) -> str:
    """A check's name: its function's name without `check_` (e.g. 'price')."""
    return check.__name__.removeprefix("check_")


NAMES: tuple[str, ...] = tuple(check_name(c) for c in CHECKS)


def run_checks(
    tables: Tables,
    timeframes: Sequence[str] | None = None,
    since: datetime | date | str | None = None,
    max_age: timedelta | None = None,
    *,
    max_lag: timedelta | None = None,
    now: datetime | None = None,
    checks: Sequence[str] = NAMES,
) -> list[CheckResult]:
    """Run the quality checks on the given timeframes (default all), in DAG order.

    Args:
        tables: the tables to check.
        timeframes: names such as ["1m", "1h"]; None for every level.
        since: only bars with window_start >= since (ISO text, date or datetime).
        max_age: fail freshness when the newest trade a level reflects is older than this
            against the wall clock (`now`); None (default) never looks at the wall clock.
        max_lag: fail freshness when a level is this far behind the newest trade.
        now: the wall clock for `max_age` (default: now, UTC).
        checks: names of the checks to run (a subset of NAMES).

    Raises:
        TimeframeError: an unknown timeframe.
        InputError: an unparsable `since` or an unknown check name.
    """
    from rollup.errors import InputError

    unknown = [c for c in checks if c not in NAMES]
    if unknown:
        raise InputError(f"unknown check {unknown[0]!r}: expected one of {', '.join(NAMES)}")
    start = parse_instant(since, "since") if since is not None else None
    clock = as_utc(now) if now is not None else datetime.now(UTC)
    chosen = {tables.dag.level(tf).name for tf in timeframes} if timeframes else None
    levels = [lv for lv in tables.dag.order() if chosen is None or lv.name in chosen]
    selected = [c for c in CHECKS if check_name(c) in checks]
    fresh = freshness(tables, levels) if check_freshness in selected else {}
    results: list[CheckResult] = []
    for level in levels:
        bars = tables.read_bars(level)
        if start is not None:
            bars = bars.where(F.col("window_start") >= F.lit(start))
        context = CheckContext(tables, level, bars, start, fresh.get(level.name), max_age,
                               max_lag, clock)
        results += [check(context) for check in selected]
    return results


def summary(results: Sequence[CheckResult]) -> str:
    failed = [r for r in results if not r.passed]
    if not failed:
        return f"all {len(results)} checks passed"
    return (f"{len(failed)} of {len(results)} checks failed: "
            + ", ".join(f"{r.timeframe} {r.check}" for r in failed))
