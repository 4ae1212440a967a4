"""The one entry point of every spark-submit job: a `rollup` command run as a Spark job.

The scripts in `jobs/` and the launcher that `rollup submit` writes
(`rollup.deploy.submit.JOB_SCRIPT`)
only call `job_main`. It lives in the CLI package because it runs CLI commands; the library
(`rollup.deploy.submit`) names it in the launcher text and never imports it.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

GLOBAL_OPTIONS = ("--warehouse", "--config", "--namespace", "--catalog")


def job_argv(argv: Sequence[str], command: str | None = None) -> list[str]:
    """The `rollup` argv for a job: ``command`` inserted after the global options.

    ``job_argv(["--timeframe", "5m", "--warehouse", "/w"], "run")`` gives
    ``["--warehouse", "/w", "run", "--timeframe", "5m"]``.
    """
    if command is None:
        return list(argv)
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    for option in GLOBAL_OPTIONS:
        parser.add_argument(option)
    parser.add_argument("-v", "--verbose", action="store_true")
    known, rest = parser.parse_known_args(list(argv))
    front: list[str] = []
    for option in GLOBAL_OPTIONS:
        value = getattr(known, option[2:])
        if value is not None:
            front += [option, value]
    if known.verbose:
        front.append("--verbose")
    return [*front, command, *rest]


def under_spark_submit() -> bool:
    """True inside a Python process that spark-submit started (its JVM is the gateway)."""
    return "PYSPARK_GATEWAY_PORT" in os.environ


def job_main(argv: Sequence[str] | None = None, command: str | None = None) -> int:
    """Run a rollup command as a Spark job; returns its exit code.

    Under spark-submit the session is built from spark-submit's conf (master, jars, catalog),
    logs at ``$ROLLUP_SPARK_LOG_LEVEL`` (default ERROR) and is stopped at the end; run with
    plain ``python`` the job starts a local session, as the CLI does. ``command`` (e.g.
    ``"run"``) is inserted after the global options.
    """
    from rollup.cli import main

    args = job_argv(list(sys.argv[1:] if argv is None else argv), command)
    if not under_spark_submit():
        return main(args)
    from pyspark.sql import SparkSession

    from rollup.settings.config import engine_from_environment

    spark = SparkSession.builder.getOrCreate()
    spark.sparkContext.setLogLevel(engine_from_environment().log_level)
    try:
        return main(args)
    finally:
        logging.getLogger("py4j").setLevel(logging.WARNING)  # no INFO lines on shutdown
        spark.stop()


__all__ = ["job_argv", "job_main", "under_spark_submit"]
