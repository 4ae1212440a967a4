"""Run rollup commands on a Spark cluster through spark-submit.

`build_submission` turns settings and a rollup command line into a `Submission`: the
spark-submit command with the Iceberg runtime jars, the catalog conf and the job script.
`Submission.run` starts it; secrets never appear on the command line (they go to a private
properties file) nor in `Submission.command_line`, the printable equivalent.

The job script runs `rollup.cli.job.job_main` inside spark-submit; this module only names it
in `JOB_SCRIPT` and never imports the CLI.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import attrs

from rollup.errors import ConfigError, EngineError
from rollup.settings.config import Settings
from rollup.settings.secrets import is_secret_key, redact, redacted_repr
from rollup.spark.catalog_conf import catalog_packages, catalog_spark_conf, check_rest_client
from rollup.spark.jars import atomic_write, cache_dir_default, spark_jar_conf

DEFAULT_APP_NAME = "rollup"
JOB_SCRIPT = '''\
"""rollup job for spark-submit: `<global options> COMMAND [ARGS]`, as for the rollup CLI."""

import sys

from rollup.cli.job import job_main

if __name__ == "__main__":
    sys.exit(job_main(sys.argv[1:]))
'''
_MEMORY = re.compile(r"[1-9][0-9]*[kmgtKMGT]?")
_CONF_LINE = re.compile(r"\s*([^\s=:]+)\s*[\s=:]\s*(.*?)\s*")


# ------------------------------------------------------------------ the command line


def spark_submit_path(explicit: str | os.PathLike[str] | None = None) -> Path:
    """The spark-submit to use: ``explicit``, ``$SPARK_HOME/bin/spark-submit``, or pyspark's.

    Raises:
        EngineError: the chosen file does not exist.
    """
    if explicit is not None:
        path = Path(explicit).expanduser()
    elif os.environ.get("SPARK_HOME"):
        path = Path(os.environ["SPARK_HOME"]) / "bin" / "spark-submit"
    else:
        import pyspark

        path = Path(pyspark.__file__).parent / "bin" / "spark-submit"
    if not path.is_file():
        raise EngineError(f"spark-submit not found at {path}: install pyspark 3.5 or set "
                          "SPARK_HOME to a Spark 3.5 installation")
    return path


def launcher(cache_dir: Path | None = None) -> Path:
    """The job script `rollup submit` runs (same as ``jobs/rollup_job.py``), in the jar cache."""
    path = (cache_dir or cache_dir_default()) / "jobs" / "rollup_job.py"
    if not path.is_file() or path.read_text() != JOB_SCRIPT:
        with atomic_write(path) as handle:
            handle.write(JOB_SCRIPT.encode())
    return path


def _conf_dir(spark_submit: Path) -> Path:
    if os.environ.get("SPARK_CONF_DIR"):
        return Path(os.environ["SPARK_CONF_DIR"])
    return spark_submit.resolve().parent.parent / "conf"


def read_properties(path: Path) -> dict[str, str]:
    """``key value`` / ``key=value`` lines of a spark-defaults.conf ({} if there is none)."""
    if not path.is_file():
        return {}
    props = {}
    for line in path.read_text().splitlines():
        if not line.strip() or line.lstrip().startswith(("#", "!")):
            continue
        match = _CONF_LINE.fullmatch(line)
        if match:
            props[match[1]] = match[2]
    return props


def _properties_text(props: Mapping[str, str]) -> str:
    def escape(text: str) -> str:
        return (text.replace("\\", "\\\\").replace("\n", "\\n").replace("=", "\\=")
                .replace(":", "\\:"))

    return "".join(f"{escape(k)}={escape(v)}\n" for k, v in props.items())


@attrs.frozen
class Submission:
    """One spark-submit invocation (client deploy mode) of a rollup job."""

    master: str
    app: str
    app_args: tuple[str, ...]
    conf: Mapping[str, str] = attrs.field(factory=dict, repr=redacted_repr)
    jars: tuple[str, ...] = ()
    packages: tuple[str, ...] = ()
    name: str = DEFAULT_APP_NAME
    driver_memory: str | None = None
    executor_memory: str | None = None
    executor_cores: int | None = None
    total_executor_cores: int | None = None
    spark_submit: str = "spark-submit"

    @property
    def secrets(self) -> dict[str, str]:
        """The conf entries holding secrets (passed through a private properties file)."""
        return {k: v for k, v in self.conf.items() if is_secret_key(k)}

    def argv(self, properties_file: str | None = None, *, redacted: bool = False) -> list[str]:
        """The command as a list; secret conf is left out when ``properties_file`` holds it."""
        cmd = [self.spark_submit, "--master", self.master, "--name", self.name]
        if self.jars:
            cmd += ["--jars", ",".join(self.jars)]
        if self.packages:
            cmd += ["--packages", ",".join(self.packages)]
        for flag, value in (("--driver-memory", self.driver_memory),
                            ("--executor-memory", self.executor_memory),
                            ("--executor-cores", self.executor_cores),
                            ("--total-executor-cores", self.total_executor_cores)):
            if value is not None:
                cmd += [flag, str(value)]
        if properties_file is not None:
            cmd += ["--properties-file", properties_file]
        shown = redact(self.conf) if redacted else dict(self.conf)
        for key, value in shown.items():
            if properties_file is not None and is_secret_key(key):
                continue
            cmd += ["--conf", f"{key}={value}"]
        return [*cmd, self.app, *self.app_args]

    def command_line(self) -> str:
        """The equivalent plain spark-submit command, safe to print (secrets are ``***``)."""
        return shlex.join(self.argv(redacted=True))

    def run(self, *, env: Mapping[str, str] | None = None) -> int:
        """Run spark-submit and wait; returns its exit code (the job's, for a Python job).

        Secret conf goes to a properties file readable only by this user, merged with the
        spark-defaults.conf that spark-submit would otherwise read.
        """
        environ = dict(os.environ if env is None else env)
        secrets = self.secrets
        with tempfile.TemporaryDirectory(prefix="rollup-submit-") as tmp:
            properties = None
            if secrets:
                path = Path(tmp) / "spark-submit.properties"
                defaults = read_properties(_conf_dir(Path(self.spark_submit)) /
                                           "spark-defaults.conf")
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "w") as handle:
                    handle.write(_properties_text({**defaults, **secrets}))
                properties = str(path)
            try:
                done = subprocess.run(self.argv(properties), env=environ, check=False)
            except OSError as exc:
                raise EngineError(f"cannot run {self.spark_submit}: {exc.strerror or exc}") from exc
        return done.returncode


def _check_memory(value: str | None, flag: str) -> str | None:
    if value is not None and not _MEMORY.fullmatch(value):
        raise ConfigError(f"invalid {flag} {value!r}: expected a size such as 512m or 2g")
    return value


def _check_cores(value: int | None, flag: str) -> int | None:
    if value is not None and (isinstance(value, bool) or value < 1):
        raise ConfigError(f"invalid {flag} {value!r}: expected a whole number >= 1")
    return value


def parse_conf(items: Sequence[str]) -> dict[str, str]:
    """``["k=v", ...]`` (as given to ``--conf``) as a dict.

    Raises:
        ConfigError: an item has no ``=`` or an empty key.
    """
    conf = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"invalid --conf {item.split('=')[0]!r}: expected KEY=VALUE")
        conf[key.strip()] = value
    return conf


def _split(text: str | None) -> list[str]:
    return [part.strip() for part in (text or "").split(",") if part.strip()]


def build_submission(
    settings: Settings,
    master: str,
    job: Sequence[str],
    *,
    config_file: str | None = None,
    conf: Mapping[str, str] | None = None,
    jars: Sequence[str] = (),
    packages: Sequence[str] = (),
    python: str | None = None,
    sizing: Mapping[str, str] | None = None,
    driver_memory: str | None = None,
    executor_memory: str | None = None,
    executor_cores: int | None = None,
    total_executor_cores: int | None = None,
    spark_submit: str | None = None,
    app: str | None = None,
    verbose: bool = False,
) -> Submission:
    """The spark-submit invocation that runs ``rollup <job>`` on ``master`` with ``settings``.

    Args:
        job: a rollup command and its arguments, e.g. ``["run", "--timeframe", "1h"]``.
        config_file: forwarded as ``--config`` (made absolute) so the job reads the same file.
        conf: extra Spark conf, applied last.
        jars, packages: added to the Iceberg runtime jars / Maven coordinates.
        python: interpreter on the executors (``spark.pyspark.python``).
        sizing: conf from `rollup.spark.sizing.suggest_spark_conf`, applied before ``conf``.
        app: the job script (default: `launcher()`).

    Raises:
        ConfigError: an empty master or job, ``submit`` as the job, or a bad size.
    """
    if not master or not master.strip():
        raise ConfigError("no Spark master: pass --master URL (e.g. spark://host:7077), "
                          "or set master in rollup.toml or ROLLUP_SPARK_MASTER")
    if not job:
        raise ConfigError("no command to submit: expected a rollup command such as run")
    if job[0] == "submit":
        raise ConfigError("cannot submit 'submit': expected a rollup command such as run")
    catalog_config = settings.iceberg
    full = catalog_spark_conf(settings.catalog, settings.warehouse, catalog_config)
    warehouse = full[f"spark.sql.catalog.{settings.catalog}.warehouse"]

    from rollup.spark.engine import _log4j2_options

    engine = settings.engine
    full.update(engine.spark_conf)
    full.setdefault("spark.driver.extraJavaOptions", _log4j2_options(engine.jars_dir))
    full["spark.pyspark.driver.python"] = sys.executable  # the driver runs here (client mode)
    if python:
        full["spark.pyspark.python"] = python
    full.update(sizing or {})
    full.update(conf or {})

    jar_conf = spark_jar_conf(cache_dir_default(engine.jars_dir), jars=engine.iceberg_jars,
                              packages=engine.iceberg_packages or "")
    all_jars = [*_split(full.pop("spark.jars", None) or jar_conf.get("spark.jars")), *jars]
    all_packages = [*_split(full.pop("spark.jars.packages", None)
                            or jar_conf.get("spark.jars.packages")), *packages]
    check_rest_client(catalog_config, all_jars, ",".join(all_packages))
    needs_bundle = catalog_packages(catalog_config)
    if needs_bundle and not any("iceberg-aws-bundle" in Path(j).name for j in all_jars):
        all_packages += [p for p in needs_bundle if p not in all_packages]

    job_args = ["--warehouse", warehouse, "--catalog", settings.catalog,
                "--namespace", settings.namespace]
    if config_file is not None:
        job_args += ["--config", str(Path(config_file).expanduser().absolute())]
    if verbose:
        job_args.append("--verbose")
    job_args += list(job)
    return Submission(
        master=master.strip(),
        app=app or str(launcher()),
        app_args=tuple(job_args),
        conf=full,
        jars=tuple(dict.fromkeys(all_jars)),
        packages=tuple(dict.fromkeys(all_packages)),
        driver_memory=_check_memory(driver_memory, "--driver-memory"),
        executor_memory=_check_memory(executor_memory, "--executor-memory"),
        executor_cores=_check_cores(executor_cores, "--executor-cores"),
        total_executor_cores=_check_cores(total_executor_cores, "--total-executor-cores"),
        spark_submit=str(spark_submit_path(spark_submit)),
    )


__all__ = [
    "Submission",
    "build_submission",
    "launcher",
    "parse_conf",
    "spark_submit_path",
]
