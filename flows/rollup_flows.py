"""Prefect flows of rollup: one per level, the cascade, quality, retention and maintenance.

Thin wiring over the library (`rollup.runner`, `rollup.quality`, `rollup.retention`): the
flows open the tables, run each level as a Prefect task holding that level's concurrency
slot, and publish a Markdown artifact of what they did. Deployments come from
`rollup.orchestration.deployment_specs`; `rollup serve` serves what `build_deployments` returns.

Rules (see docs/orchestration.md):
- a level flow first brings its ancestors up to date, in DAG order, so it never runs ahead
  of its parent (an up-to-date ancestor costs one metadata check);
- every level run holds the global concurrency limit `rollup-<catalog>-<ns>-<level>` (limit
  1), so runs of the same level never overlap, whichever deployment started them;
- with `orchestration.submit_master` set, the levels run through `rollup submit` on that
  Spark cluster instead of in-process.
"""

from __future__ import annotations

import importlib
import subprocess
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, cast

import attrs
import rollup_report as report
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.concurrency.sync import concurrency

from rollup import __version__
from rollup.config import Settings, load_settings
from rollup.errors import OrchestrationError
from rollup.orchestration import (
    DeploymentSpec,
    OrchestrationConfig,
    artifact_key,
    level_slot,
    level_slots,
    submit_command,
)
from rollup.runner import LevelResult, new_run_id, run_level
from rollup.times import parse_instant

if TYPE_CHECKING:
    from prefect.deployments.runner import RunnerDeployment

    from rollup.tables import Tables


@attrs.frozen
class Context:
    """What a flow run works on: settings, orchestration policy, the config file used."""

    settings: Settings
    config: OrchestrationConfig
    config_path: str | None

    @property
    def mode(self) -> str:
        master = self.config.submit_master
        return f"submitted to {master}" if master else "in-process Spark"

    @property
    def slot_timeout(self) -> float | None:
        return float(self.config.slot_timeout_seconds) or None


def open_context(warehouse: str | None, config: str | None, catalog: str | None,
                 namespace: str | None) -> Context:
    settings = load_settings(config, warehouse=warehouse, catalog=catalog, namespace=namespace)
    return Context(settings, OrchestrationConfig.from_settings(settings), config)


def open_tables(ctx: Context) -> Tables:
    from rollup.session import connect

    return connect(settings=ctx.settings)


def ensure_slots(names: Sequence[str]) -> None:
    """Create (or reset to 1) the global concurrency limits that keep level runs apart."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        for name in names:
            client.upsert_global_concurrency_limit_by_name(name, 1)


def optional_api(module: str, name: str) -> Callable[..., Any] | None:
    """`module.name` if that part of rollup is installed, else None (degrade gracefully)."""
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name == module:
            return None
        raise
    fn = getattr(mod, name, None)
    return fn if callable(fn) else None


def _hold(names: str | list[str], timeout: float | None) -> Any:
    return concurrency(names, occupy=1, timeout_seconds=timeout, strict=True,
                       raise_on_lease_renewal_failure=False)


# --- tasks -------------------------------------------------------------------------------


@task(name="run-level", task_run_name="level-{level}", cache_policy=NO_CACHE,
      retries=2, retry_delay_seconds=60, timeout_seconds=300)
def run_level_task(tables: Tables, level: str, run_id: str, slot: str,
                   slot_timeout: float | None = None) -> LevelResult:
    """Bring one level up to date with its parent while holding the level's slot."""
    logger = get_run_logger()
    with _hold(slot, slot_timeout):
        result = run_level(tables, level, run_id=run_id, progress=logger.info)
    logger.info(result.describe())
    return result


@task(name="submit", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=60)
def submit_task(command: list[str], slots: list[str], timeout: float,
                slot_timeout: float | None = None) -> list[dict[str, Any]]:
    """Run `rollup submit ... run` on the cluster while holding the slots of its levels."""
    logger = get_run_logger()
    logger.info("running %s", " ".join(command[3:]))
    with _hold(slots, slot_timeout):
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                                  check=False)
        except subprocess.TimeoutExpired:
            raise OrchestrationError(
                f"rollup submit did not finish within {timeout:.0f}s (orchestration."
                "timeout_seconds); it was stopped"
            ) from None
    if done.stderr:
        logger.info(done.stderr[-4000:])
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise OrchestrationError(f"rollup submit exited with status {done.returncode}: {last}")
    results = report.parse_run_json(done.stdout)
    if results is None:
        logger.warning("rollup submit printed no level results: %s", done.stdout[-500:])
        return []
    return results


