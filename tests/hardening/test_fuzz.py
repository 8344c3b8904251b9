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
import pytest
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

    import cje
    from cje.results.files import current_set

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


# --- the workflow config (issue 19: aliases, types) ----------------------------------------------
N_CONFIG_CASES = int(os.environ.get("CJE_FUZZ_CONFIG_CASES", "400"))
CASE_SECONDS = 5.0  # generous: a refused bomb takes milliseconds, a valid config ~10 ms


class _NetworkReached(Exception):
    """``cje check-provider`` got past every config check to its first request (stubbed)."""


def _run_argv_list(argvs: list[list[str]]) -> list[tuple[object, str, str, float]]:
    """Each command in this process: (exit code, or 'network' / 'traceback: ...', stdout, stderr, seconds)."""
    import time

    results = []
    for argv in argvs:
        stdout, stderr = io.StringIO(), io.StringIO()
        t0 = time.monotonic()
        try:
            with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
                code: object = main(argv)
        except SystemExit as exc:
            code = f"SystemExit {exc.code}"
        except _NetworkReached:
            code = "network"
        except BaseException:  # noqa: BLE001 - a traceback is exactly what the test hunts
            code = "traceback: " + traceback.format_exc()[-1500:]
        results.append((code, stdout.getvalue(), stderr.getvalue(), time.monotonic() - t0))
    return results


def _run_in_child(argvs: list[list[str]], seconds: float) -> list[tuple[object, str, str, float]]:
    """:func:`_run_argv_list` in a forked child with 1 GiB more address space than now and an
    alarm: an alias bomb the loader let through is a failed case, not a test run out of memory."""
    import resource
    import signal

    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        try:
            os.close(read_fd)
            with open("/proc/self/status") as fh:
                vm = next(int(ln.split()[1]) * 1024 for ln in fh if ln.startswith("VmSize:"))
            limit = vm + 1024 ** 3
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
            signal.alarm(math.ceil(seconds) + 1)
            payload = json.dumps(_run_argv_list(argvs)).encode()
            with os.fdopen(write_fd, "wb") as fh:
                fh.write(payload)
        finally:
            os._exit(0)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as fh:
        payload = fh.read()
    _, status = os.waitpid(pid, 0)
    if not payload:
        return [(f"child died (status {status}: out of memory or time)", "", "", seconds)] * len(argvs)
    return [tuple(r) for r in json.loads(payload)]


def _check_one_line(result, command: str, cfg: Path, needles: list[str]) -> str | None:
    code, _, err, _ = result
    lines = [ln for ln in err.splitlines() if ln.strip()]
    if code != 2:
        return f"{command}: exit {str(code)[:1500]} instead of 2: {err[-300:]!r}"
    if len(lines) != 1 or not lines[0].startswith(f"cje {command}: error: ") or "Traceback" in err:
        return f"{command}: exit 2 without one error line: {err[-500:]!r}"
    missing = [n for n in [str(cfg), *needles] if n not in lines[0]]
    return f"{command}: the error does not name {missing}: {lines[0][:400]!r}" if missing else None


def _headline_problem(stdout: str) -> str | None:
    """An estimate printed with exit 0 must be finite and not negative."""
    import re

    found = re.search(r"^total: ([-\d,.a-z]+) calls, <= \$([-\d.a-z]+)", stdout, re.MULTILINE)
    if not found:
        return f"exit 0 without a total line: {stdout[-300:]!r}"
    calls, cost = float(found.group(1).replace(",", "")), float(found.group(2))
    if not (math.isfinite(calls) and math.isfinite(cost) and calls >= 0 and cost >= 0):
        return f"exit 0 with a nonsense total: {found.group(0)!r}"
    return None


def _printed(stdout: str) -> str:
    """What ``cje cost`` printed, without the ``wrote PATH`` line of ``--output``."""
    return "\n".join(ln for ln in stdout.splitlines() if not ln.startswith("wrote "))


