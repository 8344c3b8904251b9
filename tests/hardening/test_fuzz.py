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
import tempfile
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


# --- the publication folder (issue 19.1) ---------------------------------------------------------
N_PUBLICATION_CASES = int(os.environ.get("CJE_FUZZ_PUBLICATION_CASES", "150"))


def _outside(work: Path, out: Path) -> dict[str, object]:
    """Every path under ``work`` but the output folder: link target, file bytes or 'dir'."""
    found: dict[str, object] = {}
    for path in sorted(work.rglob("*")):
        if path == out or out in path.parents:
            continue
        found[str(path)] = ("link:" + os.readlink(path) if path.is_symlink() else
                            path.read_bytes() if path.is_file() else "dir")
    return found


def _signature(out: Path) -> tuple[str, int]:
    """(estimator, rows) of the set readers see, after checking that its members agree."""
    import csv

    from cje.results.files import current_set

    import cje

    members = current_set(out)
    assert all(p is None or p.parent == out for p in members.values()), f"a staged member is read: {members}"
    result = cje.load_result(out)
    meta = result.payload["metadata"]
    with open(members["estimates.csv"], newline="") as fh:
        assert [r["policy"] for r in csv.DictReader(fh)] == meta["target_policies"]
    assert result.analysis.plot_data is not None and result.analysis.plot_data.judge_scores.size == meta["n_samples"]
    return meta["estimator"], meta["n_samples"]


def _run_quiet(argv: list[str]) -> tuple[int, str]:
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = main(argv)
    return code, stderr.getvalue()


def test_fuzz_publication_folder_no_traceback_no_stale_set_nothing_outside(tmp_path):
    """Seeded damaged output folders (:mod:`fuzz_publication`), then ``cje analyze --estimator direct``.

    Every case: no traceback (from the run or from a reader before it), nothing outside the
    output folder changed; exit 0 with the new set as every reader sees it (never the published
    or a planted older set), or exit 2 with one line naming the output folder, after which
    deleting what was planted lets the next run publish. Bounded: ~25 s for 150 cases.
    """
    logging.getLogger().setLevel(logging.WARNING)
    if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK):  # memory: the fsyncs of 200 publications are free
        tmp_path = Path(tempfile.mkdtemp(prefix="cje-fuzz-publication-", dir="/dev/shm"))
    try:
        _fuzz_publication(tmp_path)
    finally:
        if str(tmp_path).startswith("/dev/shm/"):
            shutil.rmtree(tmp_path, ignore_errors=True)


def _fuzz_publication(tmp_path: Path) -> None:
    import jsonschema
    from fuzz_publication import generate as generate_folder
    from fuzz_publication import plant
    from hardlib import rows, write_fresh, write_jsonl

    import cje
    from cje.errors import CJEError

    base = tmp_path / "base"
    base.mkdir()
    data = write_jsonl(base / "logged.jsonl", rows())
    fresh = write_fresh(base / "fresh")
    published, planted_set = base / "published", base / "planted"
    assert _run_quiet(["analyze", "--data", str(data), "--estimator", "raw-ips", "--output-dir", str(published)])[0] == 0
    assert _run_quiet(["analyze", "--data", str(write_jsonl(base / "other.jsonl", rows(60, seed=3))), "--estimator",
                       "calibrated-ips", "--output-dir", str(planted_set)])[0] == 0
    marker = published / ".cje-set.json"
    seq = json.loads(marker.read_text())["seq"] if marker.exists() else 0
    new = ("direct", 40)
    rng = np.random.default_rng(SEED + 19)
    outcomes: collections.Counter = collections.Counter()
    problems: list[str] = []
    for index in range(N_PUBLICATION_CASES):
        case = generate_folder(rng)
        work = tmp_path / f"pub{index}"
        work.mkdir()
        (work / "precious.txt").write_text("keep me\n")
        (work / "preciousdir").mkdir()
        (work / "preciousdir" / "notes.txt").write_text("keep me too\n")
        out = work / "out"
        shutil.copytree(published, out, symlinks=True)
        planted = plant(case, out, work, planted_set, seq)
        outside = _outside(work, out)
        argv = ["analyze", "--data", str(data), "--fresh-draws-dir", str(fresh), "--estimator", "direct",
                "--output-dir", str(out), *(["--plots"] if case.plots else [])]
        where = f"case {index} {case.describe()}"
        code, found = -1, []
        try:
            try:  # a reader on the damaged folder: an error of its own kind, never a traceback
                cje.load_result(out)
            except (CJEError, FileNotFoundError, jsonschema.ValidationError):
                pass
            code, err = _run_quiet(argv)
            if code == 2:
                lines = [ln for ln in err.splitlines() if ln.strip()]
                if len(lines) != 1 or not lines[0].startswith(f"cje analyze: error: output folder {out}: "):
                    found.append(f"exit 2 without one line naming the folder: {err!r}")
                for path in planted:  # the user deletes what the message names
                    if os.path.lexists(path):
                        shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
                code_after, err_after = _run_quiet(argv)
                if code_after != 0:
                    found.append(f"wedged: exit {code_after} after the fix: {err_after!r}")
            elif code != 0:
                found.append(f"exit {code}: {err!r}")
            if not found:
                seen = _signature(out)
                if seen != new:
                    found.append(f"exit {code} (then fixed) but readers see {seen}, not {new}")
        except BaseException:  # noqa: BLE001 - a traceback is exactly what the test hunts
            found.append(f"traceback\n{traceback.format_exc()}")
        if _outside(work, out) != outside:
            found.append("something outside the output folder changed")
        problems.extend(f"{where}: {f}" for f in found)
        outcomes[code] += 1
        shutil.rmtree(work, ignore_errors=True)
    print(f"publication fuzz: {N_PUBLICATION_CASES} cases, seed {SEED + 19}, first exit codes "
          f"{dict(sorted(outcomes.items()))}")
    assert not problems, f"{len(problems)} problems, first 5:\n" + "\n".join(problems[:5])
    assert outcomes[0] >= N_PUBLICATION_CASES // 5 and outcomes[2] >= N_PUBLICATION_CASES // 5, outcomes
