"""Every trade-id scheme stores each trade once and gives exact bars (issue #14).

The expected bars come from the feed rows the test wrote, folded in pure Python
(`tests.oracle.oracle_bars`), ordered at equal times by each scheme's documented tie rule:
the integer id, the daily id, the file order (no ids) or the 64-bit key of a string id.
Nothing here calls `Rollup.plan_direct`.
"""

from __future__ import annotations

import csv
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from rollup.incremental.runner import run_cascade
from rollup.ingestion.batch import ingest_file
from rollup.specs.trade_ids import TradeIds
from rollup.storage.tables import Tables
from tests.oracle import Trade, compare_level, oracle_bars, read_stored

pytestmark = pytest.mark.spark

MIDNIGHT = datetime(2026, 3, 2, tzinfo=UTC)
HEADER = ("exchange", "symbol", "trade_id", "ts", "price", "quantity", "side")

Row = tuple[str, str, str, datetime, str, str, str]


def _feed() -> tuple[list[Row], list[Row]]:
    """Two deliveries of one symbol around midnight: ids restart at 1 every UTC day, three
    trades share each tied instant with different prices (open/close depend on ties)."""
    first: list[Row] = []
    second: list[Row] = []
    for day_offset, base in ((-1, MIDNIGHT - timedelta(minutes=3)), (0, MIDNIGHT)):
        for n in range(1, 13):
            ts = base + timedelta(seconds=15 * (n // 3))  # three trades per instant
            price = str(Decimal(100 + (n * 7) % 11) + Decimal("0.25"))
            row = ("EX", "AAA", str(n), ts, price, f"{n}.5", "buy" if n % 2 else "sell")
            (first if n <= 8 else second).append(row)
        del day_offset
    return first, second


def _write(path: Path, rows: list[Row], ids: str) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        header = [c for c in HEADER if ids != "none" or c != "trade_id"]
        writer.writerow(header)
        for r in rows:
            text = [r[0], r[1], r[2], r[3].isoformat().replace("+00:00", "Z"), r[4], r[5], r[6]]
            if ids == "string":
                text[2] = f"exec-{r[3]:%Y%m%d}-{r[2]}"
            if ids == "none":
                del text[2]
            writer.writerow(text)
    return path


def _tie_order(ids: str, rows: list[Row], file_order: list[int],
               stored_keys: dict[str, int]) -> list[int]:
    """Each row's rank in the scheme's documented order among trades of the same instant."""
    if ids == "integer":  # ids unique forever in this scheme: day * 1000 + n
        return [int(f"{r[3]:%j}") * 1000 + int(r[2]) for r in rows]
    if ids == "daily":
        return [int(r[2]) for r in rows]
    if ids == "none":
        return file_order
    return [stored_keys[f"exec-{r[3]:%Y%m%d}-{r[2]}"] for r in rows]


def _assert_bars_of_feed(tables: Tables, rows: list[Row], ranks: list[int], *,
                         sides: bool = True) -> None:
    """Every stored level equals the oracle over the feed rows, ties ordered by `ranks`
    (without `sides`, the stored feed had no side column: every side is unknown)."""
    feed = [Trade(r[0], r[1], rank, r[3], Decimal(r[4]), Decimal(r[5]),
                  (r[6] or None) if sides else None)
            for r, rank in zip(rows, ranks, strict=True)]
    bars = read_stored(tables)
    problems: list[str] = []
    for level in tables.dag.order():
        problems += compare_level(level.name, bars[level.name],
                                  oracle_bars(feed, level.timeframe))
    assert not problems, "\n".join(problems)


def _integer_ids(rows: list[Row]) -> list[Row]:
    return [(r[0], r[1], str(int(f"{r[3]:%j}") * 1000 + int(r[2])), *r[3:]) for r in rows]


@pytest.mark.parametrize("ids", ["integer", "string", "daily", "none"])
def test_scheme_round_trips_to_exact_bars(tables: Tables, tmp_path: Path, ids: str) -> None:
    first, second = _feed()
    if ids == "integer":
        first, second = _integer_ids(first), _integer_ids(second)
    scheme = TradeIds(ids)
    a = _write(tmp_path / "a.csv", first, ids)
    b = _write(tmp_path / "b.csv", second, ids)
    reports = [ingest_file(tables, p, trade_ids=scheme) for p in (a, b, a)]
    assert [(r.ingested, r.duplicates, r.quarantined) for r in reports] == [
        (len(first), 0, 0), (len(second), 0, 0), (0, len(first), 0)], reports
    run_cascade(tables)

    stored = tables.read_trades().collect()
    keys = [(r.exchange, r.symbol, r.trade_id) for r in stored]
    assert len(set(keys)) == len(keys) == len(first) + len(second)
    refs = {r.trade_ref: r.trade_id for r in stored}
    if ids == "string":  # the feed's text is kept, one per trade
        assert len(refs) == len(stored) and None not in refs
    elif ids == "daily":  # the same text on each of the two days
        assert {(r.ts.date(), r.trade_ref) for r in stored} == {
            (r[3].date(), r[2]) for r in first + second}
    else:
        assert set(refs) == {None}
    rows = first + second
    order = list(range(len(first))) + list(range(len(second)))
    ranks = _tie_order(ids, rows, order, refs)
    assert {(r.ts, str(r.price), str(r.quantity), r.side) for r in stored} == {
        (r[3].replace(tzinfo=None), f"{Decimal(r[4]):.8f}", f"{Decimal(r[5]):.8f}", r[6])
        for r in rows}
    _assert_bars_of_feed(tables, rows, ranks)


def test_daily_ids_repeat_across_days_but_not_within_one(tables: Tables, tmp_path: Path) -> None:
    """The same daily id on two days is two trades; on one day with new content, a conflict."""
    day1 = ("EX", "AAA", "7", MIDNIGHT - timedelta(hours=1), "10", "1", "buy")
    day2 = ("EX", "AAA", "7", MIDNIGHT + timedelta(hours=1), "11", "1", "sell")
    clash = ("EX", "AAA", "7", MIDNIGHT + timedelta(hours=2), "12", "1", "sell")
    report = ingest_file(tables, _write(tmp_path / "d.csv", [day1, day2], "daily"),
                         trade_ids=TradeIds("daily"))
    assert (report.ingested, report.quarantined) == (2, 0)
    report = ingest_file(tables, _write(tmp_path / "e.csv", [clash], "daily"),
                         trade_ids=TradeIds("daily"))
    assert (report.ingested, report.quarantined) == (0, 1)
    assert report.reasons == {"trade_id already stored with different content": 1}


def test_daily_ids_follow_the_configured_zone(tables: Tables, tmp_path: Path) -> None:
    """Chicago days: 23:30 UTC and 00:30 UTC are the same local day, so one id clashes."""
    rows = [("EX", "AAA", "5", MIDNIGHT - timedelta(minutes=30), "10", "1", "buy"),
            ("EX", "AAA", "5", MIDNIGHT + timedelta(minutes=30), "11", "1", "buy")]
    path = _write(tmp_path / "z.csv", rows, "daily")
    report = ingest_file(tables, path, trade_ids=TradeIds("daily", "America/Chicago"))
    assert (report.ingested, report.quarantined) == (1, 1)
    assert report.reasons == {"trade_id repeated in this file with different content": 1}


def test_bad_ids_per_scheme_are_quarantined(tables: Tables, tmp_path: Path) -> None:
    ts = MIDNIGHT + timedelta(hours=3)
    rows = [("EX", "AAA", "x1", ts, "10", "1", "buy"),
            ("EX", "AAA", str(1 << 40), ts, "10", "1", "buy"),
            ("EX", "AAA", "12", ts, "10", "1", "buy")]
    report = ingest_file(tables, _write(tmp_path / "bad.csv", rows, "daily"),
                         trade_ids=TradeIds("daily"))
    assert (report.ingested, report.quarantined) == (1, 2)
    assert set(report.reasons) == {"trade_id is not an integer from 0 to 2^40-1 "
                                   "(trade_ids = daily)"}


def test_scheme_config_errors_name_the_value() -> None:
    from rollup.errors import ConfigError

    with pytest.raises(ConfigError, match="invalid trade_ids 'uuid'.*integer, string, daily"):
        TradeIds.from_config({"trade_ids": "uuid"})
    with pytest.raises(ConfigError, match="invalid trade_id_zone 'Mars/Base'"):
        TradeIds.from_config({"trade_ids": "daily", "trade_id_zone": "Mars/Base"})


@pytest.mark.parametrize("ids", ["string", "daily"])
def test_external_source_with_its_own_id_scheme(tables: Tables, ids: str) -> None:
    """An external table of string (or daily) ids, read through `[source] trade_ids`."""
    import attrs
    from pyspark.sql import functions as F

    from rollup.transforms.source import TradeSource

    spark = tables.spark
    raw = f"{tables.catalog}.{tables.namespace}.feed"
    spark.sql(f"CREATE TABLE {raw} (exchange STRING, symbol STRING, exec_id STRING, "
              "ts TIMESTAMP, price DECIMAL(18,8), quantity DECIMAL(20,8)) USING iceberg")
    first, second = _feed()
    rows = first + second
    text = [f"exec-{r[3]:%Y%m%d}-{r[2]}" if ids == "string" else r[2] for r in rows]
    frame = spark.createDataFrame(
        [(r[0], r[1], t, r[3], Decimal(r[4]), Decimal(r[5])) for r, t in zip(rows, text,
                                                                            strict=True)],
        spark.table(raw).schema)
    frame.writeTo(raw).append()
    source = TradeSource(("rollup", tables.namespace, "feed"), {"trade_id": "exec_id"},
                         trade_ids=TradeIds(ids))
    with_source = attrs.evolve(tables, source=source)
    run_cascade(with_source)
    if ids == "string":  # the documented tie order: the xxHash64 of the text
        keyed = frame.select("exec_id", F.xxhash64("exec_id").alias("k")).collect()
        hashes = {r.exec_id: r.k for r in keyed}
        ranks = [hashes[t] for t in text]
    else:
        ranks = [int(r[2]) for r in rows]
    _assert_bars_of_feed(with_source, rows, ranks, sides=False)  # the table has no side


def test_source_refuses_the_none_scheme() -> None:
    from rollup.errors import ConfigError
    from rollup.transforms.source import TradeSource

    with pytest.raises(ConfigError, match="invalid trade_ids 'none' in \\[source\\]"):
        TradeSource.from_config({"table": "a.b.c", "trade_ids": "none"})
