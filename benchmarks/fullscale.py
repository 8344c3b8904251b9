"""The Arena experiment at full scale through Snakemake against the simulated provider (issue 13).

``run(n_prompts=10_000, ...)`` (the ``fullscale`` part of ``make bench``; docs/benchmarks.md):

1. **full**: a fresh working folder, ``n_prompts`` synthetic prompts, the config
   ``benchmarks/fullscale/arena10k.yaml`` (base + 4 targets, judge, 10 % oracle, fresh
   draws, 5 estimators x 3 coverages, 8 shards), the simulator
   (``tests/servers/provider_sim.py`` with ``benchmarks/fullscale/provider.json``) in
   its own process, and ``snakemake --cores 40 --resources api_sim=40`` end to end.
   Measured: wall time against the ideal the limits set (per API stage, the API span
   and the whole DAG), peak RSS per rule, requests per stage against the distinct
   requests (each answered exactly once), rows per file.
2. **kill**: a second fresh run, SIGKILL of the whole process group once the
   simulator has answered half of the full run's requests, then a rerun: requests
   answered before the kill and sent again (target 0), rows lost or duplicated
   (target 0: the files equal the full run's, byte for byte).
3. **add**: 1,000 prompts added to the full run's prompt set, rerun: requests sent
   (target: only the new prompts' requests; none answered before is sent again).

The table goes to stdout; ``out_dir/fullscale.json`` holds every number (``n_prompts``,
each stage's ratio, re-sent counts, machine load). ``--quick``: 2,000 prompts.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import yaml

from .common import REPO, RESULTS_DIR, TMP_DIR, log, write_json
from . import fullscale_metrics as fm

sys.path.insert(0, str(REPO / "tests" / "servers"))
import provider_sim  # noqa: E402

CONFIG = REPO / "benchmarks" / "fullscale" / "arena10k.yaml"
SETTINGS = REPO / "benchmarks" / "fullscale" / "provider.json"
SIM = REPO / "tests" / "servers" / "provider_sim.py"
FAKE_KEY = "sk-sim-benchmark-0123456789abcdef"
TOPICS = ("python", "history", "cooking", "physics", "travel", "music", "law", "health",
          "finance", "poetry", "chess", "gardening")


def write_prompts(path: Path, n: int) -> None:
    """``n`` synthetic arena-style prompts, ``sim_00000`` .. (deterministic, varied length)."""
    with open(path, "w") as fh:
        for i in range(n):
            topic = TOPICS[i % len(TOPICS)]
            extra = " Please explain step by step." * (i % 4)
            fh.write(json.dumps({"prompt_id": f"sim_{i:05d}",
                                 "prompt": f"Question {i} about {topic}: what should I know "
                                           f"about {topic} number {i * 7919 % 1000}?{extra}"}) + "\n")


def experiment_config(workdir: Path, url: str, policies: list[str] | None = None,
                      shards: int | None = None, estimators: list[str] | None = None,
                      coverages: list[float] | None = None, rpm: float | None = None,
                      tpm: float | None = None, window_s: float | None = None) -> dict:
    """The experiment config with the run-time fields filled in (and a reduced size)."""
    cfg = yaml.safe_load(CONFIG.read_text())
    cfg["prompts"]["source"] = str(workdir / "prompts.jsonl")
    sim = cfg["providers"]["sim"]
    sim["base_url"] = url
    for key, value in (("requests_per_minute", rpm), ("tokens_per_minute", tpm),
                       ("rate_limit_window_s", window_s)):
        if value is not None:
            sim[key] = value
    for role in ("judge", "oracle"):
        cfg[role]["rubric_file"] = str(REPO / cfg[role]["rubric_file"])
    if policies is not None:
        cfg["policies"] = {p: cfg["policies"][p] for p in policies}
    if shards is not None:
        cfg["execution"]["shards"] = shards
    if estimators is not None:
        cfg["analysis"]["estimators"] = estimators
    if coverages is not None:
        cfg["analysis"]["oracle_coverages"] = coverages
    return cfg


class Simulator:
    """The simulated provider in its own process (context manager); ``url``, ``log``."""

    def __init__(self, settings: dict, log_path: Path, port: int = 0):
        self.settings, self.log, self.port = settings, log_path, port

    def __enter__(self) -> "Simulator":
        path = self.log.with_suffix(".settings.json")
        path.write_text(json.dumps(self.settings))
        self.proc = subprocess.Popen([sys.executable, str(SIM), "--settings", str(path),
                                      "--log", str(self.log), "--port", str(self.port)],
                                     stdout=subprocess.PIPE, text=True, preexec_fn=_priority)
        self.url = self.proc.stdout.readline().split()[1]
        self.port = int(self.url.rsplit(":", 1)[1].split("/")[0])
        return self

    def __exit__(self, *exc) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)


def _priority() -> None:
    try:  # a provider is not slowed down by its clients' machine
        os.nice(-5)
    except OSError:
        pass


class LoadSampler:
    """Samples the 1-minute load average every 10 s while a run goes on."""

    def __init__(self) -> None:
        self.samples: list[float] = []
        self._stop = threading.Event()

    def __enter__(self) -> "LoadSampler":
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(10.0):
            self.samples.append(os.getloadavg()[0])

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._t.join()

    def summary(self) -> dict:
        s = self.samples or [os.getloadavg()[0]]
        return {"mean": round(sum(s) / len(s), 2), "max": round(max(s), 2), "samples": len(s)}


def snakemake_cmd(workdir: Path, cores: int, extra: list[str] = ()) -> list[str]:
    """The Snakemake command of a run in ``workdir``."""
    return [str(Path(sys.executable).parent / "snakemake"), "--snakefile", str(REPO / "Snakefile"),
            "--directory", str(workdir), "--configfile", str(workdir / "config.yaml"),
            "--cores", str(cores), "--resources", f"api_sim={cores}", "--rerun-incomplete",
            "--show-failed-logs", "--nolock", *extra]


def run_snakemake(workdir: Path, cores: int, log_name: str, kill_when=None,
                  extra: list[str] = ()) -> dict:
    """Run Snakemake to completion (or SIGKILL its process group once ``kill_when()`` is
    true); return wall seconds, return code and whether it was killed."""
    env = {**os.environ, "CJE_SIM_API_KEY": FAKE_KEY,
           "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", "")}
    out = open(workdir / log_name, "w")
    t0 = time.time()
    proc = subprocess.Popen(snakemake_cmd(workdir, cores, extra), env=env, stdout=out,
                            stderr=subprocess.STDOUT, start_new_session=True)
    killed_at = None
    while proc.poll() is None:
        if kill_when is not None and killed_at is None and kill_when():
            killed_at = time.time()
            os.killpg(proc.pid, signal.SIGKILL)
        time.sleep(0.5)
    out.close()
    return {"wall_s": round(time.time() - t0, 2), "returncode": proc.returncode,
            "start": t0, "killed_at": killed_at}


def _dag_ideal(api_ideal_s: float, jobs: dict) -> float:
    """API ideal + the non-API stages on the critical path at their measured job times:
    prompts, dataset, the longest analysis job (the sweep cannot end sooner), summary."""
    return api_ideal_s + sum(jobs.get(r, {}).get("max_s", 0.0) for r in
                             ("prompts", "dataset", "analyze", "summary"))


def refresh(path: Path) -> dict:
    """Recompute the derived numbers (DAG ideal and ratio, targets) of a saved result
    from its raw measurements, and save it again; returns it."""
    res = json.loads(Path(path).read_text())
    full = res["full"]
    ideal = _dag_ideal(full["stages"]["all"]["ideal_alone_s"], full["jobs"])
    full["dag"].update(ideal_s=round(ideal, 2), ratio_to_ideal=round(ideal / full["dag"]["wall_s"], 4))
    res["targets"] = targets(res)
    write_json(Path(path), res)
    return res


def full_run(workdir: Path, n: int, cfg_kw: dict, settings: dict, cores: int) -> dict:
    """Part 1: a fresh end-to-end run; returns its measurements."""
    workdir.mkdir(parents=True, exist_ok=True)
    write_prompts(workdir / "prompts.jsonl", n)
    with Simulator(settings, workdir / "sim.jsonl") as sim, LoadSampler() as load:
        cfg = experiment_config(workdir, sim.url, **cfg_kw)
        (workdir / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
        run = run_snakemake(workdir, cores, "snakemake.log")
    records = provider_sim.read_log(workdir / "sim.jsonl")
    rpm, tpm = settings.get("rpm"), settings.get("tpm")
    stages = fm.stage_table(records, rpm, tpm)
    preflight = fm.preflight_requests(cfg)
    for stage, minimum in fm.expected_requests(workdir, cfg).items():
        if stage in stages:
            stages[stage]["minimum"] = minimum
            stages[stage]["preflight"] = preflight.get(stage, 0)
    jobs = fm.job_peaks(workdir)
    api_ideal = stages["all"]["ideal_alone_s"]
    dag_ideal = _dag_ideal(api_ideal, jobs)
    peaks = provider_sim.summarize_log(records, rpm, tpm, settings.get("window_s", 60.0))
    return {"run": run, "load_avg": load.summary(), "stages": stages, "jobs": jobs,
            "dag": {"wall_s": run["wall_s"], "ideal_s": round(dag_ideal, 2),
                    "ratio_to_ideal": round(dag_ideal / run["wall_s"], 4)},
            "peak": peaks, "rows": fm.row_check(workdir, n, list(cfg["policies"])),
            "digest": fm.output_digest(workdir)}


def kill_run(workdir: Path, n: int, cfg_kw: dict, settings: dict, cores: int,
             answered_total: int, reference_digest: dict) -> dict:
    """Part 2: SIGKILL at ~50 % of the answered requests, rerun, count re-sent requests."""
    workdir.mkdir(parents=True, exist_ok=True)
    write_prompts(workdir / "prompts.jsonl", n)
    log_path = workdir / "sim.jsonl"

    def half_done() -> bool:
        if not log_path.exists():
            return False
        with open(log_path, "rb") as fh:
            return sum(b'"status":200' in line for line in fh) >= answered_total // 2

    with Simulator(settings, log_path) as sim, LoadSampler() as load:
        cfg = experiment_config(workdir, sim.url, **cfg_kw)
        (workdir / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
        first = run_snakemake(workdir, cores, "snakemake.killed.log", kill_when=half_done)
        load_at_kill = os.getloadavg()[0]
        time.sleep(1.0)  # let the simulator log the answers in flight at the kill
        second = run_snakemake(workdir, cores, "snakemake.rerun.log")
    records = provider_sim.read_log(log_path)
    t_kill = first["killed_at"] or second["start"]
    # answered >= GRACE before the kill: the job had it (stored within milliseconds on an idle
    # machine); later answers were still on their way to the cache: in flight. GRACE is 1 s,
    # longer in proportion when the machine was overloaded at the kill (the job's write then
    # waits for a CPU: one answer 1-2 s old was re-sent at a load of 10 on 2 cores)
    grace = max(1.0, load_at_kill / (os.cpu_count() or 1))
    answered_before = {r["key"] for r in records if r["status"] == 200 and r["done"] < t_kill - grace}
    in_flight = {r["key"] for r in records if r["t"] < t_kill and r["done"] >= t_kill - grace}
    after = [r for r in records if r["t"] >= second["start"]]
    resent = sum(1 for r in after if r["key"] in answered_before)
    resent_in_flight = sum(1 for r in after if r["key"] in in_flight - answered_before)
    digest = fm.output_digest(workdir)
    differing = sorted(k for k in reference_digest if digest.get(k) != reference_digest[k])
    return {"killed": first, "rerun": second, "load_avg": load.summary(),
            "answered_before_kill": len(answered_before),
            "share_answered_at_kill": round(len(answered_before) / max(answered_total, 1), 3),
            "in_flight_at_kill": len(in_flight), "grace_s": round(grace, 2),
            "requests_after_kill": len(after), "resent_answered": resent,
            "resent_in_flight": resent_in_flight,
            "rows": fm.row_check(workdir, n, list(cfg["policies"])),
            "files_differing_from_full_run": differing}


def add_run(workdir: Path, n: int, n_add: int, cores: int, settings: dict) -> dict:
    """Part 3: ``n_add`` prompts added to the full run's prompt set, rerun."""
    old = provider_sim.read_log(workdir / "sim.jsonl")
    answered = {r["key"] for r in old if r["status"] == 200}
    write_prompts(workdir / "prompts.jsonl", n + n_add)
    cfg = yaml.safe_load((workdir / "config.yaml").read_text())
    port = int(cfg["providers"]["sim"]["base_url"].rsplit(":", 1)[1].split("/")[0])
    with Simulator(settings, workdir / "sim_add.jsonl", port=port), LoadSampler() as load:
        run = run_snakemake(workdir, cores, "snakemake.add.log")
    records = provider_sim.read_log(workdir / "sim_add.jsonl")
    return {"run": run, "load_avg": load.summary(), "n_added": n_add,
            "stages": fm.stage_table(records, settings.get("rpm"), settings.get("tpm")),
            "resent_answered": sum(1 for r in records if r["key"] in answered),
            "rows": fm.row_check(workdir, n + n_add, list(cfg["policies"]))}


