"""Benchmarks, run as modules (``python -m bench.ingest``); not part of the installed package."""
