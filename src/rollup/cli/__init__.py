"""The `rollup` command line: global options here, each command group in its own module."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from rollup.errors import RollupError
from rollup.settings.secrets import install_log_redaction, redact, secret_env_values

# Command modules, each with `register(subparsers)`; a module whose optional dependency
# is not installed is skipped and its commands are simply absent.
COMMAND_MODULES = (
    "rollup.cli.core",
    "rollup.cli.quality",
    "rollup.cli.maintain",
    "rollup.cli.orchestrate",
    "rollup.cli.cluster",
    "rollup.cli.notebook",
    "rollup.cli.rejects",
    "rollup.cli.bench",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rollup",
        description="Exact cascading OHLCV bars on Spark and Iceberg.",
    )
    parser.add_argument("--warehouse", help="warehouse directory or URI "
                        "(default $ROLLUP_WAREHOUSE or ./warehouse)")
    parser.add_argument("--config", help="rollup.toml settings file (default ./rollup.toml)")
    parser.add_argument("--namespace", help="Iceberg namespace (default market_data)")
    parser.add_argument("--catalog", help="Spark catalog name (default rollup)")
    parser.add_argument("-v", "--verbose", action="store_true", help="show debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name:
                continue
            raise
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("py4j").setLevel(logging.WARNING)  # its DEBUG echoes every JVM call
    install_log_redaction()
    try:
        code = args.handler(args)
    except RollupError as exc:
        print(f"rollup: error: {redact(str(exc), secret_env_values())}", file=sys.stderr)
        return 2 if isinstance(exc, ValueError) else 1
    except KeyboardInterrupt:
        print("rollup: interrupted", file=sys.stderr)
        return 130
    return int(code or 0)


if __name__ == "__main__":
    sys.exit(main())
