"""Ingest: every row is ingested, quarantined with its reason, or skipped as an exact duplicate;
the good rows alone make the bars, equal to the direct aggregation of them."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rollup.cli import main
from rollup.incremental.runner import run_cascade
from rollup.ingestion.batch import IngestReport, ingest_file, ingest_files
from rollup.storage.tables import REJECTED_TABLE, Tables
from rollup.transforms import validate as V

pytestmark = pytest.mark.spark

HEADER = ["exchange", "symbol", "trade_id", "ts", "price", "quantity", "side"]
T0 = datetime(2024, 1, 2, 0, 0, tzinfo=UTC)
Trade = tuple[str, str, int, datetime, Decimal, Decimal, "str | None"]


def write_csv(path: Path, rows: Sequence[Sequence[str | None]],
              header: Sequence[str] = HEADER) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        for row in rows:
            writer.writerow(["" if v is None else v for v in row])
    return path


def text_row(t: Trade) -> list[str | None]:
    ex, sym, tid, ts, price, qty, side = t
    return [ex, sym, str(tid), ts.isoformat().replace("+00:00", "Z"), format(price, "f"),
            format(qty, "f"), side]


def feed_side(text: str | None) -> str | None:
    """A file's side as ingest keeps it: buy or sell in any case and spacing, else none."""
    side = (text or "").strip().lower()
    return side if side in ("buy", "sell") else None


def assert_bars_equal_oracle(tables: Tables, good: Sequence[Trade],
                             levels: Sequence[str] | None = None) -> None:
    """Bars in the tables == the independent oracle (tests/oracle.py) over exactly the good
    trades, on every window and column."""
    from tests import oracle

    trades = [oracle.Trade(ex, sym, tid, ts.astimezone(UTC), price, qty, feed_side(side))
              for ex, sym, tid, ts, price, qty, side in good]
    for level in tables.dag.order():
        if levels is not None and level.name not in levels:
            continue
        expected = oracle.oracle_bars(trades, level.timeframe)
        assert expected, f"no oracle bars for {level.name}"
        stored = oracle.collect_bars({level.name: tables.read_bars(level)})[level.name]
        problems = oracle.compare_level(level.name, stored, expected)
        assert not problems, "\n".join(problems[:10])


def stored_trades(tables: Tables) -> set[Trade]:
    rows = tables.read_trades().select(*HEADER).collect()
    return {(r.exchange, r.symbol, r.trade_id, r.ts.replace(tzinfo=UTC), r.price, r.quantity,
             r.side) for r in rows}


def quarantine(tables: Tables, file: Path | str) -> dict[int, str]:
    from pyspark.sql import functions as F

    rows = tables.spark.table(tables.name(REJECTED_TABLE)).where(
        F.col("source_file") == F.lit(str(file))).collect()
    out: dict[int, str] = {}
    for r in rows:
        assert r.source_row not in out, f"row {r.source_row} quarantined twice"
        out[r.source_row] = r.reason
    return out


def good_trades() -> list[Trade]:
    """Two symbols over two minutes, a tie on ts, zero-quantity trades (one minute of only them)."""
    d = Decimal
    s = timedelta(seconds=1)
    return [
        ("EX", "AAA", 1, T0 + 1 * s, d("100.5"), d("2"), "buy"),
        ("EX", "AAA", 2, T0 + 1 * s, d("101.25"), d("0.5"), "sell"),  # same ts: id breaks tie
        ("EX", "AAA", 3, T0 + 30 * s, d("99.00000001"), d("0"), None),  # zero quantity
        ("EX", "AAA", 4, T0 + 61 * s, d("102"), d("1.12345678"), "buy"),
        ("EX", "AAA", 5, T0 + 359 * s, d("103"), d("3"), None),
        ("EX", "BBB", 10, T0 + 5 * s, d("0.00001234"), d("1000000000"), "buy"),
        ("EX", "BBB", 11, T0 + 65 * s, d("0.00001240"), d("0"), None),  # a minute of only
        ("EX", "BBB", 12, T0 + 70 * s, d("0.00001250"), d("0"), "sell"),  # zero quantities
        ("EX", "BBB", 13, T0 + 3 * 3600 * s, d("0.00001300"), d("5.5"), None),
    ]


