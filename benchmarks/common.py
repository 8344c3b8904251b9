"""Shared helpers for the benchmarks: paths, measured subprocesses, JSON files.

Every analysis the benchmarks time runs in its own subprocess, measured the same
way for our ``cje analyze`` and for the reference library: wall time from
``time.perf_counter`` around the child, and peak resident memory from the child's
own ``rusage`` (``os.wait4``; ``ru_maxrss`` is in KiB on Linux and includes the
child's waited-for descendants), plus its CPU time (user + system), which is
recorded because the machine is shared and wall time moves with other load.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from cje.atomic import atomic_write_text

REPO = Path(__file__).resolve().parent.parent
BENCH_DIR = REPO / "benchmarks"
RESULTS_DIR = BENCH_DIR / "results"
TMP_DIR = RESULTS_DIR / "tmp"
ARENA_DIR = Path(os.environ.get("CJE_ARENA_SAMPLE", REPO.parent / "shared" / "data" / "arena_sample"))
OUR_PYTHON = Path(sys.executable)


@dataclass
class Measured:
    """Outcome of one measured child process.

    returncode: exit status; wall_seconds: elapsed wall-clock time;
    cpu_seconds: user + system CPU time of the child and its waited-for descendants
    (less sensitive than wall time to other load on a shared machine);
    peak_rss_mb: child's peak resident set size in MiB (``ru_maxrss`` / 1024);
    stdout/stderr: captured text (stderr truncated to its last 4000 characters).
    """

    returncode: int
    wall_seconds: float
    cpu_seconds: float
    peak_rss_mb: float
    stdout: str
    stderr: str


def run_measured(cmd: list[str], cwd: Path | None = None, env: dict | None = None,
                 timeout: float | None = None, nice: int = 0) -> Measured:
    """Run ``cmd`` to completion and measure it.

    Inputs: the argv list, an optional working directory, environment and timeout
    (seconds; on expiry the child is killed and returncode is -9), and a ``nice``
    increment applied in the child. Output: a ``Measured`` record. Output streams go
    to temporary files (not pipes) so a chatty child cannot block.
    """
    TMP_DIR.mkdir(parents=True, exist_ok=True)
    out_path = TMP_DIR / f".child-{os.getpid()}-{time.monotonic_ns()}.out"
    err_path = out_path.with_suffix(".err")
    preexec = (lambda: os.nice(nice)) if nice else None
    with open(out_path, "w+") as out, open(err_path, "w+") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=err,
                                preexec_fn=preexec)
        deadline = None if timeout is None else t0 + timeout
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if deadline is not None and time.perf_counter() > deadline:
                proc.kill()
                pid, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.02)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    out_path.unlink(missing_ok=True)
    err_path.unlink(missing_ok=True)
    return Measured(proc.returncode, wall, usage.ru_utime + usage.ru_stime,
                    usage.ru_maxrss / 1024.0, stdout, stderr[-4000:])


def file_digest(paths: list[Path]) -> str:
    """blake2b-128 hex digest of the bytes of ``paths`` (in the given order), with their names."""
    h = hashlib.blake2b(digest_size=16)
    for p in paths:
        h.update(Path(p).name.encode() + b"\0")
        with open(p, "rb") as fh:
            while chunk := fh.read(1 << 22):
                h.update(chunk)
    return h.hexdigest()


def write_json(path: Path, payload: dict) -> None:
    """Write ``payload`` as indented JSON atomically (the one atomic writer, cje.atomic)."""
    atomic_write_text(path, json.dumps(payload, indent=1, sort_keys=False) + "\n")


def read_json(path: Path) -> dict | None:
    """Return the parsed JSON object in ``path``, or None when it is missing or unreadable."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def log(msg: str) -> None:
    """Progress line on stderr (the table goes to stdout)."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)
