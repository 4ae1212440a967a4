"""The report of `rollup bench`: every figure of one run, the ratios and rates the goals in
docs/benchmarks.md are set on, the printed table and the JSON line."""

from __future__ import annotations

import json
from collections.abc import Callable

import attrs

from rollup.benchmarks.common import PARTS, BenchConfig, Timing, over, timing_row
from rollup.benchmarks.follow_lag import FollowLagResult
from rollup.benchmarks.incremental import IncrementalResult
from rollup.benchmarks.ingest import IngestResult
from rollup.benchmarks.plan import ScalePoint, linear_fit
from rollup.benchmarks.scattered import ScatteredResult

GOALS: dict[str, tuple[str, float]] = {
    "cascade_over_1m": ("<=", 1.15),
    "direct_over_cascade": (">=", 4.0),
    "spark_over_duckdb": ("<=", 3.0),
    "incremental_30d_over_1d": ("<=", 1.2),
    "per_trade_spread": ("<=", 1.10),
    "ingest_30d_over_1d": ("<=", 1.2),
    "csv_rows_per_s": (">=", 100_000),
    "parquet_rows_per_s": (">=", 200_000),
}
"""The issues' goals per ratio and per rate (`BenchReport.rates`): (comparison, bound)."""

FRESHNESS_GOALS: dict[str, tuple[str, float]] = {
    "cycle_s": ("<=", 2.0),
    "follow_lag_median_s": ("<=", 10.0),
    "follow_lag_p95_s": ("<=", 20.0),
}
"""Issue 16's goals in seconds (`BenchReport.freshness`): (comparison, bound)."""