def bad_rows() -> list[tuple[list[str | None], str]]:
    """One row of every bad kind, with the reason it must get."""
    base = ["EX", "AAA", "900", "2024-01-02T00:00:10Z", "100", "1", "buy"]

    def row(i: int, **over: str | None) -> list[str | None]:
        r = list(base)
        r[2] = str(900 + i)
        for name, value in over.items():
            r[HEADER.index(name)] = value
        return r

    cases: list[tuple[dict[str, str | None], str]] = [
        ({"exchange": None}, "missing exchange"),
        ({"symbol": ""}, "missing symbol"),
        ({"trade_id": None}, "missing trade_id"),
        ({"ts": None}, "missing ts"),
        ({"price": None}, "missing price"),
        ({"quantity": None}, "missing quantity"),
        ({"exchange": "EX'; DROP TABLE trades; --"}, "malformed exchange"),
        ({"symbol": "x' OR '1'='1"}, "malformed symbol"),
        ({"trade_id": "12ab"}, V.R_TRADE_ID),
        ({"ts": "1704153600"}, V.R_TS_NUMBER),
        ({"ts": "2024-13-45T00:00:00Z"}, V.R_TS),
        ({"ts": "2024-01-02T00:00:00.0000001Z"}, V.R_TS_FINE),
        ({"ts": "2008-12-31T23:59:59Z"}, "ts before 2009-01-01T00:00:00Z"),
        ({"ts": "2999-01-01T00:00:00Z"}, "ts later than now + 1d"),
        ({"price": "abc"}, V.R_PRICE_NUMBER),
        ({"price": "NaN"}, V.R_PRICE_NAN),
        ({"price": "-Infinity"}, V.R_PRICE_NAN),
        ({"price": "0"}, V.R_PRICE_SIGN),
        ({"price": "-5"}, V.R_PRICE_SIGN),
        ({"price": "1.000000001"}, V.R_PRICE_SCALE),
        ({"price": "99999999999"}, V.R_PRICE_MAX),
        ({"quantity": "-1"}, V.R_QTY_SIGN),
        ({"quantity": "NaN"}, V.R_QTY_NAN),
        ({"quantity": "inf"}, V.R_QTY_NAN),
        ({"quantity": "0.123456789"}, V.R_QTY_SCALE),
        ({"side": "short"}, V.R_SIDE),
    ]
    out = [(row(i, **over), reason) for i, (over, reason) in enumerate(cases)]
    out.append((row(90)[:4], V.R_FIELDS))  # a truncated line
    out.append((row(91) + ["extra"], V.R_FIELDS))  # one field too many
    return out


