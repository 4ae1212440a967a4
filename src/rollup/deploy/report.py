"""Run reports of the rollup flows: pure rendering to Markdown for Prefect artifacts.

No Prefect or Spark here, so the report format is tested on plain values; `rollup.deploy.flows`
publishes what `render` returns.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

import attrs

LEVEL_COLUMNS = ("level", "status", "windows", "partitions", "rows written", "rows deleted",
                 "seconds", "lag")


def as_dict(value: Any) -> dict[str, Any]:
    """A plain dict of a result object (its `as_json()`, attrs, dataclass, namedtuple)."""
    if isinstance(value, Mapping):
        return dict(value)
    if callable(getattr(value, "as_json", None)):
        return dict(value.as_json())
    if attrs.has(type(value)):
        return attrs.asdict(value, recurse=False)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    if hasattr(value, "_asdict"):
        return dict(value._asdict())
    return dict(vars(value))


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.1f}"
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, list | tuple):
        shown = ", ".join(_cell(v) for v in value[:3])
        return shown + (f" (+{len(value) - 3})" if len(value) > 3 else "")
    return str(value).replace("|", "\\|").replace("\n", " ")


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return lines


def format_lag(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}min"
    return f"{seconds / 3600:.1f}h"


def level_rows(
    results: Sequence[Mapping[str, Any]], lags: Mapping[str, float | None]
) -> list[list[Any]]:
    """One row per level result: what was recomputed and written, and the lag after it."""
    rows = []
    for r in results:
        windows = "all" if r.get("full") else r.get("windows", 0)
        rows.append([r.get("level"), r.get("status"), windows, r.get("partitions", 0),
                     r.get("changed", 0), r.get("deleted", 0), r.get("seconds"),
                     format_lag(lags.get(str(r.get("level"))))])
    return rows


def freshness_rows(statuses: Iterable[Any]) -> list[dict[str, Any]]:
    """One row per `rollup.operations.status.LevelStatus`: lag, pending input, newest bar, last
    run."""
    return [{"level": s.level, "lag": format_lag(s.lag_seconds), "pending": s.pending,
             "newest bar": s.newest_window_start, "last run": s.last_run_id}
            for s in statuses]


def _change(result: Mapping[str, Any], key: str) -> str:
    before, after = result.get("before") or {}, result.get("after") or {}
    return f"{before.get(key, '-')} -> {after.get(key, '-')}"


def maintenance_rows(results: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One row per table maintained: data and delete files before -> after, what was removed."""
    return [{"table": r.get("table"), "data files": _change(r, "data_files"),
             "delete files": _change(r, "delete_files"),
             "snapshots expired": len(r.get("snapshots") or []),
             "orphan files": len(r.get("orphan_files") or []), "seconds": r.get("seconds")}
            for r in results]


def failed_checks(checks: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return [c for c in checks if c.get("passed") is False]


def check_name(check: Mapping[str, Any]) -> str:
    """`<timeframe> <check>` of a check result, e.g. `5m vwap`."""
    level = check.get("timeframe") or check.get("level")
    name = check.get("check") or check.get("name")
    return " ".join(str(p) for p in (level, name) if p)


def render(
    title: str,
    *,
    run_id: str | None = None,
    mode: str | None = None,
    results: Sequence[Mapping[str, Any]] = (),
    lags: Mapping[str, float | None] | None = None,
    checks: Sequence[Mapping[str, Any]] | None = None,
    extra: Sequence[Mapping[str, Any]] | None = None,
    extra_title: str = "Results",
    notes: Sequence[str] = (),
    error: str | None = None,
) -> str:
    """Markdown of one flow run: levels, windows recomputed, rows written, lag, checks."""
    lines = [f"# {title}", ""]
    facts = [f"run `{run_id}`" if run_id else None, mode]
    lines.append(" · ".join(f for f in facts if f) or "rollup run")
    if error:
        lines += ["", f"**Failed:** {_cell(error)}"]
    if results:
        lines += ["", "## Levels", ""]
        lines += _table(LEVEL_COLUMNS, level_rows(results, lags or {}))
        written = sum(int(r.get("changed") or 0) for r in results)
        lines += ["", f"{len(results)} levels, {written} bars written."]
    if extra:
        header = list(dict.fromkeys(k for row in extra for k in row))
        lines += ["", f"## {extra_title}", ""]
        lines += _table(header, [[row.get(k) for k in header] for row in extra])
    if checks is not None:
        bad = failed_checks(checks)
        lines += ["", f"## Quality checks: {len(checks) - len(bad)} passed, {len(bad)} failed",
                  ""]
        if checks:
            header = list(dict.fromkeys(k for row in checks for k in row))
            lines += _table(header, [[row.get(k) for k in header] for row in checks])
    if notes:
        lines += ["", "## Notes", ""] + [f"- {_cell(n)}" for n in notes]
    return "\n".join(lines) + "\n"


def parse_run_json(output: str) -> list[dict[str, Any]] | None:
    """The level results that `rollup run --json` printed at the end of `output`, if any."""
    text = output.rstrip()
    start = text.rfind("\n[")
    for begin in ([start + 1] if start >= 0 else []) + [0]:
        if not text[begin:].lstrip().startswith("["):
            continue
        try:
            value = json.loads(text[begin:])
        except ValueError:
            continue
        if isinstance(value, list) and all(isinstance(v, dict) for v in value):
            return value
    return None
