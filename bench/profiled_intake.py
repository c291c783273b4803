"""Run the intake service under cProfile: ``python -m bench.profiled_intake OUT [intake args]``.

uvicorn re-raises SIGTERM after its graceful shutdown, which would kill the process
before ``python -m cProfile`` writes its stats; here SIGTERM's original handler
raises SystemExit instead, so the stats are dumped to OUT on a normal stop.
"""

from __future__ import annotations

import cProfile
import signal
import sys


def main() -> None:
    out, argv = sys.argv[1], sys.argv[2:]
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
    from services.intake.__main__ import main as intake_main

    profiler = cProfile.Profile()
    profiler.enable()
    try:
        intake_main(argv)
    except SystemExit:
        pass
    finally:
        profiler.disable()
        profiler.dump_stats(out)


if __name__ == "__main__":
    main()
