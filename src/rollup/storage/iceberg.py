"""Iceberg table metadata through the Java API of the Spark catalog: snapshots, the files each
snapshot added or removed, the time span of a file's partition, and commit properties.

Everything here reads table metadata (manifest lists and the manifests a snapshot wrote) on
the driver: no Spark job, and the cost depends on what changed, not on the table's history.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

import attrs

from rollup.specs.times import EPOCH, TimeRange

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

T = TypeVar("T")

SUMMARY_KEYS = ("rollup.parent-snapshot-id", "rollup.base-snapshot-id", "rollup.run-id")
"""The snapshot summary keys rollup reads (see rollup.storage.state)."""

POSITION_DELETES = "POSITION_DELETES"


@attrs.frozen
class Snapshot:
    """One snapshot of a table: its id, parent, operation, commit time and rollup's summary keys."""

    snapshot_id: int
    parent_id: int | None
    operation: str | None
    committed_at: datetime
    summary: Mapping[str, str] = attrs.field(factory=dict)


@attrs.frozen
class FileInfo:
    """A data or delete file: where it is, what it holds and the time span of its partition."""

    path: str
    content: str  # DATA, POSITION_DELETES or EQUALITY_DELETES
    span: TimeRange | None  # None: the partition does not bound the time column
    records: int
    format: str = "PARQUET"


@attrs.frozen
class FileChanges:
    """The files one snapshot added and removed."""

    added_data: tuple[FileInfo, ...] = ()
    removed_data: tuple[FileInfo, ...] = ()
    added_deletes: tuple[FileInfo, ...] = ()
    removed_deletes: tuple[FileInfo, ...] = ()


