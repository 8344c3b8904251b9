"""Fuzz ``cje analyze`` in-process with 2,000 seeded malformed inputs and options (issue 14.7).

For every generated case (:mod:`fuzz_inputs`), ``cje.cli.main(argv)`` must either

* exit 0 and publish a complete set whose every estimate, SE and CI is finite, or
* exit 3 (only with ``--refuse-unreliable``) with nulls only for unreliable policies, or
* exit 2 with exactly one stderr line ``cje analyze: error: ...`` and write nothing;

never raise (a traceback), never exit 0 with a null estimate. The seed is fixed, so
CI runs the same 2,000 cases every time; ``CJE_FUZZ_CASES`` / ``CJE_FUZZ_SEED`` widen
a local run.
"""

from __future__ import annotations

import collections
import contextlib
import io
import json
import logging
import math
import os
import shutil
import traceback
from pathlib import Path

import numpy as np
from fuzz_inputs import generate

from cje.cli import main

N_CASES = int(os.environ.get("CJE_FUZZ_CASES", "2000"))
SEED = int(os.environ.get("CJE_FUZZ_SEED", "14"))


def _problem(code: int | None, err: str, out: Path, refuse: bool) -> str | None:
    """What is wrong with one outcome, or None."""
    written = sorted(p.name for p in out.iterdir()) if out.exists() else []
    if code == 2:
        lines = [ln for ln in err.splitlines() if ln.strip()]
        if len(lines) != 1 or not lines[0].startswith("cje analyze: error: "):
            return f"exit 2 without exactly one error line: {err!r}"
        return f"exit 2 but wrote {written}" if written else None
    if code not in (0, 3):
        return f"exit code {code}: {err!r}"
    if code == 3 and not refuse:
        return "exit 3 without --refuse-unreliable"
    if "estimates.json" not in written or "estimates.csv" not in written:
        return f"exit {code} but the set is incomplete: {written}"
    meta = json.loads((out / "estimates.json").read_text())["metadata"]
    for policy in meta["target_policies"]:
        block = meta["policies"][policy]
        values = [block[k] for k in ("estimate", "se", "ci_lower", "ci_upper")]
        if all(v is not None and math.isfinite(v) for v in values):
            continue
        if code == 3 and block["estimate"] is None and not block["reliable"]:
            continue
        return f"exit {code} with a null/non-finite value for {policy}: {values}"
    return None


def test_fuzz_2000_inputs_no_traceback_no_silent_null(tmp_path):
    rng = np.random.default_rng(SEED)
    outcomes: collections.Counter = collections.Counter()
    problems: list[str] = []
    logging.getLogger().setLevel(logging.WARNING)
    for index in range(N_CASES):
        case = generate(rng)
        work = tmp_path / f"case{index}"
        work.mkdir()
        data = work / "logged.jsonl"
        data.write_bytes(case.logged)
        argv = ["analyze", "--data", str(data), "--estimator", case.estimator,
                "--output-dir", str(work / "out"), *case.options]
        if case.fresh is not None:
            (work / "fresh").mkdir()
            for policy, content in case.fresh.items():
                (work / "fresh" / f"{policy}_responses.jsonl").write_bytes(content)
            argv += ["--fresh-draws-dir", str(work / "fresh")]
        stdout, stderr = io.StringIO(), io.StringIO()
        try:
            with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
                code = main(argv)
        except SystemExit as exc:  # argparse: not expected, every generated value parses
            code = exc.code if isinstance(exc.code, int) else -1
        except BaseException:  # noqa: BLE001 - a traceback is exactly what the test hunts
            problems.append(f"case {index} {case.mutations} {case.options}: traceback\n{traceback.format_exc()}")
            shutil.rmtree(work)
            continue
        problem = _problem(code, stderr.getvalue(), work / "out", "--refuse-unreliable" in case.options)
        if code == 2 and os.environ.get("CJE_FUZZ_VERBOSE"):
            print(stderr.getvalue().split(": error: ", 1)[-1][:150].strip())
        if problem:
            problems.append(f"case {index} {case.estimator} {case.mutations} {case.options}: {problem}")
        outcomes[code] += 1
        shutil.rmtree(work)
    print(f"fuzz: {N_CASES} cases, seed {SEED}, exit codes {dict(sorted(outcomes.items()))}")
    assert not problems, f"{len(problems)} problems, first 5:\n" + "\n".join(problems[:5])
    # the generator must exercise both outcomes, or the test checks nothing
    assert outcomes[0] >= N_CASES // 10 and outcomes[2] >= N_CASES // 3, outcomes
