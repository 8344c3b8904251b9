"""Progress reporting for long stages: a tqdm bar on a terminal, log lines otherwise.

When stderr is not a TTY (Snakemake, SLURM, CI) a line ``stage: done/total (pct)
rate/s ETA`` is logged at every further ~10 % of the work and at least every 30 s.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any, TextIO

log = logging.getLogger("cje.progress")


class Progress:
    """Count finished items of a stage.

    Use as a context manager; ``update(n)`` after each finished item.

    Parameters
    ----------
    total : int
        Items.
    desc : str
        Stage name shown.
    stream : TextIO or None, default=None
        Default stderr; a TTY gets a tqdm bar.
    every_s : float, default=30.0
        Max seconds between log lines.
    every_frac : float, default=0.1
        Log at each further fraction of ``total``.
    initial : int, default=0
        Items already done.
    """

    def __init__(self, total: int, desc: str, stream: TextIO | None = None,
                 every_s: float = 30.0, every_frac: float = 0.1, initial: int = 0):
        self.total = int(total)
        self.desc = desc
        self.stream = stream or sys.stderr
        self.every_s = every_s
        self.step = max(1, int(round(self.total * every_frac)))
        self.done = int(initial)
        self._first = self.done
        self.t0 = time.monotonic()
        self._last_t = self.t0
        self._last_n = self.done
        self._bar: Any = None
        if _isatty(self.stream):
            from tqdm import tqdm
            self._bar = tqdm(total=self.total, initial=self.done, desc=desc, file=self.stream,
                             dynamic_ncols=True)
        elif self.total:
            log.info("%s: %d/%d already done, %d to go", desc, self.done, self.total,
                     self.total - self.done)

    def update(self, n: int = 1) -> None:
        """Record ``n`` more finished items.

        Parameters
        ----------
        n : int, default=1
            Items finished.
        """
        self.done += n
        if self._bar is not None:
            self._bar.update(n)
            return
        now = time.monotonic()
        if (self.done - self._last_n >= self.step or now - self._last_t >= self.every_s
                or self.done == self.total):
            self._last_n, self._last_t = self.done, now
            log.info("%s", self.line())

    def line(self) -> str:
        """``desc: done/total (pct%) rate/s ETA s``.

        Returns
        -------
        str
            The progress line.
        """
        elapsed = max(time.monotonic() - self.t0, 1e-9)
        rate = (self.done - self._initial_done()) / elapsed
        left = self.total - self.done
        eta = f"{left / rate:.0f} s" if rate > 0 else "?"
        pct = 100.0 * self.done / self.total if self.total else 100.0
        return f"{self.desc}: {self.done}/{self.total} ({pct:.0f}%) {rate:.2f}/s ETA {eta}"

    def _initial_done(self) -> int:
        return self._first

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._bar is not None:
            self._bar.close()


def _isatty(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False
