"""Trade sources: read an existing trades table with other column names or time encodings.

rollup's own `trades` table already has the canonical columns. An external Iceberg table can
be used instead by naming it and mapping its columns, e.g. the seed's table whose time is a
BIGINT of microseconds in a column called `timestamp`::

    [source]
    table = "lake.market_data.raw_trades"     # catalog.namespace.table
    time_unit = "us"                          # the time column holds epoch numbers
    dedupe = true                             # the feed may deliver a trade twice

Rows of the source go through the same validation as `rollup ingest`: invalid rows are left
out of the bars and quarantined in `trades_rejected` with their reason when a run first reads
the file that holds them.

    [source.columns]                          # canonical = source column
    ts = "timestamp"
    trade_id = "id"
    quantity = "size"

A run that recomputes some windows filters the source on its own time column *before*
renaming and validation (`time_filter`), so Iceberg prunes files. With `dedupe`, the other
deliveries of the trades read are looked up over the whole source by key (`deliveries`), so a
delivery outside the windows still decides which one counts (`canonical_in`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import attrs

from rollup.errors import ConfigError
from rollup.specs.bar import FEED_NAMES, REQUIRED_TRADE_COLUMNS, TRADE_KEY
from rollup.specs.identifiers import check_identifier, qualified
from rollup.specs.times import from_micros, to_micros
from rollup.specs.trade_ids import TradeIds

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame
    from pyspark.sql.types import DataType

_UNIT_MICROS = {"s": 1_000_000, "ms": 1_000, "us": 1}
_DAY_MICROS = 86_400_000_000

Bound = tuple[datetime | None, datetime | None]
"""A half-open UTC interval [start, end); None leaves that side open."""

LOCAL_DELIVERIES = 10_000
"""Other deliveries found by a window recompute are located by time up to this many (more: by
a join over the source)."""

MAX_ID_GROUPS = 10_000
"""(exchange, symbol, day) groups whose trade id ranges are collected for the id pre-filter."""


def _check_columns(_: object, __: object, value: Mapping[str, str]) -> None:
    for canonical, column in value.items():
        if canonical not in FEED_NAMES:
            raise ConfigError(
                f"unknown trade column {canonical!r} in the source mapping: expected one of "
                f"{', '.join(FEED_NAMES)}"
            )
        check_identifier(column, f"source column for {canonical}")


@attrs.frozen
class TradeSource:
    """An Iceberg table of trades and how its columns map onto rollup's canonical ones."""

    table: tuple[str, str, str]
    columns: Mapping[str, str] = attrs.field(factory=dict, validator=_check_columns)
    time_unit: str | None = attrs.field(
        default=None, validator=attrs.validators.optional(attrs.validators.in_(
            (*_UNIT_MICROS, "ns"))))
    dedupe: bool = False
    trade_ids: TradeIds = attrs.field(factory=TradeIds)
    """How the table's trade ids become keys (`rollup.specs.trade_ids`); `none` is for files
    only."""

    def __attrs_post_init__(self) -> None:
        for part in self.table:
            check_identifier(part, "source table name part")
        if self.trade_ids.scheme == "none":
            raise ConfigError("invalid trade_ids 'none' in [source]: an external table needs "
                              "an id column (integer, string or daily ids); files without "
                              "ids can be ingested with rollup ingest --trade-ids none")

    @classmethod
    def from_config(cls, section: Mapping[str, Any]) -> TradeSource:
        name = section.get("table")
        parts = tuple(str(name).split(".")) if name else ()
        if len(parts) != 3:
            raise ConfigError(
                f"invalid source table {name!r}: expected catalog.namespace.table")
        return cls(parts, dict(section.get("columns") or {}),
                   section.get("time_unit"), bool(section.get("dedupe", False)),
                   TradeIds.from_config(section))

    @property
    def name(self) -> str:
        return qualified(*self.table)

    def column(self, canonical: str) -> str:
        return self.columns.get(canonical, canonical)

    def _require(self, df: DataFrame, columns: Sequence[str] = REQUIRED_TRADE_COLUMNS) -> None:
        missing = [self.column(c) for c in columns if self.column(c) not in df.columns]
        if missing:
            raise ConfigError(
                f"source table {'.'.join(self.table)} has no column(s) {', '.join(missing)}; "
                f"it has {', '.join(df.columns)}")

    def _renamed(self, df: DataFrame) -> DataFrame:
        from pyspark.sql import functions as F

        self._require(df)
        side = self.column("side")
        return df.select(
            *[F.col(self.column(c)).alias(c) for c in REQUIRED_TRADE_COLUMNS],
            (F.col(side) if side in df.columns else F.lit(None).cast("string")).alias("side"),
            *[c for c in df.columns if c == "_file"],
        )

    def validated(self, df: DataFrame) -> DataFrame:
        """Source rows through rollup's trade validation (`reason` null for good rows)."""
        from rollup.transforms.validate import validate_trades

        return validate_trades(self._renamed(df), time_unit=self.time_unit,
                               trade_ids=self.trade_ids)

    def to_canonical(self, df: DataFrame, *, dedupe: bool | None = None) -> DataFrame:
        """The valid source rows as exchange, symbol, trade_id, ts, price, quantity.

        Rows that fail validation (see docs/input.md) are left out here and quarantined by
        the run that first reads them (`rejected`).
        """
        from rollup.transforms.validate import canonical

        out = canonical(self.validated(df))
        if self.dedupe if dedupe is None else dedupe:
            out = dedupe_trades(out)
        return out

    def time_filter(self, df: DataFrame, spans: Sequence[Bound]) -> Column | None:
        """A filter on the source's own time column keeping every row whose time falls in
        `spans` (a superset where the unit is coarser than a microsecond).

        Iceberg prunes files and partitions with it. None when the column's type cannot be
        compared exactly (strings, floats; epoch numbers without `time_unit`): nothing pruned.
        """
        from pyspark.sql import functions as F

        from rollup.transforms.bars import any_of

        name = self.column("ts")
        kind = _column_type(df, name)
        if kind is None or not _comparable(kind, self.time_unit):
            return None
        column = F.col(name)
        terms = []
        for lo, hi in spans:
            low = _time_literal(lo, kind, self.time_unit, up=False)
            high = _time_literal(hi, kind, self.time_unit, up=True)
            if low is _EMPTY or high is _EMPTY:
                continue
            sides = [column >= low.column] if isinstance(low, _Literal) else []
            sides += [column < high.column] if isinstance(high, _Literal) else []
            terms.append(sides[0] & sides[1] if len(sides) == 2
                         else sides[0] if sides else F.lit(True))
        return any_of(terms)

    def _probe(self, df: DataFrame) -> DataFrame:
        """exchange, symbol, trade_id, ts of the rows valid in those four columns (price and
        quantity unchecked): a cheap superset of the valid rows, reading only those columns."""
        from pyspark.sql import functions as F

        from rollup.transforms.validate import canonical, validate_trades

        self._require(df, (*TRADE_KEY, "ts"))
        probe = df.select(*[F.col(self.column(c)).alias(c) for c in (*TRADE_KEY, "ts")],
                          F.lit("1").alias("price"), F.lit("1").alias("quantity"))
        return canonical(validate_trades(probe, time_unit=self.time_unit,
                                         trade_ids=self.trade_ids)).select(*TRADE_KEY, "ts")

    def id_filter(self, rows: DataFrame) -> Column | None:
        """A filter on the source's own trade id column keeping every id of `rows` (a few
        merged ranges, computed by a Spark job); None when the column is not an integer or a
        decimal, whose values equal their canonical trade id."""
        from pyspark.sql import functions as F
        from pyspark.sql import types as T

        from rollup.transforms.bars import MAX_PRUNE_RANGES, any_of

        name = self.column("trade_id")
        kind = _column_type(rows, name)
        if not isinstance(kind, T.IntegralType | T.DecimalType):
            return None
        time_kind = _column_type(rows, self.column("ts"))
        day = _day_bucket(F.col(self.column("ts")), time_kind, self.time_unit)
        ids = F.col(name)
        present = rows.where(ids.isNotNull())
        groups = present.groupBy(self.column("exchange"), self.column("symbol"),
                                 day.alias("_day")).agg(F.min(ids).alias("lo"),
                                                        F.max(ids).alias("hi"))
        found = groups.limit(MAX_ID_GROUPS + 1).collect()
        if len(found) > MAX_ID_GROUPS:
            found = present.agg(F.min(ids).alias("lo"), F.max(ids).alias("hi")).collect()
        intervals = [(r.lo, r.hi) for r in found if r.lo is not None]
        return any_of([(ids >= F.lit(lo).cast(kind)) & (ids <= F.lit(hi).cast(kind))
                       for lo, hi in merge_intervals(intervals, MAX_PRUNE_RANGES)])

    def deliveries(self, rows: DataFrame, of: DataFrame) -> DataFrame:
        """Every delivery in raw `rows` of a trade key found in raw `of`, as exchange, symbol,
        trade_id, ts (validity of price and quantity unchecked: a superset).

        Only the key and time columns are read; `rows` is first filtered by the id ranges of
        `of` (`id_filter`), so Iceberg reads the files whose id bounds overlap them."""
        prefilter = self.id_filter(of)
        return self._matching(rows if prefilter is None else rows.where(prefilter), of)

    def _matching(self, rows: DataFrame, of: DataFrame) -> DataFrame:
        keys = self._probe(of).select(*TRADE_KEY).distinct()
        return self._probe(rows).join(keys, list(TRADE_KEY), "left_semi")

    def canonical_in(
        self, df: DataFrame, spans: Sequence[Bound], *, dedupe: bool | None = None
    ) -> DataFrame:
        """The valid rows of raw `df` whose time may fall in `spans` (a superset: callers
        filter `ts` exactly), read through `time_filter`.

        With dedupe, each trade is its `dedupe_trades` pick among **all** its deliveries in
        `df`: deliveries outside `spans` are found by `deliveries` (Spark jobs run here) and
        added, so a trade that moved out of `spans` is not counted inside them.
        """
        dedupe = self.dedupe if dedupe is None else dedupe
        inside = self.time_filter(df, spans)
        if inside is None:
            return self.to_canonical(df, dedupe=dedupe)
        pruned = df.where(inside)
        rows = self.to_canonical(pruned, dedupe=False)
        if not dedupe:
            return rows
        others = self._other_deliveries(df, pruned, ~inside)
        if others is not None:
            rows = rows.unionByName(others)
        return dedupe_trades(rows)

    def _other_deliveries(
        self, df: DataFrame, inside: DataFrame, outside: Column
    ) -> DataFrame | None:
        """Valid rows of `df` matching `outside` that deliver a trade of raw `inside` (None:
        there are none). Located by their times when few, by a join over `df` otherwise."""
        from pyspark.sql import functions as F

        from rollup.transforms.bars import MAX_PRUNE_RANGES, coarsen

        rest = df.where(outside)
        prefilter = self.id_filter(inside)
        if prefilter is not None:
            rest = rest.where(prefilter)
        found = self._matching(rest, inside)
        sample = found.select(*TRADE_KEY, F.unix_micros("ts").alias("_micros")).distinct() \
            .limit(LOCAL_DELIVERIES + 1).collect()
        if not sample:
            return None
        if len(sample) > LOCAL_DELIVERIES:
            keys = found.select(*TRADE_KEY).distinct()
        else:
            tick = timedelta(microseconds=1)
            spans = coarsen([(from_micros(r._micros), from_micros(r._micros) + tick)
                             for r in sample], MAX_PRUNE_RANGES)
            near = self.time_filter(df, spans)
            assert near is not None  # `outside` came from the same filter
            rest = rest.where(near)
            keys = F.broadcast(df.sparkSession.createDataFrame(
                sorted({tuple(r)[:3] for r in sample}), found.select(*TRADE_KEY).schema))
        return self.to_canonical(rest, dedupe=False).join(keys, list(TRADE_KEY), "left_semi")

    def rejected(self, df: DataFrame) -> DataFrame:
        """Invalid source rows with their text, file and reason, shaped for quarantine."""
        from pyspark.sql import functions as F

        checked = self.validated(df.withColumn("_file", F.input_file_name()))
        return checked.where(F.col("reason").isNotNull()).select(
            *[F.col(c) for c in FEED_NAMES],
            F.col("_file").alias("source_file"),
            F.col("_trade_id").alias("source_row"),
            "reason",
        )


