"""Plan builders that return DataFrames: bars, validation, external sources."""
