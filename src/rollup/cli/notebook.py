"""Notebook-side commands: `rollup chart` (candlesticks with volume, read without Spark)."""

from __future__ import annotations

import argparse
from typing import Any

from rollup.errors import InputError


def register(sub: Any) -> None:
    p = sub.add_parser(
        "chart", help="draw a candlestick chart with a volume panel to an image file",
        description="Draw one instrument's bars as candlesticks with a volume panel. Reads the "
        "bar table through pyiceberg: no Spark is started.")
    p.add_argument("timeframe", help="level to draw, e.g. 5m or 1h")
    p.add_argument("--exchange", required=True)
    p.add_argument("--symbol", required=True)
    p.add_argument("--start", help="window_start >= START (ISO-8601, UTC when no offset)")
    p.add_argument("--end", help="window_start < END (ISO-8601, UTC when no offset)")
    p.add_argument("--output", required=True, metavar="FILE",
                   help="image file: .png, .svg, .pdf or .jpg")
    p.add_argument("--title", help="chart title (default: instrument, timeframe, bar count)")
    p.add_argument("--fill-gaps", action="store_true",
                   help="draw windows without trades as flat candles at the previous close")
    p.add_argument("--mav", type=int, action="append", default=[], metavar="N",
                   help="overlay an N-bar moving average of the close (repeatable)")
    p.add_argument("--size", default="12x7", metavar="WxH", help="size in inches (default 12x7)")
    p.add_argument("--dpi", type=int, default=110, help="resolution (default 110)")
    p.set_defaults(handler=cmd_chart)


def _size(text: str) -> tuple[float, float]:
    width, sep, height = text.lower().partition("x")
    try:
        size = (float(width), float(height))
    except ValueError:
        size = (0.0, 0.0)
    if not sep or not (1 <= size[0] <= 100 and 1 <= size[1] <= 100):
        raise InputError(f"invalid --size {text!r}: expected WIDTHxHEIGHT in inches, e.g. 12x7")
    return size


def cmd_chart(args: argparse.Namespace) -> int:
    import matplotlib

    matplotlib.use("Agg")  # files only, no display needed

    from rollup.cli.common import settings_from
    from rollup.readers.charts import (
        candles,
        default_title,
        is_calendar,
        no_bars_message,
        save,
    )
    from rollup.readers.read import read_bars

    size = _size(args.size)
    if not 20 <= args.dpi <= 1200:
        raise InputError(f"invalid --dpi {args.dpi}: expected 20 to 1200")
    if any(n < 1 for n in args.mav):
        raise InputError(f"invalid --mav {min(args.mav)}: expected a number of bars >= 1")
    bars = read_bars(args.timeframe, args.exchange, args.symbol, args.start, args.end,
                     fill_gaps=args.fill_gaps, settings=settings_from(args))
    if len(bars) == 0:
        raise InputError(no_bars_message(args.timeframe, args.exchange, args.symbol, args.start,
                                  args.end))
    title = args.title or default_title(f"{args.exchange}/{args.symbol}", args.timeframe,
                                        len(bars))
    fig = candles(bars, title=title, moving_averages=tuple(args.mav), figsize=size,
                  by_date=is_calendar(args.timeframe))
    path = save(fig, args.output, dpi=args.dpi)
    print(f"wrote {path} ({len(bars)} bars)")
    return 0
