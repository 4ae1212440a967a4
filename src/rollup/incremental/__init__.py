"""The incremental runner: change detection, level plans and their execution."""
