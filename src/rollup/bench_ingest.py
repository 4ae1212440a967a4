"""The issue-14 figures of `rollup bench`: ingest throughput and its cost as history grows.

On the bench's SparkSession, after one small untimed ingest of each format (so the session is
warm), `measure_ingest` times `rollup.ingest.ingest_file`:

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
   repeats alternate between the two histories.

Every timed ingest into an empty table runs in a fresh namespace (dropped right after unless
`keep`). Each figure is the median of `BenchConfig.repeats` timings, and every timed ingest is
checked to store every row of its file (`IngestResult.all_rows`): a figure from an ingest that
skipped or quarantined rows would not measure ingest.
"""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs

from rollup.bench import (
    BenchConfig,
    Progress,
    Timing,
    _append_trades,
    _Clock,
    _drop_namespace,
    write_trades,
)
from rollup.identifiers import check_identifier, qualified

if TYPE_CHECKING:
    import pyarrow as pa
    from pyspark.sql import SparkSession

    from rollup.ingest import IngestReport
    from rollup.tables import Tables

INGEST_DAY = date(2024, 3, 1)
"""The day of the ingested files and the last day of every history."""
WARMUP_ROWS = 20_000
"""Rows of the untimed warm-up ingest of each format (at most `BenchConfig.ingest_rows`)."""
LATE_IDS = 10**12
"""Added to the late batch's trade ids: far above the synthetic history's, so all are new."""
_EPOCH = date(1970, 1, 1)


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
    warmup_seconds: float = 0.0

    @property
    def csv_rows_per_s(self) -> float:
        return self.rows / self.csv.seconds

    @property
    def parquet_rows_per_s(self) -> float:
        return self.rows / self.parquet.seconds

    def _over(self, cpu: bool) -> float | None:
        short, long = sorted(self.late)
        a = self.late[long].cpu_seconds if cpu else self.late[long].seconds
        b = self.late[short].cpu_seconds if cpu else self.late[short].seconds
        return None if a is None or b is None or b == 0 else a / b

    def late_over(self) -> float | None:
        """Ingest time of the late batch into the long history over the short one."""
        return self._over(cpu=False)

    def late_over_cpu(self) -> float | None:
        return self._over(cpu=True)

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
        def row(label: str, timing: Timing, note: str) -> str:
            cpu = timing.cpu_seconds
            per = timing.seconds / timing.trades * 1e9 if timing.trades else None
            return (f"{label:<28}{timing.seconds:>10.3f}"
                    f"{'-' if cpu is None else f'{cpu:.3f}':>10}"
                    f"{'-' if per is None else f'{per:.0f}':>10}   {note}")

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
    """Synthetic trades of one day (`rollup.synthetic`), every one with a side."""
    import pyarrow.compute as pc

    from rollup.synthetic import synthetic_trades

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
    from rollup.synthetic import write_trades_parquet

    return write_trades_parquet(table, directory, max(table.num_rows, 1), overwrite=True)[0]


# -- tables --------------------------------------------------------------------------------


def _positions(tables: Tables) -> dict[str, int | None]:
    """The current snapshot of every table in the namespace (None: never written)."""
    from rollup.state import current_snapshot

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


def _fresh(spark: SparkSession, catalog: str, namespace: str) -> Tables:
    from rollup.tables import Tables

    tables = Tables(spark, catalog, namespace)
    tables.create_all()
    return tables


# -- the run -------------------------------------------------------------------------------


def _timed_ingest(clock: _Clock, tables: Tables, path: Path,
                  reports: list[IngestReport]) -> tuple[float, float | None]:
    from rollup.ingest import ingest_file

    return clock.measure(lambda: reports.append(ingest_file(tables, path)))


def _empty_table_figures(
    spark: SparkSession, catalog: str, prefix: str, config: BenchConfig, clock: _Clock,
    files: dict[str, Path], keep: bool, say: Progress,
) -> tuple[dict[str, Timing], bool]:
    """Each format's file into an empty trades table (a fresh namespace), round-robin."""
    walls: dict[str, list[float]] = {kind: [] for kind in files}
    cpus: dict[str, list[float | None]] = {kind: [] for kind in files}
    complete = True
    for repeat in range(config.repeats):
        for kind, path in files.items():
            ns = check_identifier(f"{prefix}_ingest_{kind}{repeat}", "namespace")
            try:
                tables = _fresh(spark, catalog, ns)
                reports: list[IngestReport] = []
                wall, cpu = _timed_ingest(clock, tables, path, reports)
                complete &= reports[0].ingested == config.ingest_rows
                walls[kind].append(wall)
                cpus[kind].append(cpu)
                say(f"  {kind}, round {repeat + 1}: {wall:.2f}s, "
                    f"{config.ingest_rows / wall:,.0f} rows/s ({reports[0].describe()})")
            finally:
                if not keep:
                    _drop_namespace(spark, catalog, ns)
    return ({kind: Timing(f"ingest {kind}", tuple(walls[kind]), tuple(cpus[kind]),
                          config.ingest_rows) for kind in files}, complete)