@task(name="check", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=60,
      timeout_seconds=300)
def check_task(tables: Tables, timeframes: list[str] | None,
               since: datetime | None) -> list[dict[str, Any]] | None:
    """Run the quality checks; None when this rollup has no quality module yet."""
    run_checks = optional_api("rollup.quality", "run_checks")
    if run_checks is None:
        return None
    return [report.as_dict(c) for c in run_checks(tables, timeframes=timeframes, since=since)]


@task(name="retention", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=60,
      timeout_seconds=300)
def retention_task(tables: Tables, slots: list[str], now: datetime | None, dry_run: bool,
                   slot_timeout: float | None = None) -> list[dict[str, Any]] | None:
    """Enforce retention while holding every level's slot; None when not available."""
    enforce = optional_api("rollup.retention", "enforce_retention")
    if enforce is None:
        return None
    with _hold(slots, slot_timeout):
        return [report.as_dict(r) for r in enforce(tables, now=now, dry_run=dry_run)]


@task(name="maintenance", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=60)
def maintenance_task(tables: Tables, slots: list[str], section: dict[str, Any], dry_run: bool,
                     slot_timeout: float | None = None) -> list[dict[str, Any]] | None:
    """Compact and clean every table while holding every level's slot; None when not
    available. `section` is `[maintenance]` of rollup.toml (snapshot and orphan ages)."""
    maintain = optional_api("rollup.maintenance", "maintain")
    cleanup = optional_api("rollup.maintenance", "Cleanup")
    if maintain is None or cleanup is None:
        return None
    policy = cast(Any, cleanup).from_section(section)
    with _hold(slots, slot_timeout):
        results = maintain(tables, snapshot_age=policy.snapshot_age,
                           retain_last=policy.retain_last, orphan_age=policy.orphan_age,
                           dry_run=dry_run, progress=get_run_logger().info)
    return [report.as_dict(r) for r in results]


# --- reporting ---------------------------------------------------------------------------


def _lags(tables: Tables | None, levels: Sequence[str]) -> tuple[dict[str, Any], list[str]]:
    """Per level: lag behind its parent and newest bar (from `rollup.status`)."""
    if tables is None:
        return {}, ["lag: see `rollup status` (levels ran on the cluster)"]
    try:
        from rollup.status import level_status

        rows = {s.level: s for s in level_status(tables) if s.level in levels}
    except Exception as exc:  # noqa: BLE001 - the report must not fail the run
        return {}, [f"lag unavailable: {type(exc).__name__}: {exc}"]
    return {name: rows[name] for name in rows}, []


def publish(ctx: Context, kind: str, title: str, **parts: Any) -> None:
    """Publish the run report as a Markdown artifact; a failure here only logs."""
    logger = get_run_logger()
    markdown = report.render(title, mode=ctx.mode, **parts)
    try:
        create_markdown_artifact(markdown=markdown, key=artifact_key(kind, ctx.settings),
                                 description=title)
    except Exception as exc:  # noqa: BLE001 - reporting must not fail the run
        logger.warning("could not publish the run report: %s", exc)


def _since(statuses: dict[str, Any], levels: Sequence[str], hours: int) -> datetime | None:
    if hours == 0:
        return None
    newest = [statuses[n].newest_window_start for n in levels
              if n in statuses and statuses[n].newest_window_start is not None]
    return min(newest) - timedelta(hours=hours) if newest else None


