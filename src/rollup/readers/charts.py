"""Candlestick charts of bars with a volume panel, drawn by mplfinance (the `charts` extra).

`plot(...)` reads bars like `rollup.read_bars` (no Spark) and returns a matplotlib Figure;
`candles(frame)` draws bars you already have (from `read_bars`, or a Spark DataFrame's
`toPandas()`). The Figure is detached from pyplot's global state, so a notebook shows it
once, as the cell's value, and scripts do not accumulate open figures.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rollup.errors import InputError
from rollup.readers.read import Instant, Names, read_bars

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

    from rollup.settings.config import Settings
    from rollup.timeframes import Timeframe

UP = "#26a69a"
"""Body colour of a candle that closed at or above its open."""
DOWN = "#ef5350"
"""Body colour of a candle that closed below its open."""
FORMATS = (".png", ".svg", ".pdf", ".jpg", ".jpeg")


def _import_mplfinance() -> Any:
    try:
        import mplfinance
    except ModuleNotFoundError as exc:
        raise InputError(
            "charts need mplfinance and matplotlib: pip install 'rollup[charts]'"
        ) from exc
    return mplfinance


def ohlcv_frame(bars: pd.DataFrame, *, by_date: bool = False) -> pd.DataFrame:
    """Bars of one instrument as the float Open/High/Low/Close/Volume frame mplfinance draws.

    The index is window_start in UTC (tz-naive, as mplfinance expects), or with `by_date`
    the window_date (the label of a calendar window: a New York day's local date, a CME
    session's trade date, a month's first day). Exact Decimal values become floats here, for
    drawing only.

    Raises:
        InputError: no bars, or bars of more than one (exchange, symbol).
    """
    import pandas as pd

    if bars is None or len(bars) == 0:
        raise InputError("no bars to chart: check the timeframe, exchange, symbol and time range")
    time_col = "window_date" if by_date else "window_start"
    missing = [c for c in (time_col, "open", "high", "low", "close", "volume")
               if c not in bars.columns]
    if missing:
        raise InputError(f"bars lack the column(s) {', '.join(missing)} needed for a chart")
    if {"exchange", "symbol"} <= set(bars.columns):
        series = bars[["exchange", "symbol"]].drop_duplicates()
        if len(series) > 1:
            names = ", ".join(f"{e}/{s}" for e, s in series.itertuples(index=False))
            raise InputError(f"bars of several instruments ({names}): chart one exchange and "
                             "symbol at a time")
    if by_date:
        index = pd.DatetimeIndex(pd.to_datetime(bars["window_date"])).rename("window_date")
    else:
        index = pd.DatetimeIndex(pd.to_datetime(bars["window_start"], utc=True)).tz_convert(
            None).rename("window_start (UTC)")
    frame = pd.DataFrame(
        {
            "Open": bars["open"].astype(float).to_numpy(),
            "High": bars["high"].astype(float).to_numpy(),
            "Low": bars["low"].astype(float).to_numpy(),
            "Close": bars["close"].astype(float).to_numpy(),
            "Volume": bars["volume"].astype(float).to_numpy(),
        },
        index=index,
    )
    return frame.sort_index()


def _style(mpf: Any) -> Any:
    colors = mpf.make_marketcolors(up=UP, down=DOWN, inherit=True)  # edges, wicks, volume
    colors["vcedge"] = {"up": UP, "down": DOWN}  # volume bar edges (no keyword for them)
    return mpf.make_mpf_style(base_mpf_style="yahoo", marketcolors=colors, gridstyle=":",
                              facecolor="white")


def candles(
    bars: pd.DataFrame,
    *,
    title: str | None = None,
    moving_averages: tuple[int, ...] = (),
    figsize: tuple[float, float] = (12.0, 7.0),
    by_date: bool = False,
) -> Figure:
    """Draw a candlestick chart with a volume panel from bars of one instrument.

    Args:
        bars: bar rows (at least window_start, open, high, low, close, volume).
        title: the chart title (default: exchange/symbol and the bar count).
        moving_averages: windows (in bars) of close-price moving averages to overlay.
        figsize: width and height in inches.
        by_date: label the x axis by window_date instead of the UTC window_start (for
            calendar levels, whose windows start at local midnights or session opens).

    Raises:
        InputError: no bars, or bars of several instruments.
    """
    import matplotlib.pyplot as plt

    mpf = _import_mplfinance()
    frame = ohlcv_frame(bars, by_date=by_date)
    if title is None:
        first = bars.iloc[0]
        name = f"{first['exchange']}/{first['symbol']}" if "exchange" in bars.columns else "bars"
        title = f"{name}, {len(frame)} bars"
    options: dict[str, Any] = {}
    if moving_averages:
        options["mav"] = tuple(moving_averages)
    fig, _axes = mpf.plot(
        frame, type="candle", volume=True, style=_style(mpf), axtitle=title,
        ylabel="price", ylabel_lower="volume", figsize=figsize, returnfig=True,
        warn_too_much_data=len(frame) + 1, xrotation=0,
        datetime_format="%Y-%m-%d" if by_date else "%m-%d %H:%M",
        **options,
    )
    plt.close(fig)  # detached: shown once as a notebook cell's value, never leaked by scripts
    return fig  # type: ignore[no-any-return]


def save(fig: Figure, output: str | os.PathLike[str], dpi: int = 110) -> Path:
    """Write a chart to PNG, SVG, PDF or JPEG (chosen by the file suffix)."""
    path = Path(output).expanduser()
    if path.suffix.lower() not in FORMATS:
        raise InputError(f"invalid chart file {str(path)!r}: expected a name ending in "
                         f"{', '.join(FORMATS)}")
    if not path.parent.is_dir():
        raise InputError(f"cannot write chart {path}: directory {path.parent} does not exist")
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    return path


def plot(
    timeframe: str | Timeframe,
    exchange: Names = None,
    symbol: Names = None,
    start: Instant = None,
    end: Instant = None,
    warehouse: str | os.PathLike[str] | None = None,
    *,
    output: str | os.PathLike[str] | None = None,
    title: str | None = None,
    fill_gaps: bool = False,
    fill_lookback: timedelta | None = None,
    moving_averages: tuple[int, ...] = (),
    figsize: tuple[float, float] = (12.0, 7.0),
    namespace: str | None = None,
    config: str | os.PathLike[str] | None = None,
    settings: Settings | None = None,
) -> Figure:
    """Candlestick chart with a volume panel of one instrument's bars, read without Spark.

    Takes the filters of `rollup.read_bars`; `output` also writes the chart to a file.

    Raises:
        InputError: no bars match, or they span several instruments, or `output` is unusable.
    """
    bars = read_bars(timeframe, exchange, symbol, start, end, warehouse, fill_gaps=fill_gaps,
                     fill_lookback=fill_lookback, namespace=namespace, config=config,
                     settings=settings)
    if len(bars) == 0:
        raise InputError(no_bars_message(timeframe, exchange, symbol, start, end))
    first = bars.iloc[0]
    title = title or default_title(f"{first['exchange']}/{first['symbol']}", timeframe,
                                   len(bars))
    fig = candles(bars, title=title, moving_averages=moving_averages, figsize=figsize,
                  by_date=is_calendar(timeframe))
    if output is not None:
        save(fig, output)
    return fig


def is_calendar(timeframe: str | Timeframe) -> bool:
    """Whether `timeframe` has calendar windows, charted by window_date."""
    from rollup.timeframes import Timeframe

    return Timeframe.parse(timeframe).is_calendar


def default_title(instrument: str, timeframe: str | Timeframe, count: int) -> str:
    """`GC/ES 1h (UTC), 48 bars`; a calendar level's bars are dated by their labels."""
    dated = "by window_date" if is_calendar(timeframe) else "UTC"
    return f"{instrument} {timeframe} ({dated}), {count} bars"


def no_bars_message(timeframe: object, exchange: Names, symbol: Names, start: Instant,
             end: Instant) -> str:
    what = "/".join(str(v) for v in (exchange, symbol) if v is not None) or "any instrument"
    span = f" from {start}" if start is not None else ""
    span += f" until {end}" if end is not None else ""
    return (f"no {timeframe} bars for {what}{span}: check the filters (`rollup bars`) "
            "or build the bars with `rollup run`")
