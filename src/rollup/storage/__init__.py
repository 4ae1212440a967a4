"""Iceberg tables: names and DDL, sinks, positions and snapshot metadata."""