def run_levels(ctx: Context, kind: str, levels: Sequence[str], *, title: str,
               timeframe: str | None = None) -> list[dict[str, Any]]:
    """Run `levels` in order (each a task holding its slot), then check and report."""
    logger = get_run_logger()
    run_id = new_run_id()
    results: list[dict[str, Any]] = []
    tables: Tables | None = None
    try:
        if ctx.config.submit_master:
            slots = level_slots(ctx.settings, levels)
            ensure_slots(slots)
            command = submit_command(ctx.settings, ctx.config.submit_master,
                                     timeframe=timeframe, config_path=ctx.config_path)
            results = submit_task.with_options(
                retries=ctx.config.retries, retry_delay_seconds=ctx.config.retry_delay_seconds,
                timeout_seconds=ctx.config.timeout_seconds + 60,
            )(command, slots, float(ctx.config.timeout_seconds), ctx.slot_timeout)
        else:
            tables = open_tables(ctx)
            ensure_slots(level_slots(ctx.settings, levels))
            level_task = run_level_task.with_options(**ctx.config.task_options())
            for name in levels:
                result = cast(LevelResult, level_task(
                    tables, name, run_id, level_slot(ctx.settings, name), ctx.slot_timeout))
                results.append(attrs.asdict(result))
    except BaseException as exc:
        publish(ctx, kind, title, run_id=run_id, results=results,
                error=f"{type(exc).__name__}: {exc}")
        raise
    statuses, notes = _lags(tables, levels)
    lags = {name: s.lag_seconds for name, s in statuses.items()}
    checks = None
    written = [r["level"] for r in results if r.get("status") == "written"]
    if tables is not None and ctx.config.checks_after_run and written:
        since = _since(statuses, written, ctx.config.check_lookback_hours)
        checks = check_task.with_options(**ctx.config.task_options())(tables, written, since)
        if checks is None:
            notes.append("quality checks: not available in this rollup version")
        elif report.failed_checks(checks):
            logger.warning("%d quality checks failed", len(report.failed_checks(checks)))
    publish(ctx, kind, title, run_id=run_id, results=results, lags=lags, checks=checks,
            notes=notes)
    return results


# --- flows -------------------------------------------------------------------------------


@flow(name="rollup-level")
def level_flow(timeframe: str, warehouse: str | None = None, config: str | None = None,
               catalog: str | None = None, namespace: str | None = None) -> list[dict[str, Any]]:
    """Bring one level up to date: its ancestors first (DAG order), then the level itself."""
    ctx = open_context(warehouse, config, catalog, namespace)
    chain = [lv.name for lv in ctx.settings.dag.up_to(timeframe)]
    return run_levels(ctx, "level-" + chain[-1], chain, timeframe=chain[-1],
                      title=f"rollup {chain[-1]} · {ctx.settings.namespace}")


@flow(name="rollup-cascade")
def cascade_flow(warehouse: str | None = None, config: str | None = None,
                 catalog: str | None = None, namespace: str | None = None,
                 up_to: str | None = None) -> list[dict[str, Any]]:
    """Run every level (or those needed for `up_to`) in DAG order, one task per level."""
    ctx = open_context(warehouse, config, catalog, namespace)
    dag = ctx.settings.dag
    levels = [lv.name for lv in (dag.up_to(up_to) if up_to else dag.order())]
    return run_levels(ctx, "cascade", levels, timeframe=levels[-1] if up_to else None,
                      title=f"rollup cascade · {ctx.settings.namespace}")


@flow(name="rollup-quality")
def quality_flow(warehouse: str | None = None, config: str | None = None,
                 catalog: str | None = None, namespace: str | None = None,
                 timeframes: list[str] | None = None,
                 since: str | None = None) -> list[dict[str, Any]]:
    """Run the quality checks (all levels by default) and report them with each level's lag."""
    ctx = open_context(warehouse, config, catalog, namespace)
    names = [ctx.settings.dag.level(t).name for t in timeframes] if timeframes else None
    start = parse_instant(since, "since") if since else None
    title = f"rollup quality · {ctx.settings.namespace}"
    tables = open_tables(ctx)
    checks = check_task.with_options(**ctx.config.task_options())(tables, names, start)
    statuses, notes = _lags(tables, names or ctx.settings.dag.names())
    if checks is None:
        notes.append("quality checks: not available in this rollup version; lag only")
    lag_rows = [{"level": n, "lag": report.format_lag(s.lag_seconds), "pending": s.pending,
                 "newest bar": s.newest_window_start, "last run": s.last_run_id}
                for n, s in statuses.items()]
    publish(ctx, "quality", title, checks=checks, extra=lag_rows, extra_title="Freshness",
            notes=notes)
    failed = report.failed_checks(checks or [])
    if failed and ctx.config.quality_strict:
        raise OrchestrationError(
            f"{len(failed)} quality checks failed (orchestration.quality_strict is on): "
            + ", ".join(report.check_name(c) for c in failed)
        )
    return checks or []