def dedupe_trades(trades: DataFrame) -> DataFrame:
    """One row per (exchange, symbol, trade_id), chosen deterministically."""
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    key = Window.partitionBy(*TRADE_KEY).orderBy("ts", "price", "quantity", "side")
    return trades.withColumn("_n", F.row_number().over(key)).where(F.col("_n") == 1).drop("_n")


Number = int | Decimal


def merge_intervals(
    intervals: Sequence[tuple[Number, Number]], limit: int
) -> list[tuple[Number, Number]]:
    """At most `limit` sorted closed intervals covering `intervals` (smallest gaps closed)."""
    merged: list[tuple[Number, Number]] = []
    for lo, hi in sorted(intervals):
        if merged and merged[-1][1] >= lo:
            merged[-1] = (merged[-1][0], max(merged[-1][1], hi))
        else:
            merged.append((lo, hi))
    while len(merged) > limit:
        gap = min(range(len(merged) - 1), key=lambda i: merged[i + 1][0] - merged[i][1])
        merged[gap: gap + 2] = [(merged[gap][0], merged[gap + 1][1])]
    return merged


def _column_type(df: DataFrame, name: str) -> DataType | None:
    return next((f.dataType for f in df.schema.fields if f.name == name), None)


@attrs.frozen
class _Literal:
    column: Column


