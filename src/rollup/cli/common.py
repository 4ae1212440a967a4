"""Helpers shared by the command modules: opening tables from global options, progress."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rollup.config import Settings
    from rollup.tables import Tables


def settings_from(args: argparse.Namespace) -> Settings:
    from rollup.config import load_settings

    return load_settings(args.config, warehouse=args.warehouse, catalog=args.catalog,
                         namespace=args.namespace)


def tables_from(args: argparse.Namespace, *, create: bool = True) -> Tables:
    """Start (or reuse) Spark and open the tables named by the global options."""
    from rollup.session import connect

    progress("starting Spark with Iceberg ...")
    return connect(settings=settings_from(args), create=create)


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
