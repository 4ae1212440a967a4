"""Pure timeframe specs: the `Timeframe` value and the DAG of levels (no pyspark import)."""

from rollup.timeframes.dag import TRADES, Dag, Level, parse_dag
from rollup.timeframes.timeframe import Timeframe, Window

__all__ = ["TRADES", "Dag", "Level", "Timeframe", "Window", "parse_dag"]
