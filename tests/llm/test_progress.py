"""Progress: log lines when stderr is not a terminal, a tqdm bar when it is."""

from __future__ import annotations

import io
import logging

from cje.llm.stages.progress import Progress


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_log_lines_every_tenth_when_not_a_tty(caplog):
    caplog.set_level(logging.INFO, logger="cje.progress")
    with Progress(100, "generate base", stream=io.StringIO(), every_s=3600) as bar:
        for _ in range(100):
            bar.update(1)
    lines = [r.getMessage() for r in caplog.records if "generate base: " in r.getMessage()
             and "/100 (" in r.getMessage()]
    assert len(lines) == 10
    assert lines[0].startswith("generate base: 10/100 (10%)")
    assert lines[-1].startswith("generate base: 100/100 (100%)")


def test_resumed_work_counts_from_the_cached_rows(caplog):
    caplog.set_level(logging.INFO, logger="cje.progress")
    with Progress(10, "judge", stream=io.StringIO(), initial=7) as bar:
        bar.update(3)
    msgs = [r.getMessage() for r in caplog.records]
    assert "judge: 7/10 already done, 3 to go" in msgs
    assert any(m.startswith("judge: 10/10 (100%)") for m in msgs)


def test_tqdm_bar_on_a_tty():
    stream = _Tty()
    with Progress(5, "oracle", stream=stream) as bar:
        for _ in range(5):
            bar.update(1)
    out = stream.getvalue()
    assert "oracle" in out and "5/5" in out
