"""Prefect flows of rollup: one per level, the cascade, quality, retention and maintenance.

Wiring only (needs the `prefect` extra): the flows open the tables, run each level as a Prefect
task holding that level's concurrency slot, call `rollup.operations.quality`,
`rollup.incremental.retention` and
`rollup.operations.maintenance` with the settings of rollup.toml, and publish a Markdown report
(`rollup.deploy.report`). Deployments come from `rollup.deploy.orchestration.deployment_specs`;
`rollup serve` serves what `build_deployments` returns.

Rules (see docs/orchestration.md):
- a level flow first brings its ancestors up to date, in DAG order, so it never runs ahead
  of its parent (an up-to-date ancestor costs one metadata check);
- every level run holds the global concurrency limit `rollup-<catalog>-<ns>-<level>` (limit
  1), so runs of the same level never overlap, whichever deployment started them;
- with `orchestration.submit_master` set, each level runs as its own task through
  `rollup submit` on that Spark cluster instead of in-process, in the same DAG order.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import attrs
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.concurrency.sync import concurrency

from rollup import __version__
from rollup.deploy import report
from rollup.deploy.orchestration import (
    DeploymentSpec,
    artifact_key,
    level_slot,
    level_slots,
    submit_command,
)
from rollup.errors import OrchestrationError
from rollup.incremental.retention import enforce_retention
from rollup.incremental.runner import LevelResult, new_run_id, run_level
from rollup.operations.maintenance import maintain
from rollup.operations.quality import run_checks
from rollup.operations.status import LevelStatus, level_status
from rollup.settings.config import (
    MaintenanceConfig,
    OrchestrationConfig,
    QualityConfig,
    Settings,
    load_settings,
)
from rollup.specs.times import parse_instant

if TYPE_CHECKING:
    from contextlib import AbstractContextManager

    from prefect.deployments.runner import RunnerDeployment

    from rollup.storage.tables import Tables


@attrs.frozen
class Context:
    """What a flow run works on: settings, orchestration policy, the config file used."""

    settings: Settings
    config_path: str | None

    @property
    def config(self) -> OrchestrationConfig:
        return self.settings.orchestration

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
    return Context(settings, config)


def open_tables(ctx: Context) -> Tables:
    from rollup.storage.session import connect

    return connect(settings=ctx.settings)


def ensure_slots(names: Sequence[str]) -> None:
    """Create (or reset to 1) the global concurrency limits that keep level runs apart."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        for name in names:
            client.upsert_global_concurrency_limit_by_name(name, 1)


def _hold(names: str | list[str], timeout: float | None) -> AbstractContextManager[None]:
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


@task(name="submit-level", task_run_name="submit-{level}", cache_policy=NO_CACHE,
      retries=2, retry_delay_seconds=60)
def submit_level_task(command: list[str], level: str, slots: list[str], timeout: float,
                      slot_timeout: float | None = None) -> dict[str, Any]:
    """Run `rollup submit ... run --timeframe <level>` on the cluster; its result for `level`.

    The command also checks the level's ancestors (a metadata check each when up to date)
    and could write them, so it holds their slots as well as the level's.
    """
    logger = get_run_logger()
    logger.info("running %s", " ".join(command[3:]))
    with _hold(slots, slot_timeout):
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                                  check=False)
        except subprocess.TimeoutExpired:
            raise OrchestrationError(
                f"rollup submit for level {level} did not finish within {timeout:.0f}s "
                "(orchestration.timeout_seconds); it was stopped"
            ) from None
    if done.stderr:
        logger.info(done.stderr[-4000:])
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise OrchestrationError(
            f"rollup submit for level {level} exited with status {done.returncode}: {last}")
    printed = report.parse_run_json(done.stdout) or []
    by_level = {str(r.get("level")): r for r in printed}
    for ancestor, result in by_level.items():
        if ancestor != level and result.get("status") == "written":
            logger.info("level %s also caught up its ancestor %s", level, ancestor)
    if level not in by_level:
        logger.warning("rollup submit printed no result for level %s: %s", level,
                       done.stdout[-500:])
        return {"level": level, "status": "no report"}
    return by_level[level]


@task(name="check", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=60,
      timeout_seconds=300)