def test_every_bad_kind_quarantined_good_rows_reach_the_bars(tables: Tables,
                                                             tmp_path: Path) -> None:
    good = good_trades()
    rows: list[list[str | None]] = []
    expected_rejects: dict[int, str] = {}
    bad = bad_rows()
    for i, trade in enumerate(good):  # interleave good and bad rows
        rows.append(text_row(trade))
        for bad_row, reason in bad[i * 4:(i + 1) * 4]:
            rows.append(bad_row)
            expected_rejects[len(rows)] = reason
    for bad_row, reason in bad[len(good) * 4:]:
        rows.append(bad_row)
        expected_rejects[len(rows)] = reason
    # the same trade again, written differently (trailing zeros, upper case side): a duplicate
    rows.append(["EX", "AAA", "1", "2024-01-02T00:00:01.000Z", "100.50000", "2.0", "BUY"])
    # the same key with another price: quarantined, the first row counts
    rows.append(["EX", "AAA", "2", "2024-01-02T00:00:01Z", "101.26", "0.5", "sell"])
    expected_rejects[len(rows)] = V.R_CONFLICT_FILE
    path = write_csv(tmp_path / "mixed.csv", rows)

    report = ingest_file(tables, path)

    assert report.read == len(rows)
    assert (report.ingested, report.quarantined, report.duplicates) == (
        len(good), len(expected_rejects), 1)
    assert report.read == report.ingested + report.quarantined + report.duplicates
    assert quarantine(tables, path) == expected_rejects
    assert sum(report.reasons.values()) == report.quarantined
    assert stored_trades(tables) == set(good)
    # originals are kept as text: the NaN price and the payload symbol are stored verbatim
    originals = {r.reason: r for r in tables.spark.table(tables.name(REJECTED_TABLE)).collect()}
    assert originals[V.R_PRICE_SCALE].price == "1.000000001"
    assert originals["malformed symbol"].symbol == "x' OR '1'='1"
    assert originals[V.R_TS_NUMBER].ts == "1704153600"

    run_cascade(tables)
    assert_bars_equal_oracle(tables, good)
    # zero-quantity policy: counted for prices and trade_count, nothing for volume; a bar of
    # only zero-quantity trades has volume 0 and vwap null
    minute = tables.read_bars("1m").where("symbol = 'BBB' AND trade_count = 2").collect()
    assert len(minute) == 1
    bar = minute[0]
    assert (bar.open, bar.close, bar.volume, bar.vwap) == (
        Decimal("0.00001240"), Decimal("0.00001250"), Decimal(0), None)
    first = tables.read_bars("1m").where("symbol = 'AAA'").orderBy("window_start").first()
    assert (first.trade_count, first.volume, first.low) == (3, Decimal("2.5"),
                                                           Decimal("99.00000001"))


def test_reingest_is_idempotent_and_stored_conflicts_are_caught(tables: Tables,
                                                                tmp_path: Path) -> None:
    good = good_trades()
    first = write_csv(tmp_path / "day.csv", [text_row(t) for t in good] + [
        ["EX", "AAA", "950", "2024-01-02T00:00:01Z", "-1", "1", None]])
    one = ingest_file(tables, first)
    assert (one.ingested, one.quarantined, one.duplicates) == (len(good), 1, 0)
    before_trades = stored_trades(tables)
    before_rejects = quarantine(tables, first)

    again = ingest_file(tables, first)
    assert (again.read, again.ingested, again.quarantined, again.duplicates) == (
        len(good) + 1, 0, 1, len(good))
    assert stored_trades(tables) == before_trades
    assert quarantine(tables, first) == before_rejects  # not quarantined twice

    changed = write_csv(tmp_path / "restated.csv", [
        text_row(good[0]),  # identical: duplicate
        ["EX", "AAA", "2", "2024-01-02T00:00:01Z", "999", "0.5", "sell"],  # stored, new price
        ["EX", "AAA", "3", "2024-01-02T00:00:30Z", "99.00000001", "0", "buy"],  # side differs
        ["EX", "AAA", "77", "2024-01-02T00:00:40Z", "100", "1", None],  # new
    ])
    report = ingest_file(tables, changed)
    assert (report.ingested, report.quarantined, report.duplicates) == (1, 2, 1)
    assert quarantine(tables, changed) == {2: V.R_CONFLICT_STORED, 3: V.R_CONFLICT_STORED}
    assert len(stored_trades(tables)) == len(good) + 1


