"""The workflow as a Snakemake module and deployed with snakedeploy (issue 11.7).

Every path the workflow reads from its own sources (schema, rules, scripts, envs,
report captions, the cje package) is resolved from the Snakefile's location
(``workflow.source_path`` / ``workflow.current_basedir``), never from the working
directory, so an importing workflow elsewhere can use it. Data paths in the config
stay relative to the working directory.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from .wfutil import analysis_only_config, planned_jobs, run_snakemake, write_config

SNAKEDEPLOY = str(Path(sys.executable).with_name("snakedeploy"))


def _check_results(workdir: Path) -> None:
    result = json.loads((workdir / "results" / "raw-ips" / "coverage_0.5" / "estimates.json").read_text())
    assert result["metadata"]["estimator"] == "raw-ips"
    assert (workdir / "results" / "summary.csv").read_text().count("\n") == 1 + 3


def test_workflow_runs_as_a_module(workflow_dir, tmp_path):
    user = tmp_path / "user"
    (user / "config").mkdir(parents=True)
    write_config(user, "config/config.yaml", analysis_only_config(estimators=["raw-ips"]))
    (user / "Snakefile").write_text(
        'configfile: "config/config.yaml"\n\n'
        f'module cje_arena:\n    snakefile:\n        "{workflow_dir / "Snakefile"}"\n'
        "    config:\n        config\n\n"
        "use rule * from cje_arena\n")
    run_snakemake(user, "--cores", "2")
    _check_results(user)
    assert planned_jobs(user) == {}
    # the only lint is the test's own absolute module path, none in the workflow's files
    out = run_snakemake(user, "--lint", check=False).stderr
    linted = [l for l in out.splitlines() if l.startswith("Lints for")]
    assert linted == [f"Lints for snakefile {user / 'Snakefile'}:"], out


def test_snakedeploy_deploys_the_workflow(workflow_dir, tmp_path):
    dest = tmp_path / "deployed"
    proc = subprocess.run([SNAKEDEPLOY, "deploy-workflow", str(workflow_dir), str(dest), "--branch", "main"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # snakedeploy copied the config (with the rubrics) and the profiles, and wrote a
    # Snakefile that imports the workflow as a module with the deployed config
    assert (dest / "config" / "config.yaml").read_text() == (workflow_dir / "config" / "config.yaml").read_text()
    assert (dest / "config" / "rubrics" / "judge.txt").is_file()
    assert (dest / "profiles" / "slurm" / "config.v8+.yaml").is_file()
    snakefile = dest / "workflow" / "Snakefile"
    text = snakefile.read_text()
    assert "module wf:" in text and "use rule * from wf" in text and "config:\n        config" in text
    # snakedeploy 0.17's local-path provider writes the module path relative to the
    # source ("Snakefile"), which Snakemake resolves next to the deployed Snakefile;
    # from a GitHub URL it writes github("owner/repo", path="Snakefile", tag=...).
    # Point it at the source as a GitHub deployment would.
    assert '\n        "Snakefile"\n' in text
    snakefile.write_text(text.replace('\n        "Snakefile"\n', f'\n        "{workflow_dir / "Snakefile"}"\n'))

    # the deployed default config builds its DAG (the local demo's 45 jobs) ...
    jobs = planned_jobs(dest)
    assert jobs["generate"] == 4 and jobs["analyze"] == 9
    # ... and an analysis-only config runs
    write_config(dest, "config/config.yaml", analysis_only_config(estimators=["raw-ips"]))
    shutil.rmtree(dest / ".snakemake", ignore_errors=True)
    run_snakemake(dest, "--cores", "2")
    _check_results(dest)