SIZES = {"full": 10_000, "quick": 2_000}
SLURM_CI = REPO.parent / "shared" / "ci" / "slurm"


def _slurm_up() -> bool:
    try:
        out = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0 and any(t in out.stdout for t in ("idle", "mix", "alloc"))


def slurm_run(n: int = 2_000, rpm: float = 3_000, out_dir: Path = RESULTS_DIR,
              work_root: Path = TMP_DIR) -> dict:
    """Part 4: a reduced run (base + 1 target, 2 shards) through ``profiles/slurm-ci`` on the
    single-node CI cluster (started from ../shared/ci/slurm when not already up, and
    stopped after), with the shared rate limit: the peak requests per 60-s window at the
    simulator against ``rpm``. The CI cluster runs 2 one-core jobs at a time (2 CPUs),
    each able to send ~45 requests/s, so 50/s binds."""
    workdir = Path(work_root) / "fullscale_slurm" / f"n{n}"
    if workdir.exists():
        subprocess.run(["rm", "-rf", str(workdir)], check=True)
    workdir.mkdir(parents=True)
    write_prompts(workdir / "prompts.jsonl", n)
    settings = {**json.loads(SETTINGS.read_text()), "rpm": rpm, "tpm": None}
    started = not _slurm_up()
    piddir = TMP_DIR / "slurm-pids"
    env = {**os.environ, "PIDDIR": str(piddir)}
    try:
        if started:  # stopped in `finally` also when it fails half-way
            subprocess.run(["bash", str(SLURM_CI / "start-slurm.sh")], check=True, env=env,
                           capture_output=True)
        with Simulator(settings, workdir / "sim.jsonl") as sim, LoadSampler() as load:
            cfg = experiment_config(workdir, sim.url, policies=["base", "unhelpful"], shards=2,
                                    estimators=["calibrated-ips"], coverages=[0.1], rpm=rpm,
                                    tpm=None)
            (workdir / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
            run = run_snakemake(workdir, 2, "snakemake.slurm.log", extra=[
                "--profile", str(REPO / "profiles" / "slurm-ci"), "--jobs", "4"])
    finally:
        if started:
            subprocess.run(["bash", str(SLURM_CI / "stop-slurm.sh")], env=env,
                           capture_output=True)
    records = provider_sim.read_log(workdir / "sim.jsonl")
    res = {"n_prompts": n, "rpm": rpm, "run": run, "load_avg": load.summary(),
           "slurm_started_here": started,
           "stages": fm.stage_table(records, rpm, None),
           "peak": provider_sim.summarize_log(records, rpm, None, 60.0),
           "rows": fm.row_check(workdir, n, ["base", "unhelpful"])}
    peak = res["peak"]
    res["limit_held"] = peak["peak_requests_in_window"] <= peak["request_limit_in_window"]
    write_json(Path(out_dir) / "fullscale_slurm.json", res)
    print(f"SLURM run: {n} prompts, {res['stages']['all']['sent']} requests, peak "
          f"{peak['peak_requests_in_window']:.0f} per 60 s (limit {peak['request_limit_in_window']:.0f}), "
          f"429: {peak['by_status'].get('429', 0)}, wall {run['wall_s']:.0f} s, rc {run['returncode']}")
    return res


def targets(res: dict) -> list[dict]:
    """PASS/MISS rows of the issue-13 targets from a ``run`` result."""
    rows = []

    def row(name, value, ok, note=""):
        rows.append({"target": name, "value": value, "result": "PASS" if ok else "MISS",
                     "note": note, "part": "fullscale"})
    if not res or "full" not in res:
        return [{"target": "full-scale run (issue 13)", "value": "-", "result": "N/A",
                 "note": (res or {}).get("error", "fullscale part not run")[:100],
                 "part": "fullscale"}]
    full = res["full"]
    for stage, st in full["stages"].items():
        if stage != "all":
            row(f"{stage}: provider utilisation while it ran >= 0.9", st["utilisation"],
                st["utilisation"] >= 0.9)
    row("API span: ideal / measured >= 0.9", full["stages"]["all"]["ratio_to_ideal"],
        full["stages"]["all"]["ratio_to_ideal"] >= 0.9)
    row("whole DAG: ideal / measured >= 0.9", full["dag"]["ratio_to_ideal"],
        full["dag"]["ratio_to_ideal"] >= 0.9)
    worst = max(full["jobs"].values(), key=lambda r: r["max_rss_mb"])
    row("peak memory per job < 2 GB", max(r["max_rss_mb"] for r in full["jobs"].values()),
        worst["max_rss_mb"] < 2048)
    for stage, st in full["stages"].items():
        if stage != "all":
            row(f"{stage}: requests answered / minimum = 1 (none twice)",
                f"{st['distinct_answered']} / {st.get('minimum')}, {st['answered_twice']} twice",
                st["distinct_answered"] == st.get("minimum") and st["answered_twice"] == 0,
                f"{st['sent'] - st['answered']} extra attempts: {st['extra_attempts']}")
    row("rows lost or duplicated (full run)", full["rows"]["missing"] + full["rows"]["duplicated"],
        full["rows"]["missing"] + full["rows"]["duplicated"] == 0)
    if "kill" in res:
        k = res["kill"]
        row("kill at ~50 % + rerun: answered requests re-sent", k["resent_answered"],
            k["resent_answered"] == 0, f"killed at {k['share_answered_at_kill']:.0%}")
        lost = k["rows"]["missing"] + k["rows"]["duplicated"]
        row("kill + rerun: rows lost or duplicated", lost, lost == 0 and not
            k["files_differing_from_full_run"],
            f"{len(k['files_differing_from_full_run'])} files differ from the full run")
    if "add" in res:
        a = res["add"]
        row(f"+{a['n_added']} prompts: answered requests re-sent", a["resent_answered"],
            a["resent_answered"] == 0, f"{a['stages']['all']['sent']} requests sent")
    peak = full["peak"]
    row("peak requests in any 60-s window <= rpm", peak["peak_requests_in_window"],
        peak["peak_requests_in_window"] <= peak["request_limit_in_window"])
    return rows


def render(res: dict, rows: list[dict]) -> str:
    """The printed table: per-stage numbers, jobs, targets."""
    full = res["full"]
    lines = [f"full-scale run: {res['n_prompts']:,} prompts, {res['shards']} shards, "
             f"load average mean {full['load_avg']['mean']} (max {full['load_avg']['max']}) "
             f"on {os.cpu_count()} cores",
             f"{'stage':<10} {'sent':>8} {'answered':>9} {'minimum':>8} {'twice':>6} "
             f"{'seconds':>8} {'alone s':>8} {'util':>6}"]
    for stage, st in full["stages"].items():
        lines.append(f"{stage:<10} {st['sent']:>8} {st['answered']:>9} {st.get('minimum', ''):>8} "
                     f"{st['answered_twice']:>6} {st['seconds']:>8.1f} {st['ideal_alone_s']:>8.1f} "
                     f"{st['utilisation']:>6.3f}")
    lines.append(f"DAG wall {full['dag']['wall_s']:.0f} s, ideal {full['dag']['ideal_s']:.0f} s")
    lines.append(f"{'rule':<20} {'jobs':>5} {'max RSS MB':>11} {'max s':>8}")
    for rule, j in sorted(full["jobs"].items()):
        lines.append(f"{rule:<20} {j['jobs']:>5} {j['max_rss_mb']:>11.1f} {j['max_s']:>8.1f}")
    for r in rows:
        lines.append(f"{r['result']:<5} {r['target']}: {r['value']} {r['note']}")
    return "\n".join(lines)


def run(n_prompts: int = SIZES["full"], shards: int | None = None, parts=("full", "kill", "add"),
        n_add: int = 1_000, cores: int = 16, out_dir: Path = RESULTS_DIR,
        settings: dict | None = None, cfg_kw: dict | None = None, name: str = "fullscale",
        work_root: Path = TMP_DIR) -> dict:
    """Run the parts in ``work_root/name/n{n_prompts}/`` (removed first), print the table,
    write ``out_dir/{name}.json``; return the result."""
    settings = settings or json.loads(SETTINGS.read_text())
    cfg_kw = dict(cfg_kw or {})
    if shards is not None:
        cfg_kw["shards"] = shards
    base = Path(work_root) / name / f"n{n_prompts}"
    if base.exists():
        subprocess.run(["rm", "-rf", str(base)], check=True)
    res: dict = {"n_prompts": n_prompts, "shards": shards or yaml.safe_load(
        CONFIG.read_text())["execution"]["shards"], "provider": settings, "cpu_count": os.cpu_count(),
        "when_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    log(f"fullscale: full run of {n_prompts} prompts")
    res["full"] = full_run(base / "run", n_prompts, cfg_kw, settings, cores)
    answered = res["full"]["stages"]["all"]["answered"]
    if "kill" in parts:
        log("fullscale: kill at ~50 % and rerun")
        res["kill"] = kill_run(base / "kill", n_prompts, cfg_kw, settings, cores, answered,
                               res["full"]["digest"])
    if "add" in parts:
        log(f"fullscale: +{n_add} prompts")
        res["add"] = add_run(base / "run", n_prompts, n_add, cores, settings)
    rows = targets(res)
    res["targets"] = rows
    print(render(res, rows))
    write_json(Path(out_dir) / f"{name}.json", res)
    return res


if __name__ == "__main__":
    import argparse
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-prompts", type=int, default=SIZES["full"])
    ap.add_argument("--parts", default="full,kill,add",
                    help="full,kill,add (one run), or slurm alone (a reduced run on the CI cluster)")
    ap.add_argument("--cores", type=int, default=16)
    args = ap.parse_args()
    parts = tuple(args.parts.split(","))
    if parts == ("slurm",):
        slurm_run(args.n_prompts)
    else:
        run(args.n_prompts, parts=parts, cores=args.cores)
