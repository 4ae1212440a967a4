"""Ingest of trade files into the trades table, exactly once."""