@attrs.frozen
class BenchReport:
    """Everything one run measured; `ratios()` and `json_line()` summarise it."""

    config: BenchConfig
    master: str
    timings: dict[str, Timing]
    cascade_levels: dict[str, float]
    duckdb_equal: bool | None
    incremental: tuple[IncrementalResult, ...]
    scaling: tuple[ScalePoint, ...]
    scattered: ScatteredResult | None = None
    ingest: IngestResult | None = None
    follow: FollowLagResult | None = None

    def ordinary_cycle(self) -> Timing | None:
        """The ordinary incremental cycle on the history the scattered batch ran on."""
        if self.scattered is None:
            return None
        return next((r.cycle for r in self.incremental
                     if r.days == self.scattered.history_days), None)

    def _timing_ratios(self, value: Callable[[Timing], float | None]
                       ) -> dict[str, float | None]:
        """The ratios of the plan-level and incremental timings, on `value` of each."""
        short, long = self.config.history_days
        of = {name: value(timing) for name, timing in self.timings.items()}
        inc = {r.days: value(r.cycle) for r in self.incremental}
        return {
            "cascade_over_1m": over(of.get("cascade"), of.get("1m")),
            "direct_over_cascade": over(of.get("direct"), of.get("cascade")),
            "spark_over_duckdb": over(of.get("1m"), of.get("duckdb 1m")),
            "incremental_30d_over_1d": over(inc.get(long), inc.get(short)),
        }

    def ratios(self) -> dict[str, float | None]:
        """The ratios of GOALS; None for a figure this run did not measure."""
        per_trade = [p.ns_per_trade for p in self.scaling]
        return {
            **self._timing_ratios(lambda t: t.seconds),
            "per_trade_spread": max(per_trade) / min(per_trade) if per_trade else None,
            "ingest_30d_over_1d": self.ingest.late_over() if self.ingest else None,
        }

    def rates(self) -> dict[str, float | None]:
        """The rows-per-second figures of GOALS; None when not measured."""
        ingest = self.ingest
        return {"csv_rows_per_s": ingest.csv_rows_per_s if ingest else None,
                "parquet_rows_per_s": ingest.parquet_rows_per_s if ingest else None}

    def freshness(self) -> dict[str, float | None]:
        """The seconds of FRESHNESS_GOALS: the median ordinary incremental cycle on the short
        history (`cycle_s`) and the follow lag's median and p95; None when not measured."""
        short = next((r.cycle.seconds for r in self.incremental
                      if r.days == self.config.history_days[0]), None)
        follow = self.follow
        return {"cycle_s": short,
                "follow_lag_median_s": follow.median_s if follow else None,
                "follow_lag_p95_s": follow.p95_s if follow else None}

    def freshness_goals(self) -> dict[str, bool | None]:
        return {name: None if value is None else value <= FRESHNESS_GOALS[name][1]
                for name, value in self.freshness().items()}

    def scaling_fit(self) -> dict[str, float] | None:
        """The cascade's fixed seconds and marginal ns per trade, fitted over the sizes."""
        fit = linear_fit([(p.trades, p.cascade.seconds) for p in self.scaling])
        if fit is None:
            return None
        return {"fixed_s": fit[0], "marginal_ns_per_trade": fit[1] * 1e9}

    def cpu_ratios(self) -> dict[str, float | None]:
        """The same ratios on CPU seconds (steadier than wall time on a shared machine)."""
        return {
            **self._timing_ratios(lambda t: t.cpu_seconds),
            "scattered_over_ordinary": over(
                self.scattered.cycle.cpu_seconds if self.scattered else None,
                ordinary.cpu_seconds if (ordinary := self.ordinary_cycle()) else None),
            "ingest_30d_over_1d": self.ingest.late_over_cpu() if self.ingest else None,
        }

    def goals(self) -> dict[str, bool | None]:
        met: dict[str, bool | None] = {}
        for name, value in {**self.ratios(), **self.rates()}.items():
            op, bound = GOALS[name]
            met[name] = None if value is None else (value <= bound if op == "<=" else
                                                    value >= bound)
        return met

    def json_line(self) -> str:
        def rounded(values: dict[str, float | None]) -> dict[str, float | None]:
            return {k: None if v is None else round(v, 3) for k, v in values.items()}

        fit = self.scaling_fit()
        rates = {k: None if v is None else round(v) for k, v in self.rates().items()}
        return json.dumps({**rounded(self.ratios()), **rates, "trades": self.config.trades,
                           "history_days": list(self.config.history_days),
                           "duckdb_equal": self.duckdb_equal, "goals_met": self.goals(),
                           "cpu": rounded(self.cpu_ratios()),
                           "scaling_fit": None if fit is None else rounded(dict(fit)),
                           **(self.scattered.as_json(self.ordinary_cycle())
                              if self.scattered else {}),
                           **(self.ingest.as_json() if self.ingest else {}),
                           **rounded(self.freshness()),
                           "freshness_goals_met": self.freshness_goals(),
                           **(self.follow.as_json() if self.follow else {})},
                          sort_keys=False)

    def table(self) -> str:
        parts = self.config.parts
        only = "" if set(parts) == set(PARTS) else f" ({', '.join(parts)} only)"
        size = f"{self.config.trades:,} trades, " if "plan" in parts else ""
        lines = [f"rollup bench{only}: {size}{self.config.symbols} symbols, 1 day; "
                 f"Spark {self.master}; median of {self.config.repeats} repeat(s)", ""]
        lines.append(f"{'measure':<28}{'wall s':>10}{'cpu s':>10}{'ns/trade':>10}")
        lines += [timing_row(timing.name, timing) for timing in self.timings.values()]
        if self.cascade_levels:
            lines.append("  cascade per level: " + ", ".join(
                f"{name} {s:.3f}s" for name, s in self.cascade_levels.items()))
        if self.duckdb_equal is not None:
            lines.append(f"  DuckDB 1m bars equal to Spark's: {self.duckdb_equal}")
        for inc in self.incremental:
            lines += inc.lines()
        if self.scattered is not None:
            lines += self.scattered.lines(self.ordinary_cycle())
        if self.ingest is not None:
            lines += self.ingest.lines()
        if self.follow is not None:
            lines += self.follow.lines()
        if self.scaling:
            lines.append("")
            lines.append(f"{'scaling (cascade)':<28}{'wall s':>10}{'ns/trade':>10}"
                         f"{'1m ns/tr':>10}{'casc/1m':>10}{'dir/casc':>10}{'JVM MiB':>10}"
                         f"{'py MiB':>10}")
            for p in self.scaling:
                jvm, py = p.peak_mib.get("jvm"), p.peak_mib.get("python")
                direct = None if p.direct is None else p.direct.seconds / p.cascade.seconds
                lines.append(f"{f'{p.trades:,} trades':<28}{p.cascade.seconds:>10.3f}"
                             f"{p.ns_per_trade:>10.0f}"
                             f"{p.one_minute.seconds / p.trades * 1e9:>10.0f}"
                             f"{p.cascade.seconds / p.one_minute.seconds:>10.2f}"
                             f"{'-' if direct is None else f'{direct:.2f}':>10}"
                             f"{'-' if jvm is None else f'{jvm:.0f}':>10}"
                             f"{'-' if py is None else f'{py:.0f}':>10}")
            fit = self.scaling_fit()
            if fit is not None:
                lines.append(f"  fit: cascade = {fit['fixed_s']:.2f} s fixed + "
                             f"{fit['marginal_ns_per_trade']:.0f} ns per trade")
        lines.append("")
        goals = self.goals()
        rates = self.rates()
        for name, value in {**self.ratios(), **rates}.items():
            op, bound = GOALS[name]
            state = {True: "met", False: "NOT met", None: "n/a"}[goals[name]]
            if name in rates:
                shown = "-" if value is None else f"{value:,.0f}"
                lines.append(f"{name:<28}{shown:>10}   goal {op} {bound:,.0f}: {state}")
                continue
            shown = "-" if value is None else f"{value:.3f}"
            lines.append(f"{name:<28}{shown:>10}   goal {op} {bound}: {state}")
        met = self.freshness_goals()
        for name, value in self.freshness().items():
            op, bound = FRESHNESS_GOALS[name]
            state = {True: "met", False: "NOT met", None: "n/a"}[met[name]]
            shown = "-" if value is None else f"{value:.3f}"
            lines.append(f"{name:<28}{shown:>10}   goal {op} {bound:g} s: {state}")
        return "\n".join(lines)


