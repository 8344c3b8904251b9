"""The full-scale benchmark's arithmetic on hand-made request logs (seconds, no server)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from benchmarks import fullscale_metrics as fm

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests" / "servers"))
import provider_sim  # noqa: E402


def rec(t, key, status=200, kind="generate", model="m", tokens=10, done=None):
    return {"t": t, "done": t + 0.5 if done is None else done, "key": key, "status": status,
            "kind": kind, "model": model, "tokens": tokens}


def test_stage_table_counts_exactly_once_and_utilisation():
    # 60 rpm = 1 request/s; 10 generate requests over 10 s, one of them answered twice,
    # one 429 and one reset before the answer
    log = [rec(float(i), f"g{i}") for i in range(10)]
    log += [rec(9.5, "g3"), rec(2.2, "g4", status=429), rec(2.3, "g5", status=0)]
    log += [rec(4.0, "j0", kind="chat", model="sim-judge"), rec(5.0, "o0", kind="chat",
                                                                 model="sim-oracle")]
    log += [rec(6.0, "l0", kind="echo")]
    t = fm.stage_table(log, rpm=60, tpm=None)
    g = t["generate"]
    assert (g["sent"], g["answered"], g["distinct"], g["answered_twice"]) == (13, 11, 10, 1)
    assert g["extra_attempts"] == {"429": 1, "reset": 1}
    assert set(t) == {"generate", "judge", "oracle", "logprobs", "all"}
    # admitted requests of every stage in [0, 10]: 16 - 1 (the 429) = 15 over 10 s of 1/s
    assert g["utilisation"] == pytest.approx(15 / 10.0)
    assert t["all"]["ideal_alone_s"] == pytest.approx(15.0)


def test_peak_in_window_is_the_busiest_sliding_window():
    times = [0.0, 0.1, 0.2, 5.0, 5.05, 5.1, 5.2, 9.0]
    assert provider_sim.peak_in_window(times, [1.0] * len(times), 1.0) == 4
    assert provider_sim.peak_in_window(times, [1.0] * len(times), 10.0) == 8
    assert provider_sim.peak_in_window(times, [2.0] * len(times), 0.2) == 6  # 3 events x 2


def test_simulator_window_admits_the_limit_and_says_when_the_next_one_fits():
    w = provider_sim.Window(limit=3, window_s=10.0)
    for t in (0.0, 1.0, 2.0):
        assert w.wait_for(t, 1) == 0.0
        w.add(t, 1)
    assert w.wait_for(5.0, 1) == pytest.approx(5.0)  # the request of t=0 leaves at t=10
    assert w.wait_for(10.5, 1) == 0.0


def test_simulated_echo_spells_the_text_so_the_offsets_method_applies():
    text = ("<|start_header_id|>user<|end_header_id|>\n\nHi there<|eot_id|>"
            "<|start_header_id|>assistant<|end_header_id|>\n\nHello, world.<|eot_id|>")
    lp, n = provider_sim.echo_logprobs(text, 1)
    assert "".join(lp["tokens"][:-1]) == text and n == 1
    assert lp["text_offset"][-1] == len(text) and lp["token_logprobs"][0] is None
    start = text.index("Hello")
    assert start in lp["text_offset"]  # a token boundary where the response starts