def test_parquet_doubles_nan_and_infinity(tables: Tables, tmp_path: Path) -> None:
    """Float columns (NaN, infinities, inexact binary values) are judged by their shortest text."""
    n = 6
    table = pa.table({
        "exchange": ["EX"] * n, "symbol": ["PQ"] * n,
        "trade_id": pa.array(range(1, n + 1), pa.int64()),
        "ts": pa.array([T0 + timedelta(seconds=i) for i in range(n)], pa.timestamp("us", "UTC")),
        "price": pa.array([0.1, float("nan"), float("inf"), 2.5, 3.0, 1e-9], pa.float64()),
        "quantity": pa.array([1e-5, 1.0, 1.0, float("-inf"), -0.0, 1.0], pa.float64()),
    })
    path = tmp_path / "floats.parquet"
    pq.write_table(table, path)
    report = ingest_file(tables, path)
    assert (report.read, report.ingested, report.quarantined) == (6, 2, 4)
    assert quarantine(tables, path) == {2: V.R_PRICE_NAN, 3: V.R_PRICE_NAN, 4: V.R_QTY_NAN,
                                        6: V.R_PRICE_SCALE}
    prices = {t[2]: (t[4], t[5]) for t in stored_trades(tables)}
    assert prices == {1: (Decimal("0.1"), Decimal("0.00001")), 5: (Decimal(3), Decimal(0))}


