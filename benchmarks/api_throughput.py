"""API-client throughput: does ``cje.llm.client.http.LLMClient`` keep ``max_concurrency``
requests in flight?

The fault server (``tests/servers/fault_server.py``) runs in its own process in
fixed-latency mode (200 ms per answer, no faults). For each concurrency c in
(1, 8, 16, 32, 128) the client sends max(200, 20 c) chat requests with
``max_concurrency=c``: a whole number of 20+ waves, so the sustained rate is
measured, not the quantisation of a short burst (200 requests at c = 32 need 7
waves, 1.4 s instead of 200 * 0.2 / 32 = 1.25 s, which alone caps that ratio at
0.893). Reported per c: elapsed seconds, achieved req/s, ideal req/s = c / latency,
their ratio, and the "wave" ideal ceil(n / c) * latency with its ratio. Targets:
ratio >= 0.9 up to c = 32 (issue 7), and a separate burst of exactly 200 requests at
c = 16 taking < 1.5 x 200 * 0.2 / 16 s (issue 4).

``run(out_dir) -> dict`` (used by ``benchmarks/run.py``) writes
``out_dir/api_throughput.json``; ``python -m benchmarks.api_throughput`` prints the table.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SERVER = REPO / "tests" / "servers" / "fault_server.py"
LATENCY_S = 0.2
N_REQUESTS = 200  # the minimum per concurrency, and the issue-4 burst at c = 16
WAVES = 20
CONCURRENCIES = (1, 8, 16, 32, 128)


def n_requests(concurrency: int) -> int:
    """Requests sent at ``concurrency``: max(200, 20 waves)."""
    return max(N_REQUESTS, WAVES * concurrency)


def _start_server(latency_s: float) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, str(SERVER), "--latency", str(latency_s)],
                            stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline().strip()
    if not line.startswith("URL "):
        proc.kill()
        raise RuntimeError(f"fault server did not start (said {line!r})")
    return proc, line.split(" ", 1)[1]


async def _burst(url: str, concurrency: int, n: int) -> float:
    sys.path.insert(0, str(REPO))
    from cje.llm.client.http import LLMClient
    from cje.llm.config import ProviderConfig

    prov = ProviderConfig(name="bench", kind="openai", base_url=url,
                          max_concurrency=concurrency, timeout_s=30, max_retries=0)
    async with LLMClient(prov, url, stage="bench") as client:
        # one warm-up request per connection slot is not counted
        await asyncio.gather(*[client.chat([{"role": "user", "content": f"w{i}"}], model="m",
                                           prompt_id=f"w{i}", max_tokens=8)
                               for i in range(min(concurrency, 8))])
        t0 = time.perf_counter()
        results = await asyncio.gather(*[
            client.chat([{"role": "user", "content": f"c{concurrency}-{i}"}], model="m",
                        prompt_id=str(i), max_tokens=8) for i in range(n)])
        elapsed = time.perf_counter() - t0
    failed = sum(not r.ok for r in results)
    if failed:
        raise RuntimeError(f"{failed} of {n} benchmark requests failed")
    return elapsed


def run(out_dir: str | os.PathLike = REPO / "benchmarks" / "results") -> dict:
    """Run the benchmark, print the table, write ``out_dir/api_throughput.json``; return it."""
    proc, url = _start_server(LATENCY_S)
    rows = []
    try:
        for c in CONCURRENCIES:
            n = n_requests(c)
            elapsed = asyncio.run(_burst(url, c, n))
            ideal_rps = c / LATENCY_S
            achieved = n / elapsed
            rows.append({"concurrency": c, "requests": n, "elapsed_s": round(elapsed, 3),
                         "achieved_req_per_s": round(achieved, 2),
                         "ideal_req_per_s": round(ideal_rps, 2),
                         "ratio": round(achieved / ideal_rps, 3),
                         "wave_ideal_s": round(math.ceil(n / c) * LATENCY_S, 3),
                         "wave_ratio": round(math.ceil(n / c) * LATENCY_S / elapsed, 3),
                         "max_possible_ratio": round(n / c / math.ceil(n / c), 3)})
        c16_elapsed = asyncio.run(_burst(url, 16, N_REQUESTS))
    finally:
        proc.kill()
        proc.wait()
    c16 = {"elapsed_s": round(c16_elapsed, 3)}
    limit16 = 1.5 * N_REQUESTS * LATENCY_S / 16
    targets = {
        "ratio_ge_0.9_up_to_32": all(r["ratio"] >= 0.9 for r in rows if r["concurrency"] <= 32),
        "wave_ratio_ge_0.9_up_to_32": all(r["wave_ratio"] >= 0.9 for r in rows
                                          if r["concurrency"] <= 32),
        "c16_elapsed_s": c16["elapsed_s"], "c16_limit_s": limit16,
        "c16_under_1.5x_ideal": c16["elapsed_s"] < limit16}
    result = {"latency_s": LATENCY_S, "rows": rows, "targets": targets,
              "cpu_count": os.cpu_count(), "load_avg": list(os.getloadavg()),
              "when_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    print(f"{'conc':>5} {'elapsed s':>10} {'req/s':>8} {'ideal req/s':>12} {'ratio':>6} "
          f"{'max ratio':>9} {'wave ideal s':>13} {'wave ratio':>10}")
    for r in rows:
        print(f"{r['concurrency']:>5} {r['elapsed_s']:>10.2f} {r['achieved_req_per_s']:>8.1f} "
              f"{r['ideal_req_per_s']:>12.1f} {r['ratio']:>6.3f} {r['max_possible_ratio']:>9.3f} "
              f"{r['wave_ideal_s']:>13.2f} {r['wave_ratio']:>10.3f}")
    print(f"issue-4 burst: 200 requests at c=16 in {c16['elapsed_s']:.2f} s (limit {limit16:.2f} s)")
    print(f"targets: {targets}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "api_throughput.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    run()