def check_task(tables: Tables, timeframes: list[str] | None, since: datetime | None,
               limits: QualityConfig) -> list[dict[str, Any]]:
    """Run the quality checks with the freshness limits of `[quality]`."""
    results = run_checks(tables, timeframes=timeframes, since=since, max_age=limits.max_age,
                         max_lag=limits.max_lag)
    return [report.as_dict(c) for c in results]


@task(name="retention", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=60,
      timeout_seconds=300)
def retention_task(tables: Tables, slots: list[str], now: datetime | None, dry_run: bool,
                   cleanup: MaintenanceConfig,
                   slot_timeout: float | None = None) -> list[dict[str, Any]]:
    """Enforce retention, then expire snapshots and orphans as `[maintenance]` says, while
    holding every level's slot."""
    with _hold(slots, slot_timeout):
        results = enforce_retention(tables, now=now, dry_run=dry_run,
                                    snapshot_age=cleanup.snapshot_age,
                                    retain_last=cleanup.retain_last,
                                    orphan_age=cleanup.orphan_age)
    return [report.as_dict(r) for r in results]


@task(name="maintenance", cache_policy=NO_CACHE, retries=2, retry_delay_seconds=60)
def maintenance_task(tables: Tables, slots: list[str], cleanup: MaintenanceConfig,
                     dry_run: bool, slot_timeout: float | None = None) -> list[dict[str, Any]]:
    """Compact and clean every table (ages from `[maintenance]`) holding every level's slot."""
    with _hold(slots, slot_timeout):
        results = maintain(tables, snapshot_age=cleanup.snapshot_age,
                           retain_last=cleanup.retain_last, orphan_age=cleanup.orphan_age,
                           dry_run=dry_run, progress=get_run_logger().info)
    return [report.as_dict(r) for r in results]


# --- reporting ---------------------------------------------------------------------------


def _statuses(tables: Tables | None,
              levels: Sequence[str]) -> tuple[dict[str, LevelStatus], list[str]]:
    """Per level: lag behind its parent and newest bar (from `rollup.operations.status`)."""
    if tables is None:
        return {}, ["levels ran on the cluster: lag in `rollup status`, checks in the quality "
                    "flow"]
    try:
        rows = {s.level: s for s in level_status(tables) if s.level in levels}
    except Exception as exc:  # noqa: BLE001 - the report must not fail the run
        return {}, [f"lag unavailable: {type(exc).__name__}: {exc}"]
    return rows, []


def publish(ctx: Context, kind: str, title: str, **parts: Any) -> None:
    """Publish the run report as a Markdown artifact; a failure here only logs."""
    logger = get_run_logger()
    markdown = report.render(title, mode=ctx.mode, **parts)
    try:
        create_markdown_artifact(markdown=markdown, key=artifact_key(kind, ctx.settings),
                                 description=title)
    except Exception as exc:  # noqa: BLE001 - reporting must not fail the run
        logger.warning("could not publish the run report: %s", exc)


def _since(statuses: dict[str, LevelStatus], levels: Sequence[str],
           hours: int) -> datetime | None:
    if hours == 0:
        return None
    newest = [s.newest_window_start for n, s in statuses.items()
              if n in levels and s.newest_window_start is not None]
    return min(newest) - timedelta(hours=hours) if newest else None


def _run_in_process(ctx: Context, tables: Tables, levels: Sequence[str], run_id: str,
                    results: list[dict[str, Any]]) -> None:
    level_task = run_level_task.with_options(**ctx.config.task_options())
    for name in levels:
        result = level_task(tables, name, run_id, level_slot(ctx.settings, name),
                            ctx.slot_timeout)
        results.append(attrs.asdict(result))


def _run_submitted(ctx: Context, master: str, levels: Sequence[str],
                   results: list[dict[str, Any]]) -> None:
    timeout = ctx.config.timeout_seconds
    level_task = submit_level_task.with_options(
        retries=ctx.config.retries, retry_delay_seconds=ctx.config.retry_delay_seconds,
        timeout_seconds=timeout + 60)
    dag = ctx.settings.dag
    for name in levels:
        chain = [lv.name for lv in dag.up_to(name)]
        command = submit_command(ctx.settings, master, timeframe=name,
                                 config_path=ctx.config_path)
        results.append(level_task(command, name, level_slots(ctx.settings, chain),
                                  float(timeout), ctx.slot_timeout))