def test_fuzz_config_no_traceback_no_silent_value_nothing_outside(tmp_path, monkeypatch):
    """Seeded mutations of the shipped configs (:mod:`fuzz_config`) through ``cje cost --estimate``
    and ``cje check-provider`` (its first request stubbed: only the config checks run).

    Every case: no traceback; ``ok`` cases answer as the unmutated config does; ``error`` and
    ``bomb`` cases exit 2 with one line naming the file and the key (bombs in a memory-limited
    child); ``any`` cases exit 0 or 2; an exit-0 estimate is finite and not negative; each case
    takes under 5 s; nothing is written but ``--output`` inside the case's output folder, and
    nothing of the repository changes. Bounded: ~400 cases in well under a minute.
    """
    import subprocess

    from fuzz_config import base_texts
    from fuzz_config import generate as generate_config
    from hardlib import REPO

    from cje.llm.stages import check_provider

    def network(*args, **kwargs):
        raise _NetworkReached

    monkeypatch.setattr(check_provider, "run_with_client", network)
    logging.getLogger().setLevel(logging.WARNING)
    work = tmp_path / "work"
    (work / "data").mkdir(parents=True)
    shutil.copy2(REPO / "data" / "default_prompts.jsonl", work / "data")
    shutil.copytree(REPO / "config" / "rubrics", work / "config" / "rubrics")
    monkeypatch.chdir(work)
    git_before = subprocess.run(["git", "status", "--porcelain"], check=True, cwd=REPO, capture_output=True, text=True).stdout
    texts = base_texts()
    cases_dir = tmp_path / "cases"
    cases_dir.mkdir()

    def argvs(cfg: Path, out: Path, with_output: bool) -> list[list[str]]:
        return [["cost", "--estimate", "--config", str(cfg), *(["--output", str(out / "cost.json")]
                                                              if with_output else [])],
                ["check-provider", "--config", str(cfg), "--api-log", str(out / "api.log"),
                 "--request-cache", str(out / "cache"), "--rate-limit-dir", str(out / "rate")]]

    baseline = {}
    for base, text in texts.items():
        cfg = cases_dir / "base.yaml"
        cfg.write_text(text)
        baseline[base] = [(r[0], _printed(r[1])) for r in _run_argv_list(argvs(cfg, tmp_path / "unused", False))]
        assert baseline[base][0][0] in (0, 2) and baseline[base][1][0] in (0, 2, "network"), (base, baseline[base])
    assert baseline["config/config.yaml"][0][0] == 0 and baseline["config/arena.yaml"][0][0] == 0, baseline

    rng = np.random.default_rng(SEED + 190)
    outcomes: collections.Counter = collections.Counter()
    problems: list[str] = []
    slowest = 0.0
    for index in range(N_CONFIG_CASES):
        case = generate_config(rng, texts)
        cfg = cases_dir / f"case{index}.yaml"
        cfg.write_bytes(case.data)
        out = tmp_path / "out"
        out.mkdir()
        with_output = index % 3 == 0
        outside = _outside(tmp_path, out)
        run = _run_in_child if case.expect == "bomb" else _run_argv_list
        results = run(argvs(cfg, out, with_output), CASE_SECONDS) if case.expect == "bomb" else \
            run(argvs(cfg, out, with_output))
        (cost_code, cost_out, _, cost_s), (check_code, _, _, check_s) = results
        found: list[str] = []
        for (code, _, _, _), command in zip(results, ("cost", "check-provider")):
            if isinstance(code, str) and code != "network":
                found.append(f"{command}: {code}")
        slowest = max(slowest, cost_s, check_s)
        if cost_s > CASE_SECONDS or check_s > CASE_SECONDS:
            found.append(f"took {cost_s:.1f} s / {check_s:.1f} s")
        if case.expect == "ok":
            if (cost_code, _printed(cost_out)) != baseline[case.base][0]:
                found.append(f"cost: a valid rewrite answers {cost_code} {cost_out[-200:]!r}, not as the base")
            if check_code != baseline[case.base][1][0]:
                found.append(f"check-provider: a valid rewrite gives {check_code}, not as the base")
        elif case.expect in ("error", "bomb"):
            for result, command in zip(results, ("cost", "check-provider")):
                if isinstance(result[0], str) and result[0] != "network":
                    continue  # a traceback, reported above
                problem = _check_one_line(result, command, cfg, case.needles)
                if problem:
                    found.append(problem)
        else:
            if cost_code == 2:
                problem = _check_one_line(results[0], "cost", cfg, [])
                found += [problem] if problem else []
            if check_code == 2:
                problem = _check_one_line(results[1], "check-provider", cfg, [])
                found += [problem] if problem else []
            if cost_code not in (0, 2) or check_code not in (0, 2, "network"):
                found.append(f"exit codes {cost_code} / {check_code}")
        written = sorted(p.name for p in out.iterdir())
        if cost_code == 0:
            problem = _headline_problem(cost_out)
            found += [problem] if problem else []
            if with_output:
                totals = json.loads((out / "cost.json").read_text()) if (out / "cost.json").is_file() else None
                if totals is None or not all(math.isfinite(totals[k]) for k in ("total_cost_usd", "total_calls")):
                    found.append(f"--output missing or not finite: {totals}")
        if written not in ([], ["cost.json"]) or written and cost_code != 0:
            found.append(f"wrote {written} in the output folder (exit {cost_code})")
        if _outside(tmp_path, out) != outside or (work / "PWNED").exists():
            found.append("something outside the output folder changed")
        problems.extend(f"case {index} {case.base} [{case.expect}] {case.mutation}: {f}" for f in found)
        outcomes[(case.expect, cost_code)] += 1
        shutil.rmtree(out)
        cfg.unlink()
    git_after = subprocess.run(["git", "status", "--porcelain"], check=True, cwd=REPO, capture_output=True, text=True).stdout
    print(f"config fuzz: {N_CONFIG_CASES} cases, seed {SEED + 190}, slowest command {slowest:.2f} s, "
          f"(expectation, cost exit) {dict(sorted(outcomes.items(), key=str))}")
    assert git_after == git_before, "the repository changed"
    assert not problems, f"{len(problems)} problems, first 8:\n" + "\n".join(problems[:8])
    # every kind of expectation is exercised, or the test checks nothing
    kinds = collections.Counter(expect for expect, _ in outcomes.elements())
    assert all(kinds[k] >= N_CONFIG_CASES // 40 for k in ("ok", "error", "bomb", "any")), kinds


@pytest.mark.slow
def test_fuzz_config_sample_through_snakemake_dry_run(tmp_path):
    """Five generated configs (one of each kind: a valid rewrite, a wrong type, a typo, a duplicate
    key, an alias bomb of lists) through ``snakemake -n --configfile``, concurrently: the workflow
    reads configs with the same loader and schema, so it answers as ``cje cost`` does (exit 0, or 2
    with the key named, no traceback), in bounded memory. ~30 s on 2 busy cores, hence slow."""
    import subprocess
    import sys
    import time

    from fuzz_config import base_texts
    from fuzz_config import generate as generate_config
    from hardlib import REPO, SNAKEMAKE
    from test_yaml_aliases import _limit_memory

    work = tmp_path / "wf"
    for item in ("rules", "scripts", "schemas", "config", "envs", "report", "profiles", "cje"):
        shutil.copytree(REPO / item, work / item, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy2(REPO / "Snakefile", work / "Snakefile")
    (work / "data").mkdir()
    shutil.copy2(REPO / "data" / "default_prompts.jsonl", work / "data")
    texts = {"config/config.yaml": base_texts()["config/config.yaml"]}
    rng = np.random.default_rng(SEED + 191)
    # a bomb of lists: one of nested mappings given with --configfile is expanded by Snakemake's own
    # config merge before the workflow runs (rules/config.smk, check_config_files): out of its reach
    wanted = {"ok": "anchored", "error": "= nan", "typo": "new key", "dup": "duplicate key",
              "bomb": "(lists) in extra_body"}
    picked: dict[str, object] = {}
    for _ in range(5000):
        case = generate_config(rng, texts)
        for name, needle in wanted.items():
            if name not in picked and needle in case.mutation and (case.expect == name or name in ("typo", "dup")):
                picked[name] = case
        if len(picked) == len(wanted):
            break
    assert len(picked) == len(wanted), sorted(picked)
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    procs = {}
    t0 = time.monotonic()
    for name, case in picked.items():
        (work / f"{name}.yaml").write_bytes(case.data)
        procs[name] = subprocess.Popen([SNAKEMAKE, "-n", "--cores", "1", "--configfile", f"{name}.yaml"], cwd=work,
                                       env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                       preexec_fn=_limit_memory)  # noqa: PLW1509 - no threads yet
    problems = []
    for name, proc in procs.items():
        _, err = proc.communicate(timeout=240)
        case = picked[name]
        if "Traceback" in err:
            problems.append(f"{name} ({case.mutation}): traceback {err[-1500:]}")
        elif proc.returncode != (0 if case.expect == "ok" else 2):
            problems.append(f"{name} ({case.mutation}): exit {proc.returncode}: {err[-800:]}")
        elif case.expect != "ok":
            lines = [ln for ln in err.splitlines() if ln.startswith("invalid workflow config")]
            if len(lines) != 1 or not all(n in lines[0] for n in case.needles):
                problems.append(f"{name} ({case.mutation}): not one line naming {case.needles}: {err[-800:]}")
    print(f"snakemake -n on {len(procs)} generated configs: {time.monotonic() - t0:.1f} s")
    assert not problems, "\n".join(problems)
