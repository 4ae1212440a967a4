"""Read bars without Spark: pyiceberg scans of the bar tables, for notebooks and scripts.

`read_bars` returns pandas, `read_bars_arrow` returns Arrow (polars: `polars.from_arrow`).
No JVM is started. The warehouse is an Iceberg Hadoop catalog, so a table's current metadata
file is found from `<warehouse>/<namespace>/<table>/metadata/version-hint.text`; filters
become pyiceberg expressions (values, never SQL text) on `window_date` (the partition source,
so whole partitions are skipped) and on the key columns (so files are skipped by their
column statistics). Rows come back ordered by exchange, symbol and window_start, exactly as
`rollup bars` prints them.

`fill_gaps=True` adds the windows without trades that many exchanges publish: open, high,
low and close repeat the previous close, volume, quote_volume and trade_count are zero, vwap
and the lineage columns are null, and the extra boolean column `filled` is true.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rollup.errors import ConfigError, InputError, RealtimeReadError
from rollup.specs.bar import KEY_COLUMNS
from rollup.specs.times import as_utc, parse_instant
from rollup.timeframes import Level, Timeframe

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa
    from pyiceberg.expressions import BooleanExpression
    from pyiceberg.table import DataScan, Table

    from rollup.settings.catalogs import CatalogConfig
    from rollup.settings.config import Settings

SORT_KEYS = KEY_COLUMNS
LINEAGE = ("created_at", "updated_at", "run_id")
FILLED = "filled"
DEFAULT_FILL_LOOKBACK = timedelta(days=7)
"""How far before `start` gap filling looks for the previous close (at least 100 windows)."""
_TICK = timedelta(microseconds=1)

_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]+:/")
_METADATA = re.compile(r"^v(\d+)(\.gz)?\.metadata\.json$")

Names = str | Sequence[str] | None
Instant = str | datetime | date | None


def _settings(
    settings: Settings | None, warehouse: str | os.PathLike[str] | None,
    namespace: str | None, config: str | os.PathLike[str] | None,
) -> Settings:
    import attrs

    from rollup.settings.config import load_settings

    if settings is None:
        return load_settings(config, warehouse=None if warehouse is None else str(warehouse),
                             namespace=namespace)
    changes: dict[str, Any] = {}
    if warehouse is not None:
        changes["warehouse"] = str(warehouse)
    if namespace is not None:
        changes["namespace"] = namespace
    return attrs.evolve(settings, **changes) if changes else settings


def warehouse_location(warehouse: str | os.PathLike[str] | None) -> str:
    """The warehouse as pyiceberg opens it: a URI unchanged (``file:///p`` as ``/p``), a
    local path made absolute (`rollup.settings.config.warehouse_location`)."""
    from rollup.settings.config import warehouse_location as location

    text = location(warehouse)
    return text.removeprefix("file://") if text.startswith("file:///") else text


def _join(base: str, *parts: str) -> str:
    return "/".join([base.rstrip("/"), *parts])


def _exists(io: Any, location: str) -> bool:
    try:
        return bool(io.new_input(location).exists())
    except OSError:
        return False


def metadata_location(table_location: str, properties: dict[str, str] | None = None) -> str:
    """The current `vN.metadata.json` of a Hadoop-catalog table (as Iceberg's Java code finds it).

    Reads `metadata/version-hint.text`, then steps over any newer versions written since
    (a commit writes the new metadata file before it updates the hint).

    Raises:
        ConfigError: the location holds no Iceberg table.
    """
    from pyiceberg.io import load_file_io

    meta = _join(table_location, "metadata")
    io = load_file_io(properties or {}, location=meta)
    version: int | None = None
    hint = _join(meta, "version-hint.text")
    if _exists(io, hint):
        with io.new_input(hint).open() as stream:
            text = stream.read().decode().strip()
        version = int(text) if text.isdigit() else None
    if version is None and not _URI.match(meta):
        found = [int(m.group(1)) for p in Path(meta).glob("v*.metadata.json")
                 if (m := _METADATA.match(p.name))]
        version = max(found) if found else None
    if version is None:
        raise ConfigError(
            f"no Iceberg table at {table_location}: check --warehouse and --namespace, "
            "or create the tables with `rollup init`"
        )

    def file_of(v: int) -> str | None:
        for name in (f"v{v}.metadata.json", f"v{v}.gz.metadata.json"):
            if _exists(io, _join(meta, name)):
                return _join(meta, name)
        return None

    current = file_of(version)
    while (newer := file_of(version + 1)) is not None:
        version, current = version + 1, newer
    if current is None:
        raise ConfigError(f"Iceberg table at {table_location} has no metadata file v{version}")
    return current


def pyiceberg_properties(config: CatalogConfig, warehouse: str | None) -> dict[str, str]:
    """pyiceberg catalog/FileIO properties for rollup's catalog configuration.

    A REST catalog gets its type, uri, warehouse and OAuth2 settings; S3-compatible storage
    its endpoint, region, path-style addressing and keys (secrets from the environment).
    """
    from rollup.settings.catalogs import REST

    props: dict[str, str] = {}
    if config.type == REST:
        props.update({"type": "rest", "uri": str(config.uri)})
        if warehouse:
            props["warehouse"] = warehouse
        for key, value in (("credential", config.credential), ("token", config.token)):
            if value is not None:
                props[key] = value.value
        if config.oauth2_server_uri:
            props["oauth2-server-uri"] = config.oauth2_server_uri
        if config.scope:
            props["scope"] = config.scope
    s3 = config.s3
    if s3 is not None:
        for key, text in (("s3.endpoint", s3.endpoint), ("s3.region", s3.region)):
            if text:
                props[key] = text
        if s3.path_style_access is not None:
            props["s3.force-virtual-addressing"] = str(not s3.path_style_access).lower()
        for key, secret in (("s3.access-key-id", s3.access_key_id),
                            ("s3.secret-access-key", s3.secret_access_key),
                            ("s3.session-token", s3.session_token)):
            if secret is not None:
                props[key] = secret.value
    props.update(config.properties)
    return props


def open_bar_table(
    timeframe: str | Timeframe,
    warehouse: str | os.PathLike[str] | None = None,
    *,
    namespace: str | None = None,
    config: str | os.PathLike[str] | None = None,
    settings: Settings | None = None,
) -> tuple[Table, Level]:
    """The current state of one level's bar table as a pyiceberg Table (no Spark).

    The Hadoop catalog (the default) is read straight from the warehouse; a REST catalog
    (`[iceberg] type = "rest"`, see docs/configuration.md) through pyiceberg's REST client.
    """
    from rollup.settings.catalogs import REST
    from rollup.specs.identifiers import check_identifier

    resolved = _settings(settings, warehouse, namespace, config)
    level = resolved.dag.level(timeframe)
    ns = check_identifier(resolved.namespace, "namespace")
    name = check_identifier(level.table, "table name")
    catalog_config = resolved.iceberg
    props = pyiceberg_properties(catalog_config, resolved.warehouse)
    if catalog_config.type == REST:
        from pyiceberg.catalog import load_catalog
        from pyiceberg.exceptions import NoSuchTableError

        try:
            return load_catalog(resolved.catalog, **props).load_table((ns, name)), level
        except NoSuchTableError:
            raise ConfigError(f"the REST catalog at {catalog_config.uri} has no table "
                              f"{ns}.{name}: create the tables with `rollup init`") from None
    from pyiceberg.table import StaticTable

    location = _join(warehouse_location(resolved.warehouse), ns, name)
    return StaticTable.from_metadata(metadata_location(location, props), props), level


def _names(value: Names, what: str) -> list[str] | None:
    if value is None:
        return None
    items = [value] if isinstance(value, str) else list(value)
    if not items or not all(isinstance(v, str) and v for v in items):
        raise InputError(f"invalid {what} filter {value!r}: expected a name or a list of names")
    return items


def window_date_bounds(
    tf: Timeframe | None, lo: datetime | None, hi: datetime | None
) -> tuple[date | None, date | None]:
    """The `window_date` range of the windows of `tf` with lo <= window_start < hi.

    A fixed window is dated by the UTC date of its start. A calendar window is dated by its
    label, which can fall after the UTC date of its start (a CME session starting Sunday
    22:00Z is Monday's, a Tokyo day starts the UTC day before): labels grow with window
    starts, so the bounds are the labels of the windows holding `lo` and the instant before
    `hi`. Without `tf` the dates of `lo` and `hi` (right for fixed timeframes only).
    """
    if tf is None or not tf.is_calendar:
        return (None if lo is None else lo.date()), (None if hi is None else hi.date())
    first = None if lo is None else tf.window_date(lo)
    last = None if hi is None else tf.window_date(hi - _TICK)
    return first, last


def bar_filter(
    exchange: Names = None,
    symbol: Names = None,
    start: Instant = None,
    end: Instant = None,
    *,
    timeframe: str | Timeframe | None = None,
) -> BooleanExpression:
    """A pyiceberg row filter: exchange/symbol in the given names, start <= window_start < end.

    The bounds are also put on `window_date` (the partition source column), which lets the
    scan skip whole partitions; pass the `timeframe` of a calendar level, whose windows are
    dated by their labels (`window_date_bounds`).
    """
    import pyiceberg.expressions

    # pyiceberg's predicates are pydantic models whose __init__ mypy cannot see through.
    ex: Any = pyiceberg.expressions
    expr = ex.AlwaysTrue()
    for column, value in (("exchange", exchange), ("symbol", symbol)):
        names = _names(value, column)
        if names is not None:
            term = ex.EqualTo(column, names[0]) if len(names) == 1 else ex.In(column, names)
            expr = ex.And(expr, term)
    lo = parse_instant(start, "start") if start is not None else None
    hi = parse_instant(end, "end") if end is not None else None
    first, last = window_date_bounds(
        None if timeframe is None else Timeframe.parse(timeframe), lo, hi)
    if lo is not None and first is not None:
        expr = ex.And(expr, ex.And(ex.GreaterThanOrEqual("window_start", lo),
                                   ex.GreaterThanOrEqual("window_date", first)))
    if hi is not None and last is not None:
        expr = ex.And(expr, ex.And(ex.LessThan("window_start", hi),
                                   ex.LessThanOrEqual("window_date", last)))
    result: BooleanExpression = expr
    return result


def scan_bars(
    timeframe: str | Timeframe,
    exchange: Names = None,
    symbol: Names = None,
    start: Instant = None,
    end: Instant = None,
    warehouse: str | os.PathLike[str] | None = None,
    *,
    namespace: str | None = None,
    config: str | os.PathLike[str] | None = None,
    settings: Settings | None = None,
) -> DataScan:
    """The pyiceberg scan behind `read_bars` (`.plan_files()` shows the files it reads)."""
    table, level = open_bar_table(timeframe, warehouse, namespace=namespace, config=config,
                                  settings=settings)
    return table.scan(row_filter=bar_filter(exchange, symbol, start, end,
                                            timeframe=level.timeframe))


def read_bars_arrow(
    timeframe: str | Timeframe,
    exchange: Names = None,
    symbol: Names = None,
    start: Instant = None,
    end: Instant = None,
    warehouse: str | os.PathLike[str] | None = None,
    *,
    fill_gaps: bool = False,
    fill_lookback: timedelta | None = None,
    namespace: str | None = None,
    config: str | os.PathLike[str] | None = None,
    settings: Settings | None = None,
    realtime: bool = False,
) -> pa.Table:
    """Bars of one timeframe as an Arrow table, read through pyiceberg without starting Spark.

    Args:
        timeframe: a level of the DAG, e.g. "1m" or "1d".
        exchange: keep bars of this exchange (or of any of a list of exchanges).
        symbol: keep bars of this symbol (or of any of a list of symbols).
        start: keep bars with window_start >= start (ISO-8601 text, UTC when no offset).
        end: keep bars with window_start < end.
        warehouse: the warehouse directory or URI (default: settings, `$ROLLUP_WAREHOUSE`,
            `./warehouse`).
        fill_gaps: add the empty windows between start and end (or between each instrument's
            first and last bar) with the previous close and zero volume; adds `filled`.
        fill_lookback: how far before `start` to look for the previous close.
        namespace: the Iceberg namespace (default from settings, `market_data`).
        config: a rollup.toml file (a custom DAG changes which tables exist).
        settings: explicit settings instead of `config` and the environment.
        realtime: not available here (bars computed on the fly need Spark): raises.

    Raises:
        TimeframeError: the timeframe is not a level of the DAG.
        InputError: a filter value is invalid.
        ConfigError: there is no bar table at the warehouse/namespace.
        RealtimeReadError: `realtime` is set.
    """
    import pyarrow as pa

    if realtime:
        name = timeframe if isinstance(timeframe, str) else timeframe.name
        raise RealtimeReadError(
            f"rollup.read_bars cannot read {name} in real time without Spark: use "
            "rollup.realtime_bars(tables, level) or `rollup bars TF --realtime`")

    resolved = _settings(settings, warehouse, namespace, config)
    table, level = open_bar_table(timeframe, settings=resolved)
    lo = parse_instant(start, "start") if start is not None else None
    hi = parse_instant(end, "end") if end is not None else None
    if lo is not None and hi is not None and hi < lo:
        raise InputError(f"invalid range: end {hi.isoformat()} is before start {lo.isoformat()}")
    tf = level.timeframe
    result = table.scan(row_filter=bar_filter(exchange, symbol, lo, hi, timeframe=tf)).to_arrow()
    result = result.sort_by([(k, "ascending") for k in SORT_KEYS])
    if not fill_gaps:
        return result
    lookback = fill_lookback if fill_lookback is not None else max(
        DEFAULT_FILL_LOOKBACK, timedelta(seconds=tf.nominal_seconds) * 100)
    before = None
    if lo is not None:
        before = table.scan(
            row_filter=bar_filter(exchange, symbol, lo - lookback, lo, timeframe=tf),
            selected_fields=("exchange", "symbol", "window_start", "close"),
        ).to_arrow()
    filled = fill_gap_frame(result.to_pandas(), tf, lo, hi,
                            None if before is None else before.to_pandas())
    return pa.Table.from_pandas(filled, schema=filled_schema(result.schema),
                                preserve_index=False)


def read_bars(
    timeframe: str | Timeframe,
    exchange: Names = None,
    symbol: Names = None,
    start: Instant = None,
    end: Instant = None,
    warehouse: str | os.PathLike[str] | None = None,
    *,
    fill_gaps: bool = False,
    fill_lookback: timedelta | None = None,
    namespace: str | None = None,
    config: str | os.PathLike[str] | None = None,
    settings: Settings | None = None,
    realtime: bool = False,
) -> pd.DataFrame:
    """Bars of one timeframe as a pandas DataFrame (UTC timestamps, exact Decimal prices).

    Same arguments as `read_bars_arrow`; equal, row for row, to what `rollup bars` prints.
    """
    table = read_bars_arrow(timeframe, exchange, symbol, start, end, warehouse,
                            fill_gaps=fill_gaps, fill_lookback=fill_lookback,
                            namespace=namespace, config=config, settings=settings,
                            realtime=realtime)
    return table.to_pandas()


def filled_schema(schema: pa.Schema) -> pa.Schema:
    """`schema` with the lineage columns nullable, plus the boolean column `filled`."""
    import pyarrow as pa

    fields = [f.with_nullable(True) if f.name in (*LINEAGE, "vwap") else f for f in schema]
    return pa.schema([*fields, pa.field(FILLED, pa.bool_(), nullable=False)])


def fill_gap_frame(
    bars: pd.DataFrame,
    tf: Timeframe,
    start: datetime | None,
    end: datetime | None,
    before: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Add a row for every window without a bar in [start, end) of each (exchange, symbol).

    Open, high, low and close of a filled window are the previous close (from `before`, the
    bars preceding `start`, for leading gaps); windows before an instrument's first known
    close are left out. Volumes and counts of a filled window (buy and sell ones too) are 0,
    its open_ts and close_ts null. Without start (end) the range begins (ends) at the
    instrument's first (last) bar. Instruments without any bar in the range get no rows.
    """
    import pandas as pd

    columns = list(bars.columns)
    if bars.empty:
        out = bars.copy()
        out[FILLED] = pd.Series(dtype=bool)
        return out
    lo = None if start is None else pd.Timestamp(_ceil(tf, start))
    hi = None if end is None else pd.Timestamp(_ceil(tf, end))
    previous: dict[tuple[str, str], Any] = {}
    if before is not None and not before.empty:
        last = before.sort_values("window_start").groupby(["exchange", "symbol"]).tail(1)
        previous = {(r.exchange, r.symbol): r.close for r in last.itertuples()}
    parts = []
    for (exchange, symbol), group in bars.groupby(["exchange", "symbol"], sort=True):
        series = group.set_index("window_start")
        first = lo if lo is not None else series.index.min()
        stop = hi if hi is not None else _end_of(tf, series.index.max())
        full = series.reindex(series.index.union(window_starts(tf, first, stop)))
        missing = full["trade_count"].isna()
        prev = full["close"].shift(1).ffill()
        seed = previous.get((exchange, symbol))
        if seed is not None:
            prev = prev.fillna(seed)
        full = full[~missing | prev.notna()]
        missing, prev = missing[full.index], prev[full.index]
        full[FILLED] = missing
        if missing.any():
            starts = full.index[missing]
            full.loc[missing, ["exchange", "symbol"]] = [exchange, symbol]
            for name in ("open", "high", "low", "close"):
                full.loc[missing, name] = prev[missing]
            full.loc[missing, "volume"] = Decimal(0)
            full.loc[missing, "quote_volume"] = Decimal(0)
            full.loc[missing, "trade_count"] = 0
            for name in ("buy_volume", "sell_volume"):
                if name in full.columns:
                    full.loc[missing, name] = Decimal(0)
            for name in ("buy_count", "sell_count"):
                if name in full.columns:
                    full.loc[missing, name] = 0
            windows = [tf.window(s.to_pydatetime()) for s in starts]
            full.loc[missing, "window_end"] = pd.DatetimeIndex(
                [w.end for w in windows]).tz_convert(starts.tz)
            full.loc[missing, "window_date"] = [w.date for w in windows]
        full["trade_count"] = full["trade_count"].astype("int64")
        for name in ("buy_count", "sell_count"):  # null where a bar predates the columns
            if name in full.columns:
                counts = full[name]
                full[name] = counts.astype("Int64" if counts.isna().any() else "int64")
        parts.append(full.rename_axis("window_start").reset_index())
    return pd.concat(parts, ignore_index=True)[[*columns, FILLED]]


def window_starts(tf: Timeframe, first: pd.Timestamp, stop: pd.Timestamp) -> pd.DatetimeIndex:
    """The window starts of `tf` in [first, stop), `first` a window start: a fixed grid, or
    the calendar's windows (23- and 25-hour days, months) for a calendar timeframe."""
    import pandas as pd

    if stop <= first:
        return pd.DatetimeIndex([], tz=first.tz)
    if not tf.is_calendar:
        duration = pd.Timedelta(tf.duration)
        return pd.date_range(first, stop - duration, freq=duration)
    starts = [w.start for w in tf.windows(first.to_pydatetime(), stop.to_pydatetime())]
    return pd.DatetimeIndex(starts).tz_convert(first.tz)


def _end_of(tf: Timeframe, window_start: pd.Timestamp) -> pd.Timestamp:
    """The end of the window of `tf` starting at `window_start`: the next window's start."""
    import pandas as pd

    return pd.Timestamp(tf.window_end(window_start.to_pydatetime())).tz_convert(
        window_start.tz)


def _ceil(tf: Timeframe, instant: datetime) -> datetime:
    """The first window start at or after `instant`."""
    window = tf.window(instant)
    return window.start if window.start == as_utc(instant) else window.end
