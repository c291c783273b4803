"""Fault injection for crash tests: die at a named instant, as ``kill -9`` would.

Set ``FPH_FAULT=<point>[:<n>]`` to make the process exit abruptly (``os._exit``,
no cleanup, no flush) the n-th time it reaches ``crash_point("<point>")``.
Unset (production), a crash point costs one dict lookup.
"""

from __future__ import annotations

import os
import sys

_counts: dict[str, int] = {}


def crash_point(name: str) -> None:
    spec = os.environ.get("FPH_FAULT")
    if not spec:
        return
    point, _, nth = spec.partition(":")
    if point != name:
        return
    _counts[name] = _counts.get(name, 0) + 1
    if _counts[name] >= int(nth or 1):
        sys.stderr.write(f"FPH_FAULT: crashing at {name} (occurrence {_counts[name]})\n")
        sys.stderr.flush()
        os._exit(137)


def raise_point(name: str, key: str) -> None:
    """Raise at ``name`` for ``key`` when ``FPH_FAULT_RAISE=<name>:<key>`` (a poison input)."""
    if os.environ.get("FPH_FAULT_RAISE") == f"{name}:{key}":
        raise RuntimeError(f"FPH_FAULT_RAISE: injected failure at {name} for {key}")
