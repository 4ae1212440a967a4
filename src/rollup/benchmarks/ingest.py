"""The issue-14 figures of `rollup bench`: ingest throughput and its cost as history grows.

On the bench's SparkSession, after one small untimed ingest of each format (so the session is
warm; none when `BenchConfig.warmups` is 0), `measure_ingest` times
`rollup.ingestion.batch.ingest_file`:

1. ``csv``: a file of `BenchConfig.ingest_rows` trades of one UTC day and
   `BenchConfig.symbols` symbols as CSV text (ISO-8601 ``ts``, decimal text prices and
   quantities, integer trade ids, side buy or sell) into an empty trades table;
2. ``parquet``: the same trades as one Parquet file with the trades' own types (``ts``
   timestamp[us, UTC], price decimal(18,8), quantity decimal(20,8), trade_id int64, strings)
   into an empty trades table;
3. ``late``: one CSV batch of `BenchConfig.late_batch` new trades spread over a day the history
   already holds, into a trades table holding the short and the long history of
   `BenchConfig.history_days` (`BenchConfig.history_per_day` trades a day, appended straight
   to Iceberg from Parquet, not through ingest). After each timed ingest every table of the
   namespace is rolled back to its snapshot before it, so each repeat meets the same history;
   repeats alternate between the two histories, after one untimed round into each (none when
   `BenchConfig.warmups` is 0).

Every timed ingest into an empty table runs in a fresh namespace (dropped right after unless
`keep`). Each figure is the median of `BenchConfig.repeats` timings, and every timed ingest is
checked to store every row of its file (`IngestResult.all_rows`): a figure from an ingest that
skipped or quarantined rows would not measure ingest.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from rollup.benchmarks.common import (
    BenchConfig,
    Clock,
    Progress,
    Timing,
    Timings,
    append_trades,
    drop_namespace,
    fresh_tables,
    over,
    timing_row,
    write_history,
)
from rollup.specs.identifiers import check_identifier, qualified

if TYPE_CHECKING:
    import pyarrow as pa
    from pyspark.sql import SparkSession

    from rollup.ingestion.batch import IngestReport
    from rollup.storage.tables import Tables

INGEST_DAY = date(2024, 3, 1)
"""The day of the ingested files and the last day of every history."""
WARMUP_ROWS = 20_000
"""Rows of the untimed warm-up ingest of each format (at most `BenchConfig.ingest_rows`)."""
LATE_IDS = 10**12
"""Added to the late batch's trade ids: far above the synthetic history's, so all are new."""


@attrs.frozen
class IngestResult:
    """The ingest figures of one run."""

    rows: int
    csv: Timing
    parquet: Timing
    late_batch: int
    history_per_day: int
    late: dict[int, Timing]
    """The late batch's ingest per history size in days (short, then long)."""
    all_rows: bool
    """Every timed ingest stored every row of its file (none quarantined or skipped)."""

    @property
    def csv_rows_per_s(self) -> float:
        return self.rows / self.csv.seconds

    @property
    def parquet_rows_per_s(self) -> float:
        return self.rows / self.parquet.seconds

    def late_over(self) -> float | None:
        """Ingest time of the late batch into the long history over the short one."""
        short, long = sorted(self.late)
        return over(self.late[long].seconds, self.late[short].seconds)

    def late_over_cpu(self) -> float | None:
        short, long = sorted(self.late)
        return over(self.late[long].cpu_seconds, self.late[short].cpu_seconds)

    def as_json(self) -> dict[str, Any]:
        """The JSON-line keys besides the rates and the ratio (see `BenchReport.json_line`)."""
        def r(value: float | None) -> float | None:
            return None if value is None else round(value, 3)

        return {
            "ingest_rows": self.rows,
            "ingest_csv_s": r(self.csv.seconds),
            "ingest_parquet_s": r(self.parquet.seconds),
            "ingest_late_batch": self.late_batch,
            "ingest_history_per_day": self.history_per_day,
            "ingest_late_s": {f"{days}d": r(t.seconds) for days, t in sorted(self.late.items())},
            "ingest_all_rows": self.all_rows,
        }

    def lines(self) -> list[str]:
        """The rows of the printed table."""
        row = timing_row
        out = [row(f"ingest CSV {self.rows:,}", self.csv,
                   f"{self.csv_rows_per_s:,.0f} rows/s into an empty table"),
               row(f"ingest Parquet {self.rows:,}", self.parquet,
                   f"{self.parquet_rows_per_s:,.0f} rows/s into an empty table")]
        for days, timing in sorted(self.late.items()):
            out.append(row(f"ingest late {days}d", timing,
                           f"{self.late_batch:,} rows, history "
                           f"{days * self.history_per_day:,} trades"))
        if not self.all_rows:
            out.append("  WARNING: a timed ingest did not store every row of its file: the "
                       "ingest figures do not measure a full ingest")
        return out


# -- the files -----------------------------------------------------------------------------


