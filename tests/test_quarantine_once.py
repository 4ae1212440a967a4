"""Quarantine records each rejected row of a file once and whole (a trade set aside for a
conflicting trade id keeps its content), even when reading the file again gives the row
another reason, and a file delivered again under the same name with other
bad rows has those rows quarantined (never silently dropped)."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
from pyspark.sql import functions as F

from rollup.ingestion.batch import ingest_file
from rollup.storage.tables import REJECTED_TABLE, Tables
from tests.test_ingest import write_csv

pytestmark = pytest.mark.spark


def rejects(tables: Tables, file: Path) -> list[tuple[int, str, str]]:
    rows = tables.spark.table(tables.name(REJECTED_TABLE)).where(
        F.col("source_file") == F.lit(str(file))).collect()
    return sorted((r.source_row, r.price, r.reason) for r in rows)


def test_a_row_is_quarantined_once_and_a_reused_name_keeps_its_own_rows(
        tables: Tables, tmp_path: Path) -> None:
    path = tmp_path / "feed.csv"
    write_csv(path, [
        ["EX", "AAA", "1", "2024-01-02T00:00:01Z", "100", "1", "buy"],
        ["EX", "AAA", "1", "2024-01-02T00:00:02Z", "101", "1", "buy"],  # id repeated, other content
        ["EX", "AAA", "2", "2024-01-02T00:00:03Z", "-5", "1", "sell"],  # negative price
    ])
    first = ingest_file(tables, path)
    assert (first.ingested, first.quarantined) == (1, 2)
    once = rejects(tables, path)
    assert [(row, Decimal(price)) for row, price, _ in once] == [(2, 101), (3, -5)]
    kept = tables.spark.table(tables.name(REJECTED_TABLE)).where("source_row = 2").first()
    assert kept is not None  # the set-aside trade is kept whole, as text
    assert (kept.exchange, kept.symbol, kept.trade_id, Decimal(kept.quantity), kept.side) == (
        "EX", "AAA", "1", 1, "buy")
    assert kept.ts.startswith("2024-01-02T00:00:02") and kept.ts.endswith("Z"), kept.ts

    again = ingest_file(tables, path)  # row 2 is now 'already stored with different content'
    assert again.ingested == 0
    assert rejects(tables, path) == once  # nothing recorded twice

    write_csv(path, [  # the same name, delivered again with other rows
        ["EX", "BBB", "7", "2024-01-02T00:00:05Z", "10", "1", "buy"],
        ["EX", "BBB", "8", "2024-01-02T00:00:06Z", "-1", "1", "buy"],  # row 2 again, new text
    ])
    third = ingest_file(tables, path)
    assert (third.ingested, third.quarantined) == (1, 1)
    now = rejects(tables, path)
    assert len(now) == 3 and (2, "-1") in [(row, price) for row, price, _ in now]  # as read