@flow(name="rollup-retention")
def retention_flow(warehouse: str | None = None, config: str | None = None,
                   catalog: str | None = None, namespace: str | None = None,
                   dry_run: bool = False, now: str | None = None) -> list[dict[str, Any]]:
    """Enforce each level's retention while no level runs; `dry_run` only lists."""
    ctx = open_context(warehouse, config, catalog, namespace)
    when = parse_instant(now, "now") if now else None
    title = f"rollup retention · {ctx.settings.namespace}" + (" (dry run)" if dry_run else "")
    tables = open_tables(ctx)
    slots = level_slots(ctx.settings)
    ensure_slots(slots)
    results = retention_task.with_options(**ctx.config.task_options())(
        tables, slots, when, dry_run, ctx.slot_timeout)
    notes = [] if results is not None else ["retention: not available in this rollup version"]
    publish(ctx, "retention", title, extra=results or [], extra_title="Removed", notes=notes)
    return results or []


@flow(name="rollup-maintenance")
def maintenance_flow(warehouse: str | None = None, config: str | None = None,
                     catalog: str | None = None, namespace: str | None = None,
                     dry_run: bool = False) -> list[dict[str, Any]]:
    """Compact files and expire snapshots of every table while no level runs."""
    ctx = open_context(warehouse, config, catalog, namespace)
    title = f"rollup maintenance · {ctx.settings.namespace}" + (" (dry run)" if dry_run else "")
    tables = open_tables(ctx)
    slots = level_slots(ctx.settings)
    ensure_slots(slots)
    section = dict(ctx.settings.extra.get("maintenance") or {})
    # Compaction takes longer than a level run: allow twelve task timeouts.
    options = {**ctx.config.task_options(), "timeout_seconds": 12 * ctx.config.timeout_seconds}
    results = maintenance_task.with_options(**options)(
        tables, slots, section, dry_run, ctx.slot_timeout)
    notes = [] if results is not None else ["maintenance: not available in this rollup version"]
    rows = [{"table": r.get("table"), "data files": _change(r, "data_files"),
             "delete files": _change(r, "delete_files"),
             "snapshots expired": len(r.get("snapshots") or []),
             "orphan files": len(r.get("orphan_files") or []), "seconds": r.get("seconds")}
            for r in results or []]
    publish(ctx, "maintenance", title, extra=rows, extra_title="Files per table", notes=notes)
    return results or []


def _change(result: dict[str, Any], key: str) -> str:
    before, after = result.get("before") or {}, result.get("after") or {}
    return f"{before.get(key, '-')} -> {after.get(key, '-')}"


FLOWS: dict[str, Any] = {"level": level_flow, "cascade": cascade_flow,
                         "quality": quality_flow, "retention": retention_flow,
                         "maintenance": maintenance_flow}


def build_deployments(specs: Sequence[DeploymentSpec],
                      parameters: dict[str, Any]) -> list[RunnerDeployment]:
    """Prefect deployments for `specs`: one flow per spec name, UTC cron, one active run."""
    from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
    from prefect.schedules import Cron

    out = []
    for spec in specs:
        params = dict(parameters)
        if spec.kind == "level":
            params["timeframe"] = spec.timeframe
        flow_obj = FLOWS[spec.kind].with_options(name=spec.flow_name)
        out.append(flow_obj.to_deployment(
            name=spec.name,
            schedules=[Cron(spec.cron, timezone="UTC")] if spec.cron else None,
            concurrency_limit=ConcurrencyLimitConfig(
                limit=spec.concurrency_limit,
                collision_strategy=ConcurrencyLimitStrategy(spec.collision)),
            parameters=params,
            description=spec.description,
            tags=list(spec.tags),
            version=__version__,
        ))
    return out


def serve(deployments: Sequence[RunnerDeployment], limit: int | None = None) -> None:
    """Serve the deployments until interrupted (Prefect runner: runs each in a subprocess)."""
    from prefect import serve as prefect_serve

    prefect_serve(*deployments, limit=limit)