def test_ingest_cli_counts_bounds_config_and_rejects(tables: Tables, warehouse: Path,
                                                      tmp_path: Path, capsys: Any) -> None:
    old = write_csv(tmp_path / "old.csv", [
        ["EX", "OLD", "1", "2007-06-01T00:00:00Z", "10", "1", None],
        ["EX", "OLD", "2", "2003-06-01T00:00:00Z", "10", "1", None],
        ["EX", "OLD", "3", "2007-06-01T00:00:01Z", "abc", "1", None],
    ])
    config = tmp_path / "rollup.toml"
    config.write_text('[ingest]\nearliest = 2005-01-01\nmax_ahead = "6h"\n')
    common = ["--catalog", "rollup", "--namespace", tables.namespace, "--warehouse",
              str(warehouse)]
    assert main([*common, "--config", str(config), "ingest", str(old)]) == 0
    out = capsys.readouterr().out
    assert f"{old}: read 3, ingested 1, quarantined 2, duplicates skipped 0" in out
    assert "ts before 2005-01-01T00:00:00Z: 1" in out

    assert main([*common, "rejects", "--format", "json"]) == 0
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert {(r["source_row"], r["reason"]) for r in records} == {
        (2, "ts before 2005-01-01T00:00:00Z"), (3, V.R_PRICE_NUMBER)}
    assert records[0]["source_file"] == str(old) and records[0]["exchange"] == "EX"

    assert main([*common, "rejects", "--reason", "price", "--format", "csv"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].split(",")[:3] == ["source_file", "source_row", "reason"]
    assert len(lines) == 2 and "abc" in lines[1]

    target = tmp_path / "summary.csv"
    assert main([*common, "rejects", "--summary", "--format", "csv", "--output",
                 str(target)]) == 0
    assert target.read_text().splitlines()[1:] == [
        f"{old},{V.R_PRICE_NUMBER},1", f"{old},ts before 2005-01-01T00:00:00Z,1"]

    assert main([*common, "rejects", "--file", "/nowhere.csv"]) == 0
    assert "(no rejected rows)" in capsys.readouterr().out
    assert main([*common, "rejects", "--format", "parquet"]) == 2
    assert "--format parquet needs --output" in capsys.readouterr().err


def test_ingest_files_keeps_going_after_a_bad_file(tables: Tables, tmp_path: Path) -> None:
    good = write_csv(tmp_path / "good.csv", [text_row(t) for t in good_trades()[:2]])
    junk = tmp_path / "junk.parquet"
    junk.write_bytes(b"PAR1" + os.urandom(100))
    reports, errors = ingest_files(tables, [junk, good])
    assert [r.ingested for r in reports] == [2]
    assert len(errors) == 1 and str(junk) in str(errors[0])


def test_report_describe_is_one_line() -> None:
    report = IngestReport("f.csv", 5, 2, 2, 1, {"missing ts": 1, "price is not positive": 1})
    assert report.describe() == ("f.csv: read 5, ingested 2, quarantined 2, duplicates skipped "
                                 "1 (missing ts: 1; price is not positive: 1)")


# --- property test: random mixtures of good and malformed rows --------------------------------

BAD_KINDS: list[tuple[str, Any, str]] = [
    ("missing price", lambda r: _set(r, "price", None), "missing price"),
    ("missing exchange", lambda r: _set(r, "exchange", " "), "missing exchange"),
    ("text price", lambda r: _set(r, "price", "12,5"), V.R_PRICE_NUMBER),
    ("zero price", lambda r: _set(r, "price", "0.0"), V.R_PRICE_SIGN),
    ("negative price", lambda r: _set(r, "price", "-" + str(r[4])), V.R_PRICE_SIGN),
    ("nan price", lambda r: _set(r, "price", "nan"), V.R_PRICE_NAN),
    ("inf quantity", lambda r: _set(r, "quantity", "Infinity"), V.R_QTY_NAN),
    ("negative quantity", lambda r: _set(r, "quantity", "-1"), V.R_QTY_SIGN),
    ("9 decimals", lambda r: _set(r, "price", "1.123456789"), V.R_PRICE_SCALE),
    ("tiny exponent", lambda r: _set(r, "quantity", "5e-9"), V.R_QTY_SCALE),
    ("early ts", lambda r: _set(r, "ts", "2001-01-01T00:00:00Z"),
     "ts before 2009-01-01T00:00:00Z"),
    ("future ts", lambda r: _set(r, "ts", "2100-01-01T00:00:00Z"), "ts later than now + 1d"),
    ("garbage ts", lambda r: _set(r, "ts", "2024-01-02Tnoon"), V.R_TS),
    ("epoch ts", lambda r: _set(r, "ts", "1704153600000"), V.R_TS_NUMBER),
    ("sql symbol", lambda r: _set(r, "symbol", "A'); DELETE FROM trades; --"),
     "malformed symbol"),
    ("huge id", lambda r: _set(r, "trade_id", "18446744073709551615"), V.R_TRADE_ID),
    ("bad side", lambda r: _set(r, "side", "both"), V.R_SIDE),
    ("short row", lambda r: r[:5], V.R_FIELDS),
    ("long row", lambda r: [*r, "x", "y"], V.R_FIELDS),
]


def _set(row: list[str | None], name: str, value: str | None) -> list[str | None]:
    out = list(row)
    out[HEADER.index(name)] = value
    return out


@st.composite
def trade_strategy(draw: st.DrawFn, trade_id: int) -> Trade:
    price = Decimal(draw(st.integers(1, 10**12 - 1))).scaleb(-draw(st.integers(2, 8)))
    qty = Decimal(draw(st.integers(0, 10**9))).scaleb(-draw(st.integers(0, 8)))
    ts = T0 + timedelta(microseconds=draw(st.integers(0, 12 * 60_000_000 - 1)))
    side = draw(st.sampled_from(["buy", "sell", None]))
    return ("FZ", draw(st.sampled_from(["A", "B"])), trade_id, ts, price, qty, side)


def _restyle(row: list[str | None], style: int) -> list[str | None]:
    """The same trade in another text form (trailing zeros, blanks, case)."""
    out = list(row)
    if style == 1:
        out[4] = f"{out[4]}{'' if '.' in str(out[4]) else '.'}000"
    elif style == 2:
        out[5] = f" {out[5]} "
        out[6] = out[6].upper() if out[6] else out[6]
    return out


@st.composite
def mixtures(draw: st.DrawFn) -> tuple[list[list[str | None]], list[tuple[str, Any]]]:
    """CSV rows and, per row, its kind: ('good', trade) / ('bad', reason)."""
    n_good = draw(st.integers(1, 12))
    good = [draw(trade_strategy(i + 1)) for i in range(n_good)]
    entries: list[tuple[list[str | None], tuple[str, Any]]] = [
        (text_row(t), ("good", t)) for t in good]
    for _ in range(draw(st.integers(0, 3))):  # repeats of a good row, same content
        t = draw(st.sampled_from(good))
        entries.append((_restyle(text_row(t), draw(st.integers(0, 2))), ("good", t)))
    for _ in range(draw(st.integers(0, 2))):  # repeats of a key with a different price
        t = draw(st.sampled_from(good))
        other = (*t[:4], t[4] + Decimal("0.00000001"), *t[5:])
        entries.append((text_row(other), ("good", other)))  # type: ignore[arg-type]
    kinds = draw(st.lists(st.sampled_from(BAD_KINDS), max_size=12))
    for i, (_, mutate, reason) in enumerate(kinds):
        base = draw(trade_strategy(10_000 + i))
        entries.append((mutate(text_row(base)), ("bad", reason)))
    order = draw(st.permutations(range(len(entries))))
    return [entries[i][0] for i in order], [entries[i][1] for i in order]


def expected_outcomes(kinds: list[tuple[str, Any]]) -> tuple[list[Trade], dict[int, str], int]:
    """The spec as a simple model: (ingested trades, quarantined row -> reason, duplicates)."""
    first: dict[tuple[str, str, int], Trade] = {}
    rejects: dict[int, str] = {}
    duplicates = 0
    for row_number, (kind, value) in enumerate(kinds, start=1):
        if kind == "bad":
            rejects[row_number] = value
            continue
        key = value[:3]
        if key not in first:
            first[key] = value
        elif first[key][3:] == value[3:]:
            duplicates += 1
        else:
            rejects[row_number] = V.R_CONFLICT_FILE
    return list(first.values()), rejects, duplicates


@pytest.mark.slow
@settings(max_examples=6, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.data_too_large])
@given(mixture=mixtures())
def test_random_mixtures_every_row_accounted_for(spark: Any, tmp_path: Path,
                                                 mixture: Any) -> None:
    rows, kinds = mixture
    tables = Tables(spark, "rollup", f"fz_{uuid.uuid4().hex[:8]}")
    tables.create_all()
    path = write_csv(tmp_path / f"{uuid.uuid4().hex[:6]}.csv", rows)
    good, rejects, duplicates = expected_outcomes(kinds)

    report = ingest_file(tables, path)

    assert report.read == len(rows)
    assert report.read == report.ingested + report.quarantined + report.duplicates
    assert (report.ingested, report.quarantined, report.duplicates) == (
        len(good), len(rejects), duplicates)
    assert quarantine(tables, path) == rejects
    assert stored_trades(tables) == set(good)
    run_cascade(tables, up_to="5m")
    assert_bars_equal_oracle(tables, good, levels=("1m", "5m"))