def _late_figures(
    spark: SparkSession, catalog: str, prefix: str, config: BenchConfig, clock: _Clock,
    work: Path, keep: bool, say: Progress,
) -> tuple[dict[int, Timing], bool]:
    """The late batch into each history, rolled back after every ingest, round-robin."""
    long = max(config.history_days)
    say(f"ingest: writing {long} day(s) of history, {config.history_per_day:,} trades a day ...")
    history: list[tuple[date, list[Path]]] = []
    for offset in range(long):  # the histories end on INGEST_DAY; a day's trades are the same
        day = INGEST_DAY - timedelta(days=long - 1 - offset)
        history.append((day, write_trades(
            work / "ingest_history" / f"{day:%Y%m%d}", config.history_per_day, config.symbols,
            config.rows_per_file, day=day, seed=(day - _EPOCH).days)))
    late = work / "ingest_late.csv"
    write_csv(ingest_trades(config.late_batch, config.symbols, seed=14, id_offset=LATE_IDS),
              late)
    histories: dict[int, tuple[Tables, dict[str, int | None]]] = {}
    names = [check_identifier(f"{prefix}_ingest_h{days}d", "namespace")
             for days in config.history_days]
    try:
        for days, ns in zip(config.history_days, names, strict=True):
            say(f"ingest: loading {days} day(s) of history into {ns} ...")
            tables = _fresh(spark, catalog, ns)
            for _, day_files in history[-days:]:  # one append (one snapshot) per day
                _append_trades(tables, day_files)
            histories[days] = (tables, _positions(tables))
        walls: dict[int, list[float]] = {days: [] for days in histories}
        cpus: dict[int, list[float | None]] = {days: [] for days in histories}
        complete = True
        say(f"ingest: the late batch of {config.late_batch:,} trades, one untimed and "
            f"{config.repeats} timed round(s) into each history ...")
        for repeat in range(-1, config.repeats):  # round -1 warms the tables' first reads
            for days, (tables, before) in histories.items():
                reports: list[IngestReport] = []
                wall, cpu = _timed_ingest(clock, tables, late, reports)
                _restore(tables, before)
                if repeat < 0:
                    continue
                complete &= reports[0].ingested == config.late_batch
                walls[days].append(wall)
                cpus[days].append(cpu)
                say(f"  late batch into {days}d, round {repeat + 1}: {wall:.2f}s "
                    f"({reports[0].describe()})")
    finally:
        if not keep:
            for ns in names:
                _drop_namespace(spark, catalog, ns)
    return ({days: Timing(f"ingest late {days}d", tuple(walls[days]), tuple(cpus[days]),
                          config.late_batch) for days in histories}, complete)


def measure_ingest(
    spark: SparkSession, catalog: str, prefix: str, config: BenchConfig, clock: _Clock,
    work: Path, keep: bool, say: Progress,
) -> IngestResult:
    """Every ingest figure (see the module docstring); scratch namespaces start with
    `prefix`_ingest_ and are dropped unless `keep`."""
    import time

    from rollup.ingest import ingest_file

    rows = config.ingest_rows
    say(f"ingest: writing {rows:,} trades as CSV and as Parquet ...")
    trades = ingest_trades(rows, config.symbols)
    files = {"csv": write_csv(trades, work / "ingest.csv"),
             "parquet": write_parquet(trades, work / "ingest_parquet")}
    del trades
    warm_rows = min(rows, WARMUP_ROWS)
    warm = ingest_trades(warm_rows, config.symbols, seed=1)
    warm_files: list[Path] = [write_csv(warm, work / "ingest_warm.csv"),
                              write_parquet(warm, work / "ingest_warm_parquet")]
    warm_ns = check_identifier(f"{prefix}_ingest_warm", "namespace")
    say(f"ingest: untimed warm-up, {warm_rows:,} rows of each format ...")
    began = time.perf_counter()
    try:
        for number, path in enumerate(warm_files):
            ingest_file(_fresh(spark, catalog, f"{warm_ns}{number}"), path)
    finally:
        if not keep:
            for number in range(len(warm_files)):
                _drop_namespace(spark, catalog, f"{warm_ns}{number}")
    warmup = time.perf_counter() - began
    say(f"ingest: {rows:,} rows into an empty trades table, {config.repeats} round(s) of "
        f"CSV and Parquet ...")
    empty, complete = _empty_table_figures(spark, catalog, prefix, config, clock, files, keep,
                                           say)
    late, late_complete = _late_figures(spark, catalog, prefix, config, clock, work, keep, say)
    return IngestResult(rows, empty["csv"], empty["parquet"], config.late_batch,
                        config.history_per_day, late, complete and late_complete, warmup)


