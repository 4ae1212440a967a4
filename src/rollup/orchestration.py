"""Orchestration as data: rollup's Prefect deployments, their schedules, tags and limits.

Nothing here imports Prefect. `rollup deployments` prints these specs; `rollup serve` and the
flows in `flows/` turn them into Prefect deployments and tasks.

Policy, configurable in the `[orchestration]` section of rollup.toml::

    [orchestration]
    retries = 2                 # per level task
    retry_delay_seconds = 60
    timeout_seconds = 300       # per task attempt
    slot_timeout_seconds = 0    # wait for a busy level at most this long (0: no limit)
    deployment_name = "market_data"   # default: the namespace
    tags = ["prod"]
    submit_master = "spark://spark-master:7077"  # run through `rollup submit` (default: in-process)
    checks_after_run = true     # level/cascade runs also check the levels they wrote
    check_lookback_hours = 24   # ... for windows this close to the level's newest bar
    quality_strict = false      # the quality flow fails when a check fails

    [orchestration.schedules]   # five-field UTC cron; "" means no schedule (run on demand)
    1m = "*/5 * * * *"
    cascade = "0 * * * *"

Rules: each level flow first brings its ancestors up to date (DAG order), so a level never
runs ahead of its parent; every level run holds that level's global concurrency slot (limit
1), so runs of the same level never overlap, whichever deployment started them; each
deployment allows one active run and cancels a new one while the previous still runs.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import attrs

from rollup.config import Settings
from rollup.errors import ConfigError
from rollup.timeframes import Dag

FLOW_PREFIX = "rollup"
CASCADE, QUALITY, RETENTION = "cascade", "quality", "retention"
MAINTENANCE = "maintenance"
Kind = Literal["level", "cascade", "quality", "retention", "maintenance"]
Collision = Literal["CANCEL_NEW", "ENQUEUE"]

DEFAULT_SCHEDULES: Mapping[str, str] = {
    CASCADE: "",  # on demand: the level deployments keep the tables fresh
    QUALITY: "25 * * * *",  # hourly, after the 1h level (minute 15)
    RETENTION: "30 1 * * *",  # daily, after the 1d level (00:05)
    MAINTENANCE: "30 2 * * *",  # daily, after retention: compaction and cleanup
}

_CRON_FIELD = re.compile(r"^[0-9*/,\-]+$")
_MASTER = re.compile(r"^(?:(?:spark|k8s|mesos)://[A-Za-z0-9._:,\-\[\]/]+|yarn|local(?:\[[0-9*]+\])?)$")
_TAG = re.compile(r"^[A-Za-z0-9_.:\-]{1,64}$")
_DEPLOYMENT_NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")
ENV_SUBMIT_MASTER = "ROLLUP_SUBMIT_MASTER"
ENV_FLOWS_DIR = "ROLLUP_FLOWS_DIR"


def check_cron(value: str, what: str) -> str:
    """Return `value` if it is a five-field cron string (or "" for none), else raise."""
    if not isinstance(value, str):
        raise ConfigError(f"invalid schedule {value!r} for {what}: expected a cron string")
    if value.strip() == "":
        return ""
    fields = value.split()
    if len(fields) != 5 or not all(_CRON_FIELD.match(f) for f in fields):
        raise ConfigError(
            f"invalid schedule {value!r} for {what}: expected five cron fields like '*/5 * * * *'"
        )
    return " ".join(fields)


def check_master(value: str) -> str:
    """Return `value` if it is a Spark master URL (spark://host:port, yarn, k8s://...)."""
    if not isinstance(value, str) or not _MASTER.match(value):
        raise ConfigError(
            f"invalid Spark master {value!r}: expected spark://host:port, yarn, k8s://URL "
            "or local[N]"
        )
    return value


def _int(data: Mapping[str, Any], key: str, default: int, minimum: int) -> int:
    value = data.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(
            f"invalid orchestration.{key} {value!r}: expected a whole number >= {minimum}"
        )
    return value


def _bool(data: Mapping[str, Any], key: str, default: bool) -> bool:
    value = data.get(key, default)
    if not isinstance(value, bool):
        raise ConfigError(f"invalid orchestration.{key} {value!r}: expected true or false")
    return value


@attrs.frozen
class OrchestrationConfig:
    """Task policy and deployment options (see the module docstring for the TOML keys)."""

    retries: int = 2
    retry_delay_seconds: int = 60
    timeout_seconds: int = 300
    slot_timeout_seconds: int = 0
    deployment_name: str | None = None
    tags: tuple[str, ...] = ()
    schedules: Mapping[str, str] = attrs.field(factory=dict)
    submit_master: str | None = None
    checks_after_run: bool = True
    check_lookback_hours: int = 24
    quality_strict: bool = False
    collision: Collision = "CANCEL_NEW"

    KEYS = ("retries", "retry_delay_seconds", "timeout_seconds", "slot_timeout_seconds",
            "deployment_name", "tags", "schedules", "submit_master", "checks_after_run",
            "check_lookback_hours", "quality_strict", "collision")

    @classmethod
    def from_settings(cls, settings: Settings) -> OrchestrationConfig:
        """Read `[orchestration]` from the settings; `$ROLLUP_SUBMIT_MASTER` overrides."""
        data = settings.extra.get("orchestration") or {}
        if not isinstance(data, Mapping):
            raise ConfigError(f"invalid [orchestration] section {data!r}: expected a table")
        unknown = sorted(set(data) - set(cls.KEYS))
        if unknown:
            raise ConfigError(
                f"unknown orchestration setting {unknown[0]!r}: expected one of "
                f"{', '.join(cls.KEYS)}"
            )
        schedules = data.get("schedules") or {}
        if not isinstance(schedules, Mapping):
            raise ConfigError(
                f"invalid orchestration.schedules {schedules!r}: expected a table of cron strings"
            )
        known = set(settings.dag.names()) | set(DEFAULT_SCHEDULES)
        checked: dict[str, str] = {}
        for key, cron in schedules.items():
            if str(key) not in known:
                raise ConfigError(
                    f"unknown schedule {key!r} in orchestration.schedules: expected one of "
                    f"{', '.join(sorted(known))}"
                )
            checked[str(key)] = check_cron(cron, str(key))
        tags = data.get("tags", [])
        if not isinstance(tags, list) or not all(isinstance(t, str) and _TAG.match(t)
                                                 for t in tags):
            raise ConfigError(
                f"invalid orchestration.tags {tags!r}: expected a list of short names "
                "(letters, digits, _ . : -)"
            )
        name = data.get("deployment_name")
        if name is not None and (not isinstance(name, str) or not _DEPLOYMENT_NAME.match(name)):
            raise ConfigError(
                f"invalid orchestration.deployment_name {name!r}: expected letters, digits, "
                "_ . - (at most 64)"
            )
        master = os.environ.get(ENV_SUBMIT_MASTER) or data.get("submit_master") or None
        collision = data.get("collision", "CANCEL_NEW")
        if collision not in ("CANCEL_NEW", "ENQUEUE"):
            raise ConfigError(
                f"invalid orchestration.collision {collision!r}: expected CANCEL_NEW or ENQUEUE"
            )
        return cls(
            retries=_int(data, "retries", 2, 0),
            retry_delay_seconds=_int(data, "retry_delay_seconds", 60, 0),
            timeout_seconds=_int(data, "timeout_seconds", 300, 1),
            slot_timeout_seconds=_int(data, "slot_timeout_seconds", 0, 0),
            deployment_name=name,
            tags=tuple(tags),
            schedules=checked,
            submit_master=check_master(master) if master else None,
            checks_after_run=_bool(data, "checks_after_run", True),
            check_lookback_hours=_int(data, "check_lookback_hours", 24, 0),
            quality_strict=_bool(data, "quality_strict", False),
            collision=collision,
        )

    def task_options(self) -> dict[str, Any]:
        """Prefect task options for one level run (retries, delay, timeout)."""
        return {"retries": self.retries, "retry_delay_seconds": self.retry_delay_seconds,
                "timeout_seconds": self.timeout_seconds}


def level_slot(settings: Settings, level: str) -> str:
    """Name of the global concurrency limit (limit 1) held while `level` runs."""
    return f"{FLOW_PREFIX}-{settings.catalog}-{settings.namespace}-{level}".lower()


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
    maintenance."""
    config = config or OrchestrationConfig.from_settings(settings)
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
            flow_name=f"{FLOW_PREFIX}-{level.name}", name=name, kind="level",
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


def find_flows_dir() -> Path:
    """The `flows/` directory: `$ROLLUP_FLOWS_DIR`, the source checkout's, or ./flows."""
    env = os.environ.get(ENV_FLOWS_DIR)
    candidates = [Path(env)] if env else [
        Path(__file__).resolve().parents[2] / "flows",
        Path.cwd() / "flows",
    ]
    for path in candidates:
        if (path / "rollup_flows.py").is_file():
            return path.resolve()
    raise ConfigError(
        f"rollup's flows directory was not found at {', '.join(str(p) for p in candidates)}: "
        f"run from a rollup checkout or set {ENV_FLOWS_DIR} to its flows/ directory"
    )


def load_flows() -> Any:
    """Import `flows/rollup_flows.py` (needs Prefect); its directory joins sys.path so the
    flow-run subprocesses Prefect spawns can import it too."""
    import importlib

    where = str(find_flows_dir())
    if where not in sys.path:
        sys.path.append(where)
    return importlib.import_module("rollup_flows")
