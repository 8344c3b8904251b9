"""Run ``cje <argv>`` exactly like ``python -m cje <argv>``, and time the part after start-up.

Used by ``ours_runner`` as the child process: it imports the CLI and builds its
parser for the requested command once (the imports that ``cje <command>`` pays), then times
``cje.cli.main(argv)``, and writes {"analysis_seconds": s, "startup_seconds": s}
to the file named by the environment variable ``CJE_BENCH_TIMING`` (when set).
The exit code is the CLI's. The wall time measured around this child by the
parent is the same as for ``python -m cje``; the extra split lets the table show
how much of it is start-up.
"""

from __future__ import annotations

import json
import os
import sys
import time


def _peak_rss_mb() -> float | None:
    """This program's own peak RSS (VmHWM, MiB). The parent's wait4 ru_maxrss survives exec, so it
    reports the benchmark driver's size whenever that is larger than the child."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def main() -> int:
    """Entry point: argv after the script name is passed to ``cje.cli.main``."""
    t0 = time.perf_counter()
    from cje import cli

    cli.build_parser(sys.argv[1:])  # the imports the real CLI pays for this command (its owner module)
    t1 = time.perf_counter()
    code = cli.main(sys.argv[1:])
    t2 = time.perf_counter()
    path = os.environ.get("CJE_BENCH_TIMING")
    if path:
        with open(path, "w") as fh:
            json.dump({"startup_seconds": t1 - t0, "analysis_seconds": t2 - t1, "peak_rss_mb": _peak_rss_mb()}, fh)
    return code


if __name__ == "__main__":
    sys.exit(main())
