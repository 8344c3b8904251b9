"""Shared helper of the rule scripts: run one ``cje`` stage into the rule's log.

Imported by the thin ``scripts/<stage>.py`` files (Snakemake puts this folder on
``sys.path``). Nothing here knows about statistics or LLMs.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import sys
from pathlib import Path


def run_cje(argv: list[str], log: str) -> None:
    """Run ``cje <argv>`` in this process with stdout/stderr (file descriptors 1 and 2,
    so child processes too) sent to ``log``; exit with the stage's code on failure."""
    from cje.cli import main

    Path(log).parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as fh:
        fh.write("$ cje " + " ".join(shlex.quote(str(a)) for a in argv) + "\n")
        fh.flush()
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(fh.fileno(), 1)
        os.dup2(fh.fileno(), 2)
        code = main([str(a) for a in argv])
        sys.stdout.flush()
        sys.stderr.flush()
    if code != 0:
        sys.exit(code)


def effective_config(sm) -> str:
    """Write the job's workflow config (validated, defaults filled, command-line
    overrides applied: ``snakemake.config``) for ``cje <stage> --config`` and return its path.

    The file is named by the hash of its content under ``.snakemake/cje/``, written
    atomically at job run time, so concurrent runs (or a dry run with another
    config) can never swap the config under a running job, and no DAG-time file
    write can trigger reruns.
    """
    import yaml

    text = yaml.safe_dump(dict(sm.config), sort_keys=True)
    key = hashlib.sha256(text.encode()).hexdigest()[:16]
    path = Path(".snakemake") / "cje" / f"config.{key}.yaml"
    if not path.exists():
        from cje.atomic import atomic_write_text

        atomic_write_text(path, text)
    return str(path)


def cache_file(cache_dir: str, name: str, inputs: list[str], spec: str) -> str:
    """Side-cache path for one job: ``cache_dir/name.<key>.cache.jsonl``.

    The key hashes the content of the job's inputs and its spec (policy / scorer
    config), so a rerun with the same inputs resumes from the cache, while changed
    inputs or a changed spec start a fresh cache instead of reusing stale records.
    The cache lives outside Snakemake's declared outputs, so a failed or killed job
    keeps it (docs/workflow.md, "Resume").
    """
    digest = hashlib.sha256(spec.encode())
    for path in inputs:
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    Path(cache_dir).mkdir(parents=True, exist_ok=True)
    return os.path.join(cache_dir, f"{name}.{digest.hexdigest()[:12]}.cache.jsonl")
