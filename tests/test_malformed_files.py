"""Malformed files fail with one line naming the file and the problem, and write nothing."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rollup.cli import main
from rollup.errors import InputError
from rollup.ingestion.batch import ingest_file
from rollup.storage.tables import REJECTED_TABLE, Tables

pytestmark = pytest.mark.spark

HEADER = "exchange,symbol,trade_id,ts,price,quantity,side\n"
GOOD_LINE = "EX,AAA,1,2024-01-02T00:00:01Z,100.5,2,buy\n"


def _parquet(path: Path, **columns: pa.Array) -> Path:
    base: dict[str, pa.Array] = {
        "exchange": pa.array(["EX", "EX"]), "symbol": pa.array(["AAA", "AAA"]),
        "trade_id": pa.array([1, 2], pa.int64()),
        "ts": pa.array([datetime(2024, 1, 2, tzinfo=UTC)] * 2, pa.timestamp("us", "UTC")),
        "price": pa.array([Decimal("1.5"), Decimal("2")], pa.decimal128(18, 8)),
        "quantity": pa.array([Decimal("1"), Decimal("3")], pa.decimal128(20, 8)),
    }
    base.update(columns)
    pq.write_table(pa.table({k: v for k, v in base.items() if v is not None}), path)
    return path


def truncated_parquet(tmp: Path) -> Path:
    whole = _parquet(tmp / "whole.parquet")
    path = tmp / "truncated.parquet"
    path.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    return path


def junk(name: str, prefix: bytes = b"") -> Callable[[Path], Path]:
    def make(tmp: Path) -> Path:
        path = tmp / name
        path.write_bytes(prefix + bytes(range(256)) + os.urandom(4000))
        return path
    return make


def text(name: str, content: str | bytes) -> Callable[[Path], Path]:
    def make(tmp: Path) -> Path:
        path = tmp / name
        path.write_bytes(content.encode() if isinstance(content, str) else content)
        return path
    return make


def parquet_with(name: str, **columns: Any) -> Callable[[Path], Path]:
    return lambda tmp: _parquet(tmp / name, **columns)


# (id, builder, options for ingest_file, fragment the one-line error must contain)
KINDS: list[tuple[str, Callable[[Path], Path], dict[str, Any], str]] = [
    ("truncated parquet", truncated_parquet, {}, "not a Parquet file or truncated"),
    ("junk parquet", junk("junk.parquet"), {}, "not a Parquet file or truncated"),
    ("junk with parquet magic", junk("magic.parquet", b"PAR1"), {},
     "not a Parquet file or truncated"),
    ("junk csv", junk("junk.csv"), {}, "binary data, not a CSV text file"),
    ("empty csv", text("empty.csv", ""), {}, "empty file"),
    ("empty parquet", text("empty.parquet", ""), {}, "empty file"),
    ("blank csv", text("blank.csv", "\n  \n"), {}, "empty file"),
    ("header only", text("header.csv", HEADER), {}, "no data rows"),
    ("missing column", text("missing.csv", "exchange,symbol,trade_id,ts,price\nEX,A,1,x,1\n"),
     {}, "missing column(s) quantity"),
    ("no header", text("noheader.csv", GOOD_LINE * 2), {}, "missing column(s) exchange"),
    ("duplicate column", text("dup.csv", "exchange,symbol,trade_id,ts,price,price,quantity\n"),
     {}, "column price appears twice"),
    ("latin-1 header", text("latin.csv", "exchange,symbol,trade_id,ts,pr\xe9ce\n".encode(
        "latin-1")), {}, "not UTF-8 text"),
    ("no line break", text("oneline.csv", "x" * 70_000), {}, "no line break"),
    ("csv words for prices", text("words.csv", HEADER + "EX,A,1,2024-01-02,one,1,\n"
                                  "EX,A,2,2024-01-02,two,1,\n"), {},
     "every row fails with 'price is not a decimal number'"),
    ("epoch ts without unit", text("epoch.csv", HEADER + "EX,A,1,1704153600000,1,1,\n"), {},
     "every row fails with 'ts is a number but no time unit was given"),
    ("wrong time unit", text("unit.csv", HEADER + "EX,A,1,1704153600000,1,1,\n"),
     {"time_unit": "s"}, "every row fails with 'ts later than now"),
    ("parquet missing column", parquet_with("noqty.parquet", quantity=None), {},
     "missing column(s) quantity"),
    ("parquet boolean price", parquet_with("bool.parquet", price=pa.array([True, False])), {},
     "column price has type boolean"),
    ("parquet struct symbol", parquet_with("struct.parquet", symbol=pa.array(
        [{"a": 1}, {"a": 2}])), {}, "column symbol has type struct"),
    ("parquet float ts", parquet_with("fts.parquet", ts=pa.array([1.7e9, 1.7e9])),
     {"time_unit": "s"}, "column ts has type double"),
    ("parquet nanosecond ts", parquet_with("ns.parquet", ts=pa.array(
        [1, 2], pa.timestamp("ns", "UTC"))), {}, "nanosecond timestamps"),
    ("unknown suffix", text("trades.json", '{"a": 1}'), {}, "unknown file type .json"),
    ("bad format option", text("f.csv", HEADER + GOOD_LINE), {"fmt": "xlsx"},
     "invalid format 'xlsx'"),
]


@pytest.fixture(scope="module")
def module_tables(spark: Any) -> Iterator[Tables]:
    tables = Tables(spark, "rollup", f"mf_{uuid.uuid4().hex[:8]}")
    tables.create_all()
    yield tables


def table_state(tables: Tables) -> dict[str, Any]:
    """Row count and newest snapshot of trades and quarantine: must not move on failures."""
    state: dict[str, Any] = {}
    for name in (tables.trades_table, REJECTED_TABLE):
        full = tables.name(name)
        snaps = tables.spark.table(f"{full}.snapshots").select("snapshot_id").collect()
        state[name] = (tables.spark.table(full).count(), sorted(r[0] for r in snaps))
    return state


@pytest.mark.parametrize(("build", "options", "fragment"), [k[1:] for k in KINDS],
                         ids=[k[0] for k in KINDS])
def test_malformed_file_one_line_error_nothing_written(
        module_tables: Tables, tmp_path: Path, build: Callable[[Path], Path],
        options: dict[str, Any], fragment: str) -> None:
    path = build(tmp_path)
    before = table_state(module_tables)
    with pytest.raises(InputError) as info:
        ingest_file(module_tables, path, **options)
    message = str(info.value)
    assert fragment in message
    assert "\n" not in message and len(message) < 400
    assert str(path.resolve()) in message or str(path) in message
    assert table_state(module_tables) == before


def test_missing_file(module_tables: Tables, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        ingest_file(module_tables, tmp_path / "nope.csv")


def test_directory_with_one_bad_file_writes_nothing(module_tables: Tables,
                                                   tmp_path: Path) -> None:
    folder = tmp_path / "parts"
    folder.mkdir()
    (folder / "a.csv").write_text(HEADER + GOOD_LINE)
    (folder / "b.csv").write_text("symbol,exchange,trade_id,ts,price\nA,EX,1,x,1\n")
    before = table_state(module_tables)
    with pytest.raises(InputError) as info:
        ingest_file(module_tables, folder)
    assert str(info.value).startswith(f"{folder / 'b.csv'}: missing column(s) quantity")
    assert table_state(module_tables) == before


def test_cli_bad_file_is_one_line_and_the_good_file_still_goes_in(
        module_tables: Tables, warehouse: Path, tmp_path: Path, capsys: Any) -> None:
    bad = truncated_parquet(tmp_path)
    good = tmp_path / "good.csv"
    good.write_text(HEADER + "EX,CLI,1,2024-01-02T00:00:01Z,100.5,2,buy\n")
    code = main(["--catalog", "rollup", "--namespace", module_tables.namespace,
                 "--warehouse", str(warehouse), "ingest", str(bad), str(good)])
    captured = capsys.readouterr()
    assert code == 1
    errors = [line for line in captured.err.splitlines() if line.startswith("rollup: error:")]
    assert len(errors) == 1 and str(bad) in errors[0]
    assert "Traceback" not in captured.err and "at org.apache" not in captured.err
    assert f"{good}: read 1, ingested 1, quarantined 0, duplicates skipped 0" in captured.out
    assert module_tables.read_trades().where("symbol = 'CLI'").count() == 1
