"""Tests for rollup.spark.engine: config helpers (no Spark) and Iceberg on a real local session."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import pytest

from rollup.errors import ConfigError, EngineError
from rollup.spark import engine
from rollup.spark.engine import (
    DEFAULT_CATALOG,
    configure_session,
    get_spark,
    iceberg_conf,
    is_commit_conflict,
    resolve_warehouse,
)

# ---------------------------------------------------------------- no Spark


def test_iceberg_conf() -> None:
    conf = iceberg_conf("cat_1", "/wh")
    assert conf["spark.sql.catalog.cat_1"] == "org.apache.iceberg.spark.SparkCatalog"
    assert conf["spark.sql.catalog.cat_1.type"] == "hadoop"
    assert conf["spark.sql.catalog.cat_1.warehouse"] == "/wh"
    assert conf["spark.sql.extensions"].endswith("IcebergSparkSessionExtensions")
    assert conf["spark.sql.session.timeZone"] == "UTC"
    assert conf["spark.sql.sources.partitionOverwriteMode"] == "dynamic"


@pytest.mark.parametrize("bad", ["", "1cat", "a-b", "a b", "a.b", "cat\n", "x" * 129, "`x`"])
def test_iceberg_conf_rejects_bad_catalog(bad: str) -> None:
    with pytest.raises(ConfigError, match="invalid catalog name"):
        iceberg_conf(bad, "/wh")


def test_resolve_warehouse(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("ROLLUP_WAREHOUSE", raising=False)
    monkeypatch.chdir(tmp_path)
    assert resolve_warehouse(None) == str(tmp_path / "warehouse")
    assert (tmp_path / "warehouse").is_dir()
    assert resolve_warehouse("rel/wh") == str(tmp_path / "rel" / "wh")
    assert resolve_warehouse(tmp_path / "p") == str(tmp_path / "p")
    monkeypatch.setenv("ROLLUP_WAREHOUSE", str(tmp_path / "env"))
    assert resolve_warehouse(None) == str(tmp_path / "env")
    assert resolve_warehouse(tmp_path / "arg") == str(tmp_path / "arg")  # argument wins
    for uri in ("s3://bucket/wh", "file:///tmp/x", "file:/tmp/y", "hdfs://nn:8020/wh"):
        assert resolve_warehouse(uri) == uri


def test_resolve_warehouse_errors(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(EngineError) as info:
        resolve_warehouse(blocker / "wh")
    assert str(blocker / "wh") in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(EngineError, match="cannot create"):
        resolve_warehouse(blocker)  # exists, but is not a directory


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_resolve_warehouse_not_writable(tmp_path: Path) -> None:
    ro = tmp_path / "ro"
    ro.mkdir(mode=0o500)
    with pytest.raises(EngineError, match="not writable"):
        resolve_warehouse(ro)


def _fake_java(directory: Path, output: str) -> Path:
    """A `java` that prints `output` to stderr for -version, as the JDK does."""
    directory.mkdir(parents=True, exist_ok=True)
    java = directory / "java"
    lines = "".join(f"echo '{line}' >&2\n" for line in output.splitlines())
    java.write_text(f"#!/bin/sh\n{lines}")  # builtins only: PATH may hold nothing else
    java.chmod(0o755)
    return java


def test_check_java(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(engine, "_JAVA_OK", set())
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(EngineError) as info:
        engine.check_java()
    assert str(info.value) == (
        "Java 17 not found: install OpenJDK 17 (e.g. apt-get install openjdk-17-jre-headless) "
        "or set JAVA_HOME"
    )
    monkeypatch.setenv("JAVA_HOME", str(tmp_path))
    with pytest.raises(EngineError, match="has no bin/java"):
        engine.check_java()
    _fake_java(tmp_path / "bin", 'openjdk version "17.0.9" 2023-10-17\nOpenJDK Runtime')
    engine.check_java()


@pytest.mark.parametrize(("output", "found"), [
    ('openjdk version "11.0.21" 2023-10-17', "11.0.21"),
    ('java version "1.8.0_392"\nJava(TM) SE Runtime Environment', "1.8.0_392"),
])
def test_check_java_refuses_older_than_17(tmp_path: Path, monkeypatch, output: str,
                                          found: str) -> None:
    monkeypatch.setattr(engine, "_JAVA_OK", set())
    monkeypatch.delenv("JAVA_HOME", raising=False)
    java = _fake_java(tmp_path / "old", output)
    monkeypatch.setenv("PATH", str(java.parent))
    with pytest.raises(engine.JavaVersionError) as info:
        engine.check_java()
    message = str(info.value)
    assert message.startswith(f"Java {found} found at {java}, but rollup needs Java 17 or newer")
    assert "\n" not in message
    assert isinstance(info.value, EngineError)


@pytest.mark.parametrize(("output", "major"), [
    ('openjdk version "17.0.9" 2023-10-17', 17), ('openjdk version "21" 2023-09-19', 21),
    ('java version "1.8.0_392"', 8), ('openjdk version "11.0.2" 2019-01-15', 11),
])
def test_java_version_parses_every_scheme(tmp_path: Path, output: str, major: int) -> None:
    assert engine.java_version(str(_fake_java(tmp_path, output)))[0] == major


def test_java_that_prints_no_version_is_one_line(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(engine, "_JAVA_OK", set())
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setenv("PATH", str(_fake_java(tmp_path, "Segmentation fault").parent))
    with pytest.raises(engine.JavaVersionError, match="printed no version") as info:
        engine.check_java()
    assert "\n" not in str(info.value)


def test_java_is_checked_once_per_process(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(engine, "_JAVA_OK", set())
    monkeypatch.delenv("JAVA_HOME", raising=False)
    java = _fake_java(tmp_path, 'openjdk version "17.0.1"')
    monkeypatch.setenv("PATH", str(tmp_path))
    engine.check_java()
    java.write_text("#!/bin/sh\nexit 1\n")  # would fail if run again
    engine.check_java()


def test_get_spark_without_java_fails_fast(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(engine, "_JAVA_OK", set())
    monkeypatch.setattr(engine, "_active_session", lambda: None)
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(EngineError, match="Java 17 not found"):
        get_spark(tmp_path / "wh")
    with pytest.raises(ConfigError):
        get_spark(tmp_path / "wh", catalog="bad-name")


class FakeConf:
    def __init__(self, values: dict[str, str]) -> None:
        self.values = dict(values)

    def get(self, key: str, default: str | None = None) -> str | None:
        return self.values.get(key, default)

    def set(self, key: str, value: str) -> None:
        self.values[key] = value


class FakeSession:
    def __init__(self, values: dict[str, str]) -> None:
        self.conf = FakeConf(values)


def test_configure_session_unconfigured_catalog() -> None:
    with pytest.raises(EngineError) as info:
        configure_session(FakeSession({}), catalog="rollup", warehouse="/wh")  # type: ignore[arg-type]
    message = str(info.value)
    assert "\n" not in message
    for key in (
        "spark.sql.catalog.rollup=",
        "spark.sql.catalog.rollup.type=hadoop",
        "spark.sql.catalog.rollup.warehouse=/wh",
        "spark.sql.extensions=",
    ):
        assert key in message


def test_configure_session_sets_runtime_conf(tmp_path: Path) -> None:
    session = FakeSession(iceberg_conf("rollup", str(tmp_path)))
    session.conf.values["spark.sql.session.timeZone"] = "Europe/Berlin"
    session.conf.values.pop("spark.sql.sources.partitionOverwriteMode")
    assert configure_session(session, catalog="rollup") is session  # type: ignore[arg-type]
    assert session.conf.values["spark.sql.session.timeZone"] == "UTC"
    assert session.conf.values["spark.sql.sources.partitionOverwriteMode"] == "dynamic"
    configure_session(session, catalog="rollup", warehouse=f"file://{tmp_path}/")  # type: ignore[arg-type]
    with pytest.raises(EngineError, match="uses warehouse"):
        configure_session(session, catalog="rollup", warehouse=tmp_path / "other")  # type: ignore[arg-type]


def test_is_commit_conflict_without_java() -> None:
    assert not is_commit_conflict(ValueError("x"))


class _JavaError:
    """Stands in for a py4j Java exception: a class name, a message, a cause."""

    def __init__(self, name: str, message: str, cause: _JavaError | None = None) -> None:
        self.name, self.message, self.cause = name, message, cause

    def getClass(self) -> _JavaError:  # noqa: N802  (the Java API's spelling)
        return self

    def getName(self) -> str:  # noqa: N802
        return self.name

    def getMessage(self) -> str:  # noqa: N802
        return self.message

    def getCause(self) -> _JavaError | None:  # noqa: N802
        return self.cause


class _Py4JError(Exception):
    def __init__(self, java: _JavaError) -> None:
        super().__init__("py4j")
        self.java_exception = java


@pytest.mark.parametrize(("name", "message", "conflict"), [
    ("org.apache.iceberg.exceptions.ValidationException",
     "Found conflicting files that can contain records matching ...", True),
    ("org.apache.iceberg.exceptions.ValidationException",
     "Found new conflicting delete files that can apply to records matching ...", True),
    ("org.apache.iceberg.exceptions.CommitFailedException", "Commit failed after 4 tries", True),
    ("org.apache.iceberg.exceptions.ValidationException",
     "Cannot delete file where some, but not all, rows match filter", False),
    ("java.lang.IllegalStateException", "Found conflicting files", False),
])
def test_is_commit_conflict_only_for_races(name: str, message: str, conflict: bool) -> None:
    wrapped = _JavaError("org.apache.spark.SparkException", "Job aborted",
                         cause=_JavaError(name, message))
    assert is_commit_conflict(_Py4JError(wrapped)) is conflict


# ---------------------------------------------------------------- Spark + Iceberg

TABLE_PROPS = (
    "'format-version'='2', 'write.delete.mode'='merge-on-read', "
    "'write.update.mode'='merge-on-read', 'write.merge.mode'='merge-on-read'"
)
SCHEMA = "sym STRING, ts TIMESTAMP, v BIGINT"


def make_table(spark, namespace: str, name: str = "bars") -> str:
    table = f"{DEFAULT_CATALOG}.{namespace}.{name}"
    spark.sql(
        f"CREATE TABLE {table} ({SCHEMA}) USING iceberg PARTITIONED BY (days(ts)) "
        f"TBLPROPERTIES ({TABLE_PROPS})"
    )
    frame(
        spark, [("a", dt.datetime(2024, 1, 1, 1), 1), ("b", dt.datetime(2024, 1, 2, 1), 2)]
    ).writeTo(table).append()
    return table


def snapshots(spark, table: str) -> list:
    columns = ("snapshot_id", "operation", "summary")
    return spark.table(f"{table}.snapshots").orderBy("committed_at").select(*columns).collect()


def rows(spark, table: str) -> list[tuple]:
    return [tuple(r) for r in spark.table(table).orderBy("sym", "ts").collect()]


def frame(spark, data: list[tuple]):
    return spark.createDataFrame(data, SCHEMA.replace("STRING", "string").lower())


@pytest.mark.spark
def test_session_settings(spark, warehouse: Path) -> None:
    assert spark.conf.get("spark.sql.session.timeZone") == "UTC"
    assert spark.conf.get("spark.sql.sources.partitionOverwriteMode") == "dynamic"
    assert spark.conf.get("spark.sql.shuffle.partitions") == "2"
    assert spark.conf.get("spark.sql.catalog.rollup.warehouse") == str(warehouse)
    assert get_spark() is spark or get_spark()._jsparkSession.equals(spark._jsparkSession)
    assert get_spark(warehouse) is not None
    with pytest.raises(EngineError, match="uses warehouse"):
        get_spark(warehouse / "elsewhere")
    with pytest.raises(EngineError, match="not configured"):
        get_spark(catalog="other_catalog")


@pytest.mark.spark
def test_iceberg_merge_overwrite_and_snapshots(spark, namespace: str, warehouse: Path) -> None:
    table = make_table(spark, namespace)
    props = dict(spark.sql(f"SHOW TBLPROPERTIES {table}").collect())
    assert props["format-version"] == "2" and props["write.merge.mode"] == "merge-on-read"
    assert (warehouse / namespace / "bars" / "metadata" / "version-hint.text").is_file()

    frame(
        spark, [("b", dt.datetime(2024, 1, 2, 1), 20), ("c", dt.datetime(2024, 1, 3), 3)]
    ).createOrReplaceTempView("src_merge")
    spark.sql(
        f"MERGE INTO {table} t USING src_merge s ON t.sym = s.sym AND t.ts = s.ts "
        "WHEN MATCHED THEN UPDATE SET * WHEN NOT MATCHED THEN INSERT *"
    )
    assert rows(spark, table) == [
        ("a", dt.datetime(2024, 1, 1, 1), 1),
        ("b", dt.datetime(2024, 1, 2, 1), 20),
        ("c", dt.datetime(2024, 1, 3), 3),
    ]
    merge = snapshots(spark, table)[-1]
    assert merge.operation == "overwrite"
    assert merge.summary["added-position-deletes"] == "1"  # merge-on-read: a delete file

    # Dynamic INSERT OVERWRITE replaces only the partitions present in the query.
    spark.sql(f"INSERT OVERWRITE {table} VALUES ('z', TIMESTAMP'2024-01-01 05:00:00', 9)")  # noqa: S608
    assert [r[0] for r in rows(spark, table)] == ["b", "c", "z"]

    # The DataFrame equivalent, with a custom snapshot property.
    frame(spark, [("y", dt.datetime(2024, 1, 3, 7), 7)]).writeTo(table).option(
        "snapshot-property.rollup.run", "r1"
    ).overwritePartitions()
    assert [r[0] for r in rows(spark, table)] == ["b", "y", "z"]
    last = snapshots(spark, table)[-1]
    assert last.operation == "overwrite" and last.summary["rollup.run"] == "r1"
    assert [s.operation for s in snapshots(spark, table)] == [
        "append",
        "overwrite",
        "overwrite",
        "overwrite",
    ]


@pytest.mark.spark
def test_iceberg_empty_writes(spark, namespace: str) -> None:
    """Pins behaviour callers rely on: which no-op writes still commit a snapshot."""
    table = make_table(spark, namespace)
    empty = frame(spark, [])
    empty.createOrReplaceTempView("src_empty")
    before = len(snapshots(spark, table))
    empty.writeTo(table).overwritePartitions()
    assert len(snapshots(spark, table)) == before  # empty dynamic overwrite: no commit
    spark.sql(
        f"MERGE INTO {table} t USING src_empty s ON t.sym = s.sym AND t.ts = s.ts "
        "WHEN MATCHED THEN UPDATE SET * WHEN NOT MATCHED THEN INSERT *"
    )
    after = snapshots(spark, table)
    assert len(after) == before + 1  # an empty MERGE does commit an (empty) snapshot
    assert after[-1].operation == "overwrite"
    assert after[-1].summary["changed-partition-count"] == "0"


@pytest.mark.spark
def test_iceberg_entries_keep_adding_snapshot(spark, namespace: str) -> None:
    """``entries.snapshot_id`` is the snapshot that added the file, whatever its status.

    Status is relative to the manifest: after a plain append the old manifest is reused and its
    rows stay status 1 (ADDED); only a rewritten manifest turns them into 0 (EXISTING).
    """
    table = make_table(spark, namespace)
    first = snapshots(spark, table)[0].snapshot_id

    def entries() -> list:
        return (
            spark.table(f"{table}.entries")
            .selectExpr("snapshot_id", "status", "data_file.file_path", "data_file.content")
            .collect()
        )

    frame(spark, [("c", dt.datetime(2024, 1, 3, 1), 3)]).writeTo(table).append()
    after_append = {r.file_path.split("/")[-2]: (r.snapshot_id, r.status) for r in entries()}
    assert after_append["ts_day=2024-01-01"] == (first, 1)
    assert after_append["ts_day=2024-01-02"] == (first, 1)

    # Overwriting day 1 rewrites the first manifest: day 2's file becomes EXISTING (0) but keeps
    # the id of the snapshot that added it; the replaced file shows as DELETED (2).
    frame(spark, [("a", dt.datetime(2024, 1, 1, 2), 5)]).writeTo(table).overwritePartitions()
    overwrite = snapshots(spark, table)[-1].snapshot_id
    by_status = sorted((r.status, r.file_path.split("/")[-2], r.snapshot_id) for r in entries())
    assert (0, "ts_day=2024-01-02", first) in by_status
    assert (2, "ts_day=2024-01-01", overwrite) in by_status
    assert (1, "ts_day=2024-01-01", overwrite) in by_status


@pytest.mark.spark
def test_validated_overwrite_detects_conflict(spark, namespace: str) -> None:
    from py4j.protocol import Py4JJavaError

    table = make_table(spark, namespace)
    base = snapshots(spark, table)[-1].snapshot_id
    frame(spark, [("c", dt.datetime(2024, 1, 1, 5), 3)]).writeTo(table).append()  # same day
    writer = frame(spark, [("a", dt.datetime(2024, 1, 1, 1), 10)]).writeTo(table)
    with pytest.raises(Py4JJavaError) as info:
        writer.option("isolation-level", "serializable").option(
            "validate-from-snapshot-id", str(base)
        ).overwritePartitions()
    assert "ValidationException: Found conflicting files" in str(info.value)
    assert is_commit_conflict(info.value)
