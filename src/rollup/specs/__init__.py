"""Pure specifications: bars, columns, identifiers, times, trade-id schemes (no Spark)."""