# --- a file much larger than what may be collected: it streams through Spark ------------------

_STREAM_SCRIPT = r"""
import json, sys
from rollup.spark.engine import get_spark
from rollup.ingestion.batch import ingest_file
from rollup.storage.tables import Tables

warehouse, path = sys.argv[1], sys.argv[2]
spark = get_spark(warehouse, conf={"spark.driver.maxResultSize": "4m",
                                   "spark.sql.shuffle.partitions": "2"})
tables = Tables(spark, "rollup", "stream")
tables.create_all()
report = ingest_file(tables, path)
stored = tables.read_trades().count()
try:  # control: collecting the trades themselves must break the 4 MiB result limit
    tables.read_trades().collect()
    control = "collected"
except Exception as exc:
    control = "maxResultSize" if "maxResultSize" in str(exc) else str(exc)[:200]
print(json.dumps({"read": report.read, "ingested": report.ingested,
                  "quarantined": report.quarantined, "stored": stored, "control": control}))
"""


@pytest.mark.slow
def test_large_file_streams_without_collecting_to_the_driver(tmp_path: Path) -> None:
    """250,000 rows (~24 MB of CSV, six times the limit) ingest under a 4 MiB driver result
    limit: no row is collected (the control shows collecting them would break the limit)."""
    import numpy as np
    import pyarrow.compute as pc
    import pyarrow.csv as pcsv

    from rollup.adapters.synthetic import synthetic_trades

    n = 250_000
    trades = synthetic_trades(n, symbols=3)
    text = {name: pc.cast(trades[name], pa.string()) for name in ("price", "quantity")}
    text["ts"] = pc.strftime(trades["ts"], format="%Y-%m-%dT%H:%M:%SZ")  # %S has the micros
    bad = pa.array(np.arange(n) % (n // 10) == 0)  # ten rows lose their price
    text["price"] = pc.if_else(bad, pa.scalar(None, pa.string()), text["price"])
    for name, column in text.items():
        trades = trades.set_column(trades.column_names.index(name), name, column)
    path = tmp_path / "big.csv"
    pcsv.write_csv(trades, path)
    assert path.stat().st_size > 20_000_000  # five times spark.driver.maxResultSize
    env = {**os.environ, "ROLLUP_DRIVER_MEMORY": "1g"}
    done = subprocess.run([sys.executable, "-c", _STREAM_SCRIPT, str(tmp_path / "wh"), str(path)],
                          capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result == {"read": n, "ingested": n - 10, "quarantined": 10, "stored": n - 10,
                      "control": "maxResultSize"}


def test_row_numbers_hold_across_file_splits(tables: Tables, tmp_path: Path) -> None:
    """A file Spark splits into many partitions still numbers its rows in file order."""
    from rollup.ingestion.batch import read_raw

    rows: list[list[str | None]] = []
    bad_at = set(range(5, 400, 37))
    for i in range(1, 401):
        ts = (T0 + timedelta(seconds=i)).isoformat().replace("+00:00", "Z")
        rows.append(["EX", "SPLIT", str(i), ts, "x" if i in bad_at else "10.5", "1", None])
    path = write_csv(tmp_path / "split.csv", rows)
    spark = tables.spark
    previous = spark.conf.get("spark.sql.files.maxPartitionBytes")
    spark.conf.set("spark.sql.files.maxPartitionBytes", "2048")
    try:
        assert read_raw(spark, path).rdd.getNumPartitions() > 4
        report = ingest_file(tables, path)
    finally:
        spark.conf.set("spark.sql.files.maxPartitionBytes", previous)
    assert (report.read, report.quarantined) == (400, len(bad_at))
    assert quarantine(tables, path) == {i: V.R_PRICE_NUMBER for i in bad_at}


def test_directory_rows_name_their_own_file(tables: Tables, tmp_path: Path) -> None:
    """A directory is one unit, but each file keeps its own header, name and row numbers."""
    folder = tmp_path / "day"
    (folder / "more").mkdir(parents=True)
    first = write_csv(folder / "a.csv", [text_row(t) for t in good_trades()[:3]])
    second = folder / "more" / "b [1].csv"  # glob characters are part of the name
    second.write_text("price,quantity,ts,trade_id,symbol,exchange\n"
                      "7,1,2024-01-02T00:00:03Z,20,AAA,EX\n"
                      "-7,1,2024-01-02T00:00:04Z,21,AAA,EX\n")
    (folder / "_SUCCESS").write_text("")
    (folder / "part-empty.csv").write_text("")  # an empty part file holds no rows
    (folder / ".a.csv.crc").write_bytes(b"\x00\x01")
    report = ingest_file(tables, folder)
    assert (report.read, report.ingested, report.quarantined) == (5, 4, 1)
    assert quarantine(tables, second) == {2: V.R_PRICE_SIGN}
    assert quarantine(tables, first) == {}
    assert 20 in {t[2] for t in stored_trades(tables)}