_OPEN = "open"  # no bound on this side
_EMPTY = "empty"  # the bound excludes every value of the column's type


def _comparable(kind: DataType, unit: str | None) -> bool:
    """Whether raw times of this type compare exactly with converted bounds."""
    from pyspark.sql import types as T

    if isinstance(kind, T.TimestampType | T.TimestampNTZType):
        return True
    return unit is not None and isinstance(kind, T.IntegralType | T.DecimalType)


def _time_literal(
    instant: datetime | None, kind: DataType, unit: str | None, *, up: bool
) -> _Literal | str:
    """A literal of the time column's own type for a bound (rounded outwards to the unit),
    `_OPEN` or `_EMPTY`; the type must be `_comparable`."""
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    if instant is None:
        return _OPEN
    aware = from_micros(to_micros(instant))
    if isinstance(kind, T.TimestampType):
        return _Literal(F.lit(aware))
    if isinstance(kind, T.TimestampNTZType):  # validation reads it in the session time zone
        return _Literal(F.lit(aware).cast("timestamp_ntz"))
    assert unit is not None
    micros = to_micros(aware)
    if unit == "ns":
        value = micros * 1_000
    else:
        size = _UNIT_MICROS[unit]
        value = -(-micros // size) if up else micros // size
    low, high = _type_range(kind)
    if value > high:
        return _OPEN if up else _EMPTY
    if value < low:
        return _EMPTY if up else _OPEN
    return _Literal(F.lit(value).cast(kind))


def _type_range(kind: DataType) -> tuple[Number, Number]:
    from pyspark.sql import types as T

    if isinstance(kind, T.DecimalType):
        top = Decimal(10) ** (kind.precision - kind.scale) - Decimal(10) ** -kind.scale
        return -top, top
    bits = 8 if isinstance(kind, T.ByteType) else 16 if isinstance(kind, T.ShortType) \
        else 32 if isinstance(kind, T.IntegerType) else 64
    return -(1 << (bits - 1)), (1 << (bits - 1)) - 1


def _day_bucket(column: Column, kind: DataType | None, unit: str | None) -> Column:
    """A coarse day number of raw times (only groups trade ids; need not be exact)."""
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    if isinstance(kind, T.TimestampType | T.TimestampNTZType):
        return F.floor(F.unix_micros(column.cast("timestamp")) / F.lit(_DAY_MICROS))
    if unit is not None and isinstance(kind, T.IntegralType | T.DecimalType):
        per_day = _DAY_MICROS * 1_000 if unit == "ns" else _DAY_MICROS // _UNIT_MICROS[unit]
        return F.floor(column / F.lit(per_day))
    return F.lit(0)