def ingest_trades(rows: int, symbols: int, *, day: date = INGEST_DAY, seed: int = 0,
                  id_offset: int = 0) -> pa.Table:
    """Synthetic trades of one day (`rollup.adapters.synthetic`), every one with a side."""
    import pyarrow.compute as pc

    from rollup.adapters.synthetic import synthetic_trades

    table = synthetic_trades(rows, symbols=symbols, day=day, seed=seed)
    side = pc.fill_null(table.column("side"), "buy")
    table = table.set_column(table.schema.get_field_index("side"), "side", side)
    if id_offset:
        ids = pc.add(table.column("trade_id"), id_offset)
        table = table.set_column(table.schema.get_field_index("trade_id"), "trade_id", ids)
    return table


def write_csv(table: pa.Table, path: Path) -> Path:
    """`table` as CSV text: ISO-8601 UTC ``ts`` with microseconds, plain decimal text."""
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pcsv

    index = table.schema.get_field_index
    # %S of a microsecond timestamp carries the fraction: 2024-03-01T00:00:01.250000Z
    text = table.set_column(index("ts"), "ts",
                            pc.strftime(table.column("ts"), format="%Y-%m-%dT%H:%M:%SZ"))
    for name in ("price", "quantity"):
        text = text.set_column(index(name), name, text.column(name).cast(pa.string()))
    with path.open("wb") as handle:  # unquoted, as exchanges' dumps are (pyarrow quotes names)
        handle.write((",".join(text.column_names) + "\n").encode())
        pcsv.write_csv(text, handle, write_options=pcsv.WriteOptions(
            include_header=False, quoting_style="none"))
    return path


def write_parquet(table: pa.Table, directory: Path) -> Path:
    """`table` as one Parquet file with the trades' types (`write_trades_parquet`)."""
    from rollup.adapters.synthetic import write_trades_parquet

    return write_trades_parquet(table, directory, max(table.num_rows, 1), overwrite=True)[0]


# -- tables --------------------------------------------------------------------------------


def _positions(tables: Tables) -> dict[str, int | None]:
    """The current snapshot of every table in the namespace (None: never written)."""
    from rollup.storage.state import current_snapshot

    spark = tables.spark
    rows = spark.sql(f"SHOW TABLES IN {qualified(tables.catalog, tables.namespace)}").collect()
    return {check_identifier(r.tableName, "table name"):
            current_snapshot(spark, tables.name(r.tableName)) for r in rows}


def _restore(tables: Tables, before: dict[str, int | None]) -> None:
    """Put every table of the namespace back where `before` found it."""
    spark = tables.spark
    for name, snapshot in _positions(tables).items():
        if name not in before:
            spark.sql(f"DROP TABLE IF EXISTS {tables.name(name)} PURGE")
        elif snapshot == before[name]:
            continue
        elif before[name] is None:
            spark.sql(f"DELETE FROM {tables.name(name)}")  # noqa: S608 - checked names
        else:
            spark.sql(f"CALL {qualified(tables.catalog)}.system.rollback_to_snapshot("
                      f"'{tables.namespace}.{name}', {int(before[name] or 0)})")


@contextmanager
def _scratch(spark: SparkSession, catalog: str, namespace: str, keep: bool
             ) -> Iterator[Tables]:
    """Fresh tables in `namespace`, dropped afterwards unless `keep`."""
    ns = check_identifier(namespace, "namespace")
    try:
        yield fresh_tables(spark, catalog, ns)
    finally:
        if not keep:
            drop_namespace(spark, catalog, ns)


# -- the run -------------------------------------------------------------------------------


@attrs.frozen
class _Figure:
    """One timed ingest figure: its file, the rows it must store and where it goes in."""

    name: str
    path: Path
    rows: int
    target: Callable[[int], AbstractContextManager[Tables]]
    """The tables to ingest into in a round (-1 for the untimed one), set back afterwards."""


def _ingest(tables: Tables, path: Path, reports: list[IngestReport]) -> None:
    from rollup.ingestion.batch import ingest_file

    reports.append(ingest_file(tables, path))


def _rounds(clock: Clock, figures: list[_Figure], repeats: int, warm: bool,
            say: Progress) -> tuple[dict[str, Timing], bool]:
    """Time every figure `repeats` times, round-robin, after one untimed round if `warm`;
    also whether every timed ingest stored every row of its file."""
    measured, complete = Timings(), True
    for repeat in range(-1 if warm else 0, repeats):
        for figure in figures:
            reports: list[IngestReport] = []
            with figure.target(repeat) as tables:
                wall, cpu = clock.measure(functools.partial(_ingest, tables, figure.path,
                                                            reports))
            if repeat < 0:
                continue
            complete &= reports[0].ingested == figure.rows
            measured.add(figure.name, wall, cpu)
            say(f"  {figure.name}, round {repeat + 1}: {wall:.2f}s, "
                f"{figure.rows / wall:,.0f} rows/s ({reports[0].describe()})")
    return ({f.name: measured.timing(f.name, f.name, f.rows) for f in figures}, complete)


