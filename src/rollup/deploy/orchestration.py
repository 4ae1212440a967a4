"""Orchestration as data: rollup's Prefect deployments, their schedules, tags and limits.

Nothing here imports Prefect. `rollup deployments` prints these specs; `rollup serve` and the
flows in `rollup.deploy.flows` turn them into Prefect deployments and tasks. The policy (retries,
timeouts, schedules, tags, submit master, ...) is `Settings.orchestration`, the
`[orchestration]` section of rollup.toml (`rollup.settings.config.OrchestrationConfig`,
docs/orchestration.md).

Rules: each level flow first brings its ancestors up to date (DAG order), so a level never
runs ahead of its parent; every level run holds that level's global concurrency slot (limit
1), so runs of the same level never overlap, whichever deployment started them; each
deployment allows one active run and cancels a new one while the previous still runs.
"""

from __future__ import annotations

import importlib
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any, Literal

import attrs

from rollup.errors import OrchestrationError
from rollup.settings.config import Collision, OrchestrationConfig, Settings, check_master
from rollup.timeframes import Dag, Timeframe

FLOW_PREFIX = "rollup"
CASCADE, QUALITY, RETENTION = "cascade", "quality", "retention"
MAINTENANCE = "maintenance"
Kind = Literal["level", "cascade", "quality", "retention", "maintenance"]

DEFAULT_SCHEDULES: Mapping[str, str] = {
    CASCADE: "",  # on demand: the level deployments keep the tables fresh
    QUALITY: "25 * * * *",  # hourly, after the 1h level (minute 15)
    RETENTION: "30 1 * * *",  # daily, after the 1d level (00:05)
    MAINTENANCE: "30 2 * * *",  # daily, after retention: compaction and cleanup
}


def level_slot(settings: Settings, level: str) -> str:
    """Name of the global concurrency limit (limit 1) held while `level` runs (the level as
    its identifier: `1d@America/New_York` -> `1d_america_new_york`)."""
    name = Timeframe.parse(level).identifier
    return f"{FLOW_PREFIX}-{settings.catalog}-{settings.namespace}-{name}".lower()


def level_slots(settings: Settings, levels: Sequence[str] | None = None) -> list[str]:
    names = settings.dag.names() if levels is None else list(levels)
    return [level_slot(settings, name) for name in names]


@attrs.frozen
class DeploymentSpec:
    """One Prefect deployment: which flow, when, with which tags and limits.

    Args:
        flow_name: the Prefect flow name (`rollup-5m`, `rollup-cascade`, ...).
        name: the deployment name (default: the namespace).
        kind: `level`, `cascade`, `quality`, `retention` or `maintenance`.
        timeframe: the level of a `level` deployment.
        cron: five-field UTC cron, or None for a deployment run on demand.
        tags, description: shown in the Prefect UI.
        levels: the levels its runs write, in build order (each holds that level's slot).
        concurrency_limit: active runs allowed for this deployment (1: never overlapping).
        collision: what Prefect does with a new run while the limit is taken.
    """

    flow_name: str
    name: str
    kind: Kind
    timeframe: str | None
    cron: str | None
    tags: tuple[str, ...]
    description: str
    levels: tuple[str, ...] = ()
    concurrency_limit: int = 1
    collision: Collision = "CANCEL_NEW"

    @property
    def full_name(self) -> str:
        """`<flow name>/<deployment name>`, as `prefect deployment run` takes it."""
        return f"{self.flow_name}/{self.name}"

    def describe(self) -> str:
        return f"{self.full_name:40} {self.cron or '(on demand)'}"


def _cron_of(config: OrchestrationConfig, key: str, default: str | None) -> str | None:
    cron = config.schedules.get(key, default or "")
    return cron or None


