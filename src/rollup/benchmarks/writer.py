"""An external trades writer without a JVM: pyiceberg appends Arrow batches to the trades table.

The writer of the `follow_lag` figure (`rollup.benchmarks.follow_lag`), run as its own process:

    python -m rollup.benchmarks.writer --warehouse W --namespace NS --commits 24 \\
        --interval 5 --trades 5000 [--symbols 20] [--save DIR]

It commits `--trades` live trades (timestamps spread over the last `--interval` seconds) every
`--interval` seconds, on a fixed schedule, and prints one JSON line per commit: commit number,
snapshot id, parent id, the snapshot's commit time (epoch ms) and the seconds the commit took.
With `--save`, each committed batch is also written as `DIR/commit_NNNNN.parquet` (for an
independent check of the bars).

pyiceberg 0.12 has no Hadoop catalog, so `HadoopTables` is a minimal one for a local
warehouse laid out as Spark's Iceberg Hadoop catalog lays it out
(`<warehouse>/<ns>/<table>/metadata/vN.metadata.json` and `version-hint.text`): `load_table`
finds the newest `vN.metadata.json` as Iceberg's Java code does, and `commit_table` writes
`v{N+1}.metadata.json` atomically from the version the commit was staged on (a temp file, then
a hard link to the final name, which fails if another writer got there first: then
`CommitFailedException`, and pyiceberg's own retry reloads and re-applies the append), then
updates the hint. Local file systems only (hard links).

Caveat: Java's `HadoopTableOperations` checks that the next version does not exist and then
renames (not atomic across processes), so the trades table should have one writer process at a
time; racing pyiceberg writers are safe among themselves.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
from pyiceberg.catalog import MetastoreCatalog
from pyiceberg.catalog.noop import NoopCatalog

from rollup.errors import ConfigError, RollupError
from rollup.specs.identifiers import check_identifier

if TYPE_CHECKING:
    import pyarrow as pa
    from pyiceberg.table import CommitTableResponse, Table
    from pyiceberg.table.metadata import TableMetadata
    from pyiceberg.table.update import TableRequirement, TableUpdate
    from pyiceberg.typedef import Identifier

_VERSION = re.compile(r"^v(\d+)(?:\.gz)?\.metadata\.json$")
_HINT = "version-hint.text"
_LIVE_IDS = 10**13
"""Trade ids of the writer: far above the synthetic history's (and the other figures')."""
_DAY_US = 86_400_000_000
_SOURCE_DAY = date(2024, 3, 1)
"""The synthetic day whose trades (prices, sizes, symbols, ties) a live batch reuses."""


def local_warehouse(location: str) -> Path:
    """The local directory of a warehouse location (a path or a file: URI).

    Raises:
        ConfigError: the location is not on the local file system.
    """
    text = str(location)
    if text.startswith("file:"):
        text = re.sub(r"^file:(//)?", "", text)
        text = "/" + text.lstrip("/")
    elif re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", text):
        raise ConfigError(f"warehouse {location} is not a local directory: the pyiceberg "
                          "writer commits with hard links, on a local file system only")
    return Path(text)


@attrs.frozen
class Staged:
    """A commit ready to publish: the new metadata and the version it will be."""

    metadata: TableMetadata
    metadata_dir: Path
    version: int

    @property
    def location(self) -> Path:
        return self.metadata_dir / f"v{self.version}.metadata.json"


class HadoopTables(MetastoreCatalog, NoopCatalog):
    """A minimal pyiceberg catalog of the tables of a local Hadoop-layout warehouse: load and
    commit only (every other catalog call raises NotImplementedError)."""

    def __init__(self, warehouse: str | os.PathLike[str], **properties: str) -> None:
        self.root = local_warehouse(os.fspath(warehouse))
        super().__init__("hadoop", warehouse=str(self.root), **properties)

    def _table_dir(self, identifier: str | Identifier) -> Path:
        parts = self.identifier_to_tuple(identifier)
        if len(parts) != 2:
            raise ConfigError(f"invalid table {'.'.join(parts)}: expected namespace.table")
        namespace, table = (check_identifier(p, "table name") for p in parts)
        return self.root / namespace / table

    def load_table(self, identifier: str | Identifier) -> Table:
        """The table at its newest metadata version (hint, then any newer vN files)."""
        from pyiceberg.serializers import FromInputFile
        from pyiceberg.table import Table

        from rollup.readers.read import metadata_location

        location = metadata_location(str(self._table_dir(identifier)))
        io = self._load_file_io(location=location)
        metadata = FromInputFile.table_metadata(io.new_input(location))
        return Table(self.identifier_to_tuple(identifier), metadata, location,
                     self._load_file_io(metadata.properties, location), self)

    def stage(self, table: Table, requirements: tuple[TableRequirement, ...],
              updates: tuple[TableUpdate, ...]) -> Staged:
        """Apply `updates` to the metadata `table` was loaded at (its requirements checked
        against it); the result is the next version after that one.

        Raises:
            CommitFailedException: a requirement does not hold.
        """
        name = Path(table.metadata_location).name
        match = _VERSION.match(name)
        if match is None:
            raise ConfigError(f"metadata file {name} is not a Hadoop-catalog version "
                              "(expected vN.metadata.json)")
        staged = self._update_and_stage_table(table, table.name(), requirements, updates)
        return Staged(staged.metadata, Path(table.metadata_location).parent,
                      int(match.group(1)) + 1)

    def publish(self, staged: Staged) -> CommitTableResponse:
        """Write `staged` as its version, atomically; then update the version hint.

        Raises:
            CommitFailedException: that version exists already (another writer committed).
        """
        from pyiceberg.exceptions import CommitFailedException
        from pyiceberg.table import CommitTableResponse

        temp = staged.metadata_dir / f".{uuid.uuid4().hex}.metadata.json.tmp"
        with open(temp, "xb") as out:
            out.write(staged.metadata.model_dump_json(exclude_none=True).encode())
            out.flush()
            os.fsync(out.fileno())
        try:
            os.link(temp, staged.location)  # the commit: fails if the name exists
        except FileExistsError:
            raise CommitFailedException(
                f"{staged.location.name} already exists: another writer committed version "
                f"{staged.version} first") from None
        finally:
            temp.unlink(missing_ok=True)
        hint = staged.metadata_dir / f".{uuid.uuid4().hex}.{_HINT}.tmp"
        hint.write_text(str(staged.version))
        # Hadoop's local file system keeps a checksum beside the hint Java wrote; a stale one
        # would fail Java's read of the new hint (it then lists the directory, with a warning).
        (staged.metadata_dir / f".{_HINT}.crc").unlink(missing_ok=True)
        os.replace(hint, staged.metadata_dir / _HINT)  # best effort: readers step past it
        return CommitTableResponse.model_validate(
            {"metadata": staged.metadata, "metadata-location": str(staged.location)})

    def commit_table(self, table: Table, requirements: tuple[TableRequirement, ...],
                     updates: tuple[TableUpdate, ...]) -> CommitTableResponse:
        return self.publish(self.stage(table, requirements, updates))


# -- the live trades --------------------------------------------------------------------------


def live_trades(schema: pa.Schema, n: int, symbols: int, start_us: int, end_us: int,
                first_id: int, seed: int) -> pa.Table:
    """`n` trades with timestamps in [start_us, end_us) in the table's Arrow `schema`: a
    synthetic day's trades (prices, sizes, sides, ties) squeezed into the span, with trade ids
    from `first_id` up in time order, stamped as ingested now."""
    import numpy as np
    import pyarrow as pa

    from rollup.adapters.synthetic import synthetic_trades

    day = synthetic_trades(n, symbols=symbols, day=_SOURCE_DAY, seed=seed)
    offset = day.column("ts").cast(pa.int64()).to_numpy() - (
        (_SOURCE_DAY - date(1970, 1, 1)).days * _DAY_US)
    span = max(1, end_us - start_us)
    ts = start_us + (offset.astype(np.float64) * span / _DAY_US).astype(np.int64)
    columns: dict[str, pa.Array] = {
        "exchange": pa.array(["LIVE"] * n, pa.string()),
        "symbol": day.column("symbol").combine_chunks(),
        "trade_id": pa.array(first_id + np.arange(n, dtype=np.int64)),
        "ts": pa.array(ts, pa.int64()),
        "price": day.column("price").combine_chunks(),
        "quantity": day.column("quantity").combine_chunks(),
        "side": day.column("side").combine_chunks(),
        "ingested_at": pa.array([datetime.now(UTC)] * n, pa.timestamp("us", tz="UTC")),
    }
    arrays = []
    for field in schema:
        values = columns.get(field.name)
        if values is None:
            arrays.append(pa.nulls(n, field.type))
        elif pa.types.is_timestamp(field.type) and pa.types.is_integer(values.type):
            arrays.append(values.cast(pa.timestamp("us")).cast(field.type))
        else:
            arrays.append(values.cast(field.type))
    return pa.Table.from_arrays(arrays, schema=schema)


def write_data_files(target: Table, batch: pa.Table) -> list[str]:
    """`batch` as Parquet data files of `target` (with its field ids and compression), one
    per UTC day of `ts` (the trades table is partitioned by days(ts)); their paths.

    pyiceberg's own `append` computes partition values with pyiceberg-core, an extra package;
    `add_files` reads them from each file's statistics instead, so each file holds one day.
    """
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    days = batch.column("ts").cast(pa.int64()).to_numpy() // _DAY_US
    codec = target.properties.get("write.parquet.compression-codec", "zstd")
    paths = []
    for day in np.unique(days):
        name = (date(1970, 1, 1) + timedelta(days=int(day))).isoformat()
        folder = local_warehouse(target.location()) / "data" / f"ts_day={name}"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{uuid.uuid4()}.parquet"
        part = batch.filter(pa.array(days == day))
        pq.write_table(part, path, compression="none" if codec == "uncompressed" else codec)
        paths.append(str(path))
    return paths


@attrs.frozen
class Committed:
    """One commit of the writer, as printed."""

    commit: int
    snapshot_id: int
    parent_id: int | None
    committed_at_ms: int
    trades: int
    seconds: float

    def as_json(self) -> str:
        return json.dumps(attrs.asdict(self))

    @classmethod
    def from_json(cls, line: str) -> Committed:
        return cls(**json.loads(line))


def run_writer(warehouse: str, namespace: str, table: str, *, commits: int, interval: float,
               trades: int, symbols: int, save: Path | None = None, seed: int = 0,
               out: Any = None) -> list[Committed]:
    """Commit `trades` live trades every `interval` seconds, `commits` times (the first at
    once), printing each `Committed` as a JSON line to `out` (default stdout)."""
    import pyarrow.parquet as pq

    out = out or sys.stdout
    catalog = HadoopTables(warehouse)
    target = catalog.load_table((namespace, table))
    schema = target.schema().as_arrow()
    if save is not None:
        save.mkdir(parents=True, exist_ok=True)
    done: list[Committed] = []
    began = time.monotonic()
    previous_us = int(time.time() * 1e6 - interval * 1e6)
    for k in range(commits):
        if (wait := began + k * interval - time.monotonic()) > 0:
            time.sleep(wait)
        now_us = int(time.time() * 1e6)
        batch = live_trades(schema, trades, symbols, previous_us, now_us,
                            _LIVE_IDS + seed * 10**9 + k * trades, seed * 100_003 + k)
        previous_us = now_us
        started = time.monotonic()
        target.add_files(write_data_files(target, batch), check_duplicate_files=False)
        seconds = time.monotonic() - started
        snap = target.current_snapshot()
        assert snap is not None
        if save is not None:
            pq.write_table(batch, save / f"commit_{k:05d}.parquet")
        done.append(Committed(k, snap.snapshot_id, snap.parent_snapshot_id, snap.timestamp_ms,
                              trades, round(seconds, 4)))
        print(done[-1].as_json(), file=out, flush=True)
    return done


def _main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m rollup.benchmarks.writer",
                                description="Commit live trades to the trades table with "
                                            "pyiceberg (no JVM); one JSON line per commit.")
    p.add_argument("--warehouse", required=True, help="the local Hadoop-catalog warehouse")
    p.add_argument("--namespace", required=True)
    p.add_argument("--table", default="trades")
    p.add_argument("--commits", type=int, default=24)
    p.add_argument("--interval", type=float, default=5.0, help="seconds between commits")
    p.add_argument("--trades", type=int, default=5_000, help="trades per commit")
    p.add_argument("--symbols", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--save", type=Path, default=None,
                   help="also write each committed batch as DIR/commit_NNNNN.parquet")
    args = p.parse_args(argv)
    for name in ("commits", "trades", "symbols"):
        if getattr(args, name) < 1:
            print(f"writer: invalid --{name} {getattr(args, name)}: expected >= 1",
                  file=sys.stderr)
            return 2
    if not args.interval >= 0:
        print(f"writer: invalid --interval {args.interval}: expected seconds >= 0",
              file=sys.stderr)
        return 2
    try:
        run_writer(args.warehouse, args.namespace, args.table, commits=args.commits,
                   interval=args.interval, trades=args.trades, symbols=args.symbols,
                   save=args.save, seed=args.seed)
    except RollupError as exc:
        print(f"writer: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - one line, no traceback, for the bench to show
        print(f"writer: {type(exc).__name__}: {exc}".splitlines()[0], file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(_main())