def _months(start: datetime, months: int) -> datetime:
    total = start.year * 12 + start.month - 1 + months
    return start.replace(year=total // 12, month=total % 12 + 1)


def transform_span(transform: str, value: int) -> TimeRange | None:
    """The UTC interval of one value of an Iceberg time transform (hour, day, month, year)."""
    if transform == "hour":
        lo = EPOCH + timedelta(hours=value)
        return lo, lo + timedelta(hours=1)
    if transform == "day":
        lo = EPOCH + timedelta(days=value)
        return lo, lo + timedelta(days=1)
    if transform == "month":
        lo = _months(EPOCH, value)
        return lo, _months(lo, 1)
    if transform == "year":
        lo = _months(EPOCH, 12 * value)
        return lo, _months(lo, 12)
    return None


_ENTRY, _KEY = "\u0001", "\u0002"
"""Separators of the table properties read in one call (never in rollup's own values)."""

_JOINER = "org.apache.iceberg.relocated.com.google.common.base.Joiner"
_reading = threading.local()
_classes: dict[tuple[int, str], Any] = {}


def java_class(spark: SparkSession, name: str) -> Any:
    """A Java class of the session's JVM by its full name, looked up once (each package step
    of `spark._jvm.a.b.C` is a round trip to the JVM)."""
    gateway: Any = spark.sparkContext._gateway
    key = (id(gateway), name)
    found = _classes.get(key)
    if found is None:
        from py4j.java_gateway import JavaClass

        found = _classes[key] = JavaClass(name, gateway._gateway_client)
    return found


@contextmanager
def one_read() -> Iterator[None]:
    """Within, the metadata of each table is read once: every `Table` of one name opened in
    this thread shares the handle the first one refreshed (one consistent view, for planning).
    """
    if getattr(_reading, "tables", None) is not None:  # nested: the outer scope holds
        yield
        return
    _reading.tables = {}
    try:
        yield
    finally:
        _reading.tables = None


def _integer_class(spark: SparkSession) -> Any:
    key = (id(spark.sparkContext._gateway), "class java.lang.Integer")
    if key not in _classes:
        _classes[key] = java_class(spark, "java.lang.Class").forName("java.lang.Integer")
    return _classes[key]


class Table:
    """A refreshed handle on an Iceberg table of the session's catalogs (Java API); inside
    `one_read`, a handle shared by every `Table` of that name."""

    def __init__(self, spark: SparkSession, name: str, time_column: str | None = None) -> None:
        jvm: Any = spark._jvm
        self._jvm = jvm
        shared: dict[str, Any] | None = getattr(_reading, "tables", None)
        loaded = shared.get(name) if shared is not None else None
        if loaded is None:
            session: Any = spark._jsparkSession
            loaded = java_class(spark, "org.apache.iceberg.spark.Spark3Util").loadIcebergTable(
                session, name)
            loaded.refresh()  # the Spark catalog caches tables: see other writers' commits
            if shared is not None:
                shared[name] = loaded
        self._table = loaded
        self.name = name
        self.time_column = time_column
        self._spark = spark
        self._spans: dict[int, list[tuple[int, str]]] = {}

    def current_snapshot_id(self) -> int | None:
        snap = self._table.currentSnapshot()
        return None if snap is None else int(snap.snapshotId())

    def _snapshot(self, snap: Any) -> Snapshot:
        parent = snap.parentId()
        summary = snap.summary()
        kept = {key: str(summary.get(key)) for key in SUMMARY_KEYS
                if summary.get(key) is not None}
        return Snapshot(
            int(snap.snapshotId()), None if parent is None else int(parent),
            None if snap.operation() is None else str(snap.operation()),
            EPOCH + timedelta(milliseconds=int(snap.timestampMillis())), kept)

    def snapshot(self, snapshot_id: int) -> Snapshot | None:
        """One snapshot by id, or None when it is not in the metadata (expired)."""
        snap = self._table.snapshot(snapshot_id)
        return None if snap is None else self._snapshot(snap)

    def snapshots(self) -> dict[int, Snapshot]:
        """Every snapshot in the table's metadata (ancestors and others), by id."""
        return {int(s.snapshotId()): self._snapshot(s) for s in self._table.snapshots()}

    def history(self) -> History:
        """The snapshots as a lazy mapping: each read when first asked for."""
        return History(self)

    def properties(self) -> dict[str, str]:
        """The table properties, read in one call (a Java map entry by entry costs two
        round trips each)."""
        props = self._table.properties()
        joiner = java_class(self._spark, _JOINER)
        joined = str(joiner.on(_ENTRY).withKeyValueSeparator(_KEY).join(props))
        pairs = [entry.split(_KEY, 1) for entry in joined.split(_ENTRY)] if joined else []
        if len(pairs) == int(props.size()) and all(len(pair) == 2 for pair in pairs):
            return dict((key, value) for key, value in pairs)
        return {str(k): str(v) for k, v in dict(props).items()}  # a separator in a value

    def _time_fields(self, spec_id: int) -> list[tuple[int, str]]:
        """(position in the partition tuple, transform) of the spec's fields on the time column."""
        if spec_id not in self._spans:
            spec = self._table.specs().get(spec_id)
            schema = self._table.schema()
            fields = []
            for i, field in enumerate(spec.fields()):
                source = schema.findColumnName(field.sourceId())
                transform = str(field.transform().toString())
                if source == self.time_column and transform in ("hour", "day", "month", "year"):
                    fields.append((i, transform))
            self._spans[spec_id] = fields
        return self._spans[spec_id]

    def _info(self, file: Any) -> FileInfo:
        span: TimeRange | None = None
        partition = file.partition()
        for position, transform in self._time_fields(int(file.specId())):
            value = partition.get(position, _integer_class(self._spark))
            if value is not None:
                span = transform_span(transform, int(value))
                break
        return FileInfo(str(file.location()), str(file.content().toString()), span,
                        int(file.recordCount()), str(file.format().toString()))

    def file_changes(self, snapshot_id: int) -> FileChanges:
        """The data and delete files that snapshot `snapshot_id` added and removed."""
        snap = self._table.snapshot(snapshot_id)
        io = self._table.io()

        def infos(files: Any) -> tuple[FileInfo, ...]:
            return tuple(self._info(f) for f in files)

        return FileChanges(
            infos(snap.addedDataFiles(io)), infos(snap.removedDataFiles(io)),
            infos(snap.addedDeleteFiles(io)), infos(snap.removedDeleteFiles(io)))


class History(Mapping[int, Snapshot]):
    """A table's snapshots by id, read one at a time (a walk over a few recent snapshots
    costs a few metadata lookups, however long the history)."""

    def __init__(self, table: Table) -> None:
        self._table = table
        self._cache: dict[int, Snapshot | None] = {}
        self._all: dict[int, Snapshot] | None = None

    def get(self, key: object, default: Any = None) -> Any:
        if not isinstance(key, int):
            return default
        if key not in self._cache:
            self._cache[key] = self._table.snapshot(key)
        found = self._cache[key]
        return default if found is None else found

    def __getitem__(self, key: int) -> Snapshot:
        found = self.get(key)
        if found is None:
            raise KeyError(key)
        return found  # type: ignore[no-any-return]

    def __contains__(self, key: object) -> bool:
        return self.get(key) is not None

    def _everything(self) -> dict[int, Snapshot]:
        if self._all is None:
            self._all = self._table.snapshots()
        return self._all

    def __iter__(self) -> Iterator[int]:
        return iter(self._everything())

    def __len__(self) -> int:
        return len(self._everything())


class _Callable:
    """A Python function as a java.util.concurrent.Callable (py4j callback)."""

    def __init__(self, action: Callable[[], Any]) -> None:
        self.action = action
        self.result: Any = None
        self.error: BaseException | None = None

    def call(self) -> None:
        try:
            self.result = self.action()
        except BaseException as exc:  # noqa: BLE001 - re-raised on the Python side
            self.error = exc

    class Java:
        implements = ["java.util.concurrent.Callable"]


def with_commit_properties(
    spark: SparkSession, properties: Mapping[str, str], action: Callable[[], T]
) -> T:
    """Run `action` so that every Iceberg commit it makes carries `properties` in its
    snapshot summary (Iceberg's CommitMetadata, also for SQL MERGE, which takes no options).

    The action runs on the JVM thread that holds the properties (py4j pins Python threads to
    JVM threads and runs a callback's calls on the calling thread).
    """
    from pyspark.java_gateway import ensure_callback_server_started

    gateway: Any = spark.sparkContext._gateway
    ensure_callback_server_started(gateway)  # type: ignore[no-untyped-call]
    jvm: Any = spark._jvm
    props = jvm.java.util.HashMap()
    for key, value in properties.items():
        props.put(key, value)
    call = _Callable(action)
    runtime = jvm.java.lang.Class.forName("java.lang.RuntimeException")
    jvm.org.apache.iceberg.spark.CommitMetadata.withCommitProperties(props, call, runtime)
    if call.error is not None:
        raise call.error
    return call.result  # type: ignore[no-any-return]
