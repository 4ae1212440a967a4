"""Helpers shared by the command modules: opening tables from global options, progress."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rollup.settings.config import Settings
    from rollup.storage.tables import Tables


def settings_from(args: argparse.Namespace,
                  overrides: Mapping[str, Any] | None = None) -> Settings:
    """The settings of the global options and of a command's own flags.

    Args:
        overrides: the command's flags, shaped like rollup.toml (e.g. ``{"quality":
            {"max_age": args.max_age}}``); None values are flags not given.
    """
    from rollup.settings.config import load_settings

    return load_settings(args.config, warehouse=args.warehouse, catalog=args.catalog,
                         namespace=args.namespace, overrides=overrides)


def tables_from(args: argparse.Namespace, *, create: bool = True,
                settings: Settings | None = None) -> Tables:
    """Start (or reuse) Spark and open the tables named by `settings` (default: the global
    options)."""
    from rollup.storage.session import connect

    progress("starting Spark with Iceberg ...")
    return connect(settings=settings or settings_from(args), create=create)


def maintenance_flags(args: argparse.Namespace) -> dict[str, Any]:
    """`--snapshot-age`, `--retain-last`, `--orphan-age` as `[maintenance]` overrides."""
    return {"maintenance": {"snapshot_age_days": args.snapshot_age,
                            "retain_last": args.retain_last,
                            "orphan_age_days": args.orphan_age}}


def progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