def _warm_up(spark: SparkSession, catalog: str, prefix: str, config: BenchConfig, work: Path,
             keep: bool, say: Progress) -> None:
    """One small untimed ingest of each format into a fresh namespace."""
    from rollup.ingestion.batch import ingest_file

    rows = min(config.ingest_rows, WARMUP_ROWS)
    warm = ingest_trades(rows, config.symbols, seed=1)
    say(f"ingest: untimed warm-up, {rows:,} rows of each format ...")
    for number, path in enumerate([write_csv(warm, work / "ingest_warm.csv"),
                                   write_parquet(warm, work / "ingest_warm_parquet")]):
        with _scratch(spark, catalog, f"{prefix}_ingest_warm{number}", keep) as tables:
            ingest_file(tables, path)


def _empty_table_figures(
    spark: SparkSession, catalog: str, prefix: str, config: BenchConfig, clock: Clock,
    work: Path, keep: bool, say: Progress,
) -> tuple[dict[str, Timing], bool]:
    """Each format's file into an empty trades table (a fresh namespace a round)."""
    rows = config.ingest_rows
    say(f"ingest: writing {rows:,} trades as CSV and as Parquet ...")
    trades = ingest_trades(rows, config.symbols)
    files = {"csv": write_csv(trades, work / "ingest.csv"),
             "parquet": write_parquet(trades, work / "ingest_parquet")}
    del trades
    say(f"ingest: {rows:,} rows into an empty trades table, {config.repeats} round(s) of "
        f"CSV and Parquet ...")

    def empty(kind: str) -> Callable[[int], AbstractContextManager[Tables]]:
        return lambda repeat: _scratch(spark, catalog, f"{prefix}_ingest_{kind}{repeat}", keep)

    timings, complete = _rounds(clock, [_Figure(f"ingest {kind}", path, rows, empty(kind))
                                        for kind, path in files.items()],
                                config.repeats, warm=False, say=say)
    return {kind: timings[f"ingest {kind}"] for kind in files}, complete


def _late_figures(
    spark: SparkSession, catalog: str, prefix: str, config: BenchConfig, clock: Clock,
    work: Path, keep: bool, say: Progress,
) -> tuple[dict[int, Timing], bool]:
    """The late batch into each history, rolled back after every ingest, round-robin."""
    long = max(config.history_days)
    say(f"ingest: writing {long} day(s) of history, {config.history_per_day:,} trades a day ...")
    # the histories end on INGEST_DAY; the short one is the long one's last days
    history = write_history(work / "ingest_history", INGEST_DAY - timedelta(days=long - 1),
                            long, config)
    late = work / "ingest_late.csv"
    write_csv(ingest_trades(config.late_batch, config.symbols, seed=14, id_offset=LATE_IDS),
              late)

    def rolled_back(tables: Tables, before: dict[str, int | None]
                    ) -> Callable[[int], AbstractContextManager[Tables]]:
        @contextmanager
        def target(_repeat: int) -> Iterator[Tables]:
            try:
                yield tables
            finally:
                _restore(tables, before)
        return target

    with _histories(spark, catalog, prefix, config, history, keep, say) as histories:
        say(f"ingest: the late batch of {config.late_batch:,} trades, "
            f"{config.repeats} timed round(s) into each history ...")
        figures = [_Figure(f"ingest late {days}d", late, config.late_batch,
                           rolled_back(tables, before))
                   for days, (tables, before) in histories.items()]
        timings, complete = _rounds(clock, figures, config.repeats, config.warmups > 0, say)
    return {days: timings[f"ingest late {days}d"] for days in histories}, complete


@contextmanager
def _histories(spark: SparkSession, catalog: str, prefix: str, config: BenchConfig,
               history: list[tuple[date, list[Path]]], keep: bool, say: Progress,
               ) -> Iterator[dict[int, tuple[Tables, dict[str, int | None]]]]:
    """Per history size: tables holding its last days of `history` (one commit a day) and
    their snapshots; dropped afterwards unless `keep`."""
    with ExitStack() as stack:
        out = {}
        for days in config.history_days:
            tables = stack.enter_context(_scratch(spark, catalog, f"{prefix}_ingest_h{days}d",
                                                  keep))
            say(f"ingest: loading {days} day(s) of history into {tables.namespace} ...")
            for _, day_files in history[-days:]:
                append_trades(tables, day_files)
            out[days] = (tables, _positions(tables))
        yield out


def measure_ingest(
    spark: SparkSession, catalog: str, prefix: str, config: BenchConfig, clock: Clock,
    work: Path, keep: bool, say: Progress,
) -> IngestResult:
    """Every ingest figure (see the module docstring); scratch namespaces start with
    `prefix`_ingest_ and are dropped unless `keep`."""
    if config.warmups:
        _warm_up(spark, catalog, prefix, config, work, keep, say)
    empty, complete = _empty_table_figures(spark, catalog, prefix, config, clock, work, keep,
                                           say)
    late, late_complete = _late_figures(spark, catalog, prefix, config, clock, work, keep, say)
    return IngestResult(config.ingest_rows, empty["csv"], empty["parquet"], config.late_batch,
                        config.history_per_day, late, complete and late_complete)
