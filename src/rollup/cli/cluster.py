"""Cluster command: `rollup submit --master URL COMMAND [ARGS]` runs a command via spark-submit."""

from __future__ import annotations

import argparse
from typing import Any

from rollup.cli.common import progress, settings_from
from rollup.errors import ConfigError


def register(sub: Any) -> None:
    p = sub.add_parser(
        "submit",
        help="run a rollup command on a Spark cluster through spark-submit",
        description="Run COMMAND (init, run, backfill, check, retention, ...) on a Spark "
        "cluster: spark-submit with the Iceberg jars and the catalog configuration. The global "
        "options (--warehouse, --catalog, --namespace, --config) are forwarded to the job.",
    )
    p.add_argument("--master", help="cluster URL, e.g. spark://host:7077 (default: "
                   "$ROLLUP_SPARK_MASTER, else master in rollup.toml)")
    p.add_argument("--conf", action="append", default=[], metavar="KEY=VALUE",
                   help="extra Spark conf (repeatable)")
    p.add_argument("--jars", help="extra jars, comma-separated (added to the Iceberg runtime)")
    p.add_argument("--packages", help="extra Maven coordinates, comma-separated")
    p.add_argument("--driver-memory", help="e.g. 2g")
    p.add_argument("--executor-memory", help="e.g. 4g")
    p.add_argument("--executor-cores", type=int)
    p.add_argument("--total-executor-cores", type=int)
    p.add_argument("--python", help="Python interpreter with rollup installed on the executors "
                   "(spark.pyspark.python)")
    p.add_argument("--trades-per-run", type=int, metavar="N",
                   help="size shuffle partitions and files for N trades per run "
                   "(needs --total-executor-cores; see docs/deploy.md)")
    p.add_argument("--spark-submit", help="spark-submit executable (default: "
                   "$SPARK_HOME/bin/spark-submit, else the one pyspark ships)")
    p.add_argument("--print-command", action="store_true",
                   help="print the equivalent spark-submit command (secrets masked) and exit")
    p.add_argument("job", nargs=argparse.REMAINDER, metavar="COMMAND [ARGS]",
                   help="the rollup command to run, with its arguments")
    p.set_defaults(handler=cmd_submit)


def cmd_submit(args: argparse.Namespace) -> int:
    from rollup.cli import build_parser
    from rollup.deploy.submit import build_submission, parse_conf
    from rollup.spark.sizing import suggest_spark_conf

    settings = settings_from(args)
    job = list(args.job)
    if job and job[0] == "--":
        job = job[1:]
    if job and job[0] != "submit":
        build_parser().parse_args(job)  # fail fast (exit 2) on a bad command line
    sizing = None
    if args.trades_per_run is not None:
        if args.total_executor_cores is None:
            raise ConfigError("--trades-per-run needs --total-executor-cores: the cluster's "
                              "executor cores to size for")
        sizing = suggest_spark_conf(args.trades_per_run, args.total_executor_cores)
    master = args.master or settings.master or ""
    submission = build_submission(
        settings, master, job,
        config_file=args.config,
        conf=parse_conf(args.conf),
        jars=[j.strip() for j in (args.jars or "").split(",") if j.strip()],
        packages=[p.strip() for p in (args.packages or "").split(",") if p.strip()],
        python=args.python,
        sizing=sizing,
        driver_memory=args.driver_memory,
        executor_memory=args.executor_memory,
        executor_cores=args.executor_cores,
        total_executor_cores=args.total_executor_cores,
        spark_submit=args.spark_submit,
        verbose=args.verbose,
    )
    if args.print_command:
        print(submission.command_line())
        return 0
    progress(f"submitting `rollup {' '.join(job)}` to {submission.master} ...")
    code = submission.run()
    if code != 0:
        progress(f"rollup: error: spark-submit exited with code {code}")
    return code
