"""Configuration: the typed settings, catalogs and secrets (no Spark, no side effects)."""