def deployment_specs(
    settings: Settings, config: OrchestrationConfig | None = None
) -> list[DeploymentSpec]:
    """The deployments of `settings`: one per level (DAG order), cascade, quality, retention,
    maintenance; `config` defaults to `settings.orchestration`."""
    config = config or settings.orchestration
    dag: Dag = settings.dag
    name = config.deployment_name or settings.namespace
    common = ("rollup", f"namespace:{settings.namespace}", *config.tags)
    mode = f"submit to {config.submit_master}" if config.submit_master else "in-process Spark"
    specs = []
    for level in dag.order():
        chain = tuple(lv.name for lv in dag.up_to(level.name))
        cron = _cron_of(config, level.name, level.schedule)
        before = f", after {', '.join(chain[:-1])}" if len(chain) > 1 else ""
        specs.append(DeploymentSpec(
            flow_name=f"{FLOW_PREFIX}-{level.timeframe.identifier}", name=name, kind="level",
            timeframe=level.name, cron=cron, tags=(*common, f"level:{level.name}"),
            description=(f"Bring {level.name} bars ({level.table}, from {level.parent_name}) up "
                         f"to date{before}; {level.write_mode} writes; {mode}."),
            levels=chain, collision=config.collision,
        ))
    every = tuple(dag.names())
    specs.append(DeploymentSpec(
        flow_name=f"{FLOW_PREFIX}-{CASCADE}", name=name, kind="cascade", timeframe=None,
        cron=_cron_of(config, CASCADE, DEFAULT_SCHEDULES[CASCADE]), tags=(*common, CASCADE),
        description=f"Run every level in DAG order ({' -> '.join(every)}); {mode}.",
        levels=every, collision=config.collision,
    ))
    specs.append(DeploymentSpec(
        flow_name=f"{FLOW_PREFIX}-{QUALITY}", name=name, kind="quality", timeframe=None,
        cron=_cron_of(config, QUALITY, DEFAULT_SCHEDULES[QUALITY]), tags=(*common, QUALITY),
        description="Check the bar invariants, cross-level reconciliation and freshness.",
        collision=config.collision,
    ))
    specs.append(DeploymentSpec(
        flow_name=f"{FLOW_PREFIX}-{RETENTION}", name=name, kind="retention", timeframe=None,
        cron=_cron_of(config, RETENTION, DEFAULT_SCHEDULES[RETENTION]),
        tags=(*common, RETENTION),
        description="Delete expired partitions per level retention, expire old snapshots.",
        levels=every, collision=config.collision,
    ))
    specs.append(DeploymentSpec(
        flow_name=f"{FLOW_PREFIX}-{MAINTENANCE}", name=name, kind="maintenance", timeframe=None,
        cron=_cron_of(config, MAINTENANCE, DEFAULT_SCHEDULES[MAINTENANCE]),
        tags=(*common, MAINTENANCE),
        description=("Compact data and delete files, rewrite manifests, expire snapshots and "
                     "remove orphan files of the trades and every bar table."),
        levels=every, collision=config.collision,
    ))
    return specs


def flow_parameters(settings: Settings, config_path: str | None = None) -> dict[str, Any]:
    """Parameters every deployment passes to its flow so runs open the same tables."""
    params: dict[str, Any] = {"catalog": settings.catalog, "namespace": settings.namespace}
    if settings.warehouse is not None:
        params["warehouse"] = str(settings.warehouse)
    if config_path is not None:
        params["config"] = str(Path(config_path).absolute())
    return params


def rollup_command() -> list[str]:
    """The argv prefix that runs the `rollup` CLI of this interpreter."""
    return [sys.executable, "-m", "rollup.cli"]


def submit_command(
    settings: Settings,
    master: str,
    *,
    timeframe: str | None = None,
    config_path: str | None = None,
) -> list[str]:
    """The `rollup submit --master URL run [--timeframe TF] --json` command of a submit run.

    `timeframe` None runs every level; otherwise the levels needed for it (its ancestors
    first), matching the in-process rule. Arguments are a list: no shell is involved.
    """
    cmd = [*rollup_command(), "--catalog", settings.catalog, "--namespace", settings.namespace]
    if settings.warehouse is not None:
        cmd += ["--warehouse", str(settings.warehouse)]
    if config_path is not None:
        cmd += ["--config", str(config_path)]
    cmd += ["submit", "--master", check_master(master), "run"]
    if timeframe is not None:
        cmd += ["--timeframe", settings.dag.level(timeframe).name]
    return [*cmd, "--json"]


def artifact_key(kind: str, settings: Settings) -> str:
    """Prefect artifact key (lower-case letters, digits, dashes) of a flow's run report."""
    raw = f"{FLOW_PREFIX}-{kind}-{settings.namespace}"
    return re.sub(r"[^a-z0-9-]+", "-", raw.lower()).strip("-")


def load_flows() -> ModuleType:
    """The module `rollup.deploy.flows` (Prefect flows and deployments).

    Raises:
        OrchestrationError: Prefect is not installed.
    """
    try:
        return importlib.import_module("rollup.deploy.flows")
    except ModuleNotFoundError as exc:
        if exc.name is None or not exc.name.startswith("prefect"):
            raise
        raise OrchestrationError(
            f"rollup's flows need Prefect ({exc.name} is missing): pip install 'rollup[prefect]'"
        ) from None
