"""Benchmarks behind `rollup bench`."""