def run_levels(ctx: Context, kind: str, levels: Sequence[str], *,
               title: str) -> list[dict[str, Any]]:
    """Run `levels` in order, one task per level holding its slot, then check and report."""
    logger = get_run_logger()
    run_id = new_run_id()
    results: list[dict[str, Any]] = []
    tables: Tables | None = None
    try:
        ensure_slots(level_slots(ctx.settings, levels))
        if ctx.config.submit_master:
            _run_submitted(ctx, ctx.config.submit_master, levels, results)
        else:
            tables = open_tables(ctx)
            _run_in_process(ctx, tables, levels, run_id, results)
    except BaseException as exc:
        publish(ctx, kind, title, run_id=run_id, results=results,
                error=f"{type(exc).__name__}: {exc}")
        raise
    statuses, notes = _statuses(tables, levels)
    lags = {name: s.lag_seconds for name, s in statuses.items()}
    checks = None
    written = [r["level"] for r in results if r.get("status") == "written"]
    if tables is not None and ctx.config.checks_after_run and written:
        since = _since(statuses, written, ctx.config.check_lookback_hours)
        checks = check_task.with_options(**ctx.config.task_options())(
            tables, written, since, ctx.settings.quality)
        if report.failed_checks(checks):
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
    return run_levels(ctx, "level-" + chain[-1], chain,
                      title=f"rollup {chain[-1]} · {ctx.settings.namespace}")


@flow(name="rollup-cascade")
def cascade_flow(warehouse: str | None = None, config: str | None = None,
                 catalog: str | None = None, namespace: str | None = None,
                 up_to: str | None = None) -> list[dict[str, Any]]:
    """Run every level (or those needed for `up_to`) in DAG order, one task per level."""
    ctx = open_context(warehouse, config, catalog, namespace)
    dag = ctx.settings.dag
    levels = [lv.name for lv in (dag.up_to(up_to) if up_to else dag.order())]
    return run_levels(ctx, "cascade", levels,
                      title=f"rollup cascade · {ctx.settings.namespace}")


@flow(name="rollup-quality")
def quality_flow(warehouse: str | None = None, config: str | None = None,
                 catalog: str | None = None, namespace: str | None = None,
                 timeframes: list[str] | None = None,
                 since: str | None = None) -> list[dict[str, Any]]:
    """Run the quality checks (all levels by default; freshness limits from `[quality]`) and
    report them with each level's lag."""
    ctx = open_context(warehouse, config, catalog, namespace)
    names = [ctx.settings.dag.level(t).name for t in timeframes] if timeframes else None
    start = parse_instant(since, "since") if since else None
    title = f"rollup quality · {ctx.settings.namespace}"
    tables = open_tables(ctx)
    checks = check_task.with_options(**ctx.config.task_options())(
        tables, names, start, ctx.settings.quality)
    statuses, notes = _statuses(tables, names or ctx.settings.dag.names())
    publish(ctx, "quality", title, checks=checks, extra=report.freshness_rows(statuses.values()),
            extra_title="Freshness", notes=notes)
    failed = report.failed_checks(checks)
    if failed and ctx.config.quality_strict:
        raise OrchestrationError(
            f"{len(failed)} quality checks failed (orchestration.quality_strict is on): "
            + ", ".join(report.check_name(c) for c in failed)
        )
    return checks


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
        tables, slots, when, dry_run, ctx.settings.maintenance, ctx.slot_timeout)
    publish(ctx, "retention", title, extra=results, extra_title="Removed")
    return results


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
    # Compaction takes longer than a level run: allow twelve task timeouts.
    options = {**ctx.config.task_options(), "timeout_seconds": 12 * ctx.config.timeout_seconds}
    results = maintenance_task.with_options(**options)(
        tables, slots, ctx.settings.maintenance, dry_run, ctx.slot_timeout)
    publish(ctx, "maintenance", title, extra=report.maintenance_rows(results),
            extra_title="Files per table")
    return results


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
