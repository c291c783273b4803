"""Benchmarks (run as modules, e.g. ``python -m bench.ingest``); not part of the installed package."""
