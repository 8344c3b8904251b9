"""Shared helper of the rule scripts: run one ``cje`` stage into the rule's log.

Imported by the thin ``scripts/<stage>.py`` files (Snakemake puts this folder on
``sys.path``). Nothing here knows about statistics or LLMs.

The ``cje`` package the stages run is the one next to these scripts when the
workflow ships its source (this repository, a clone, a local module), else the
installed one (``pip install cje-arena``): the same files the rules' code hashes
read (rules/common.smk, ``PACKAGE_ROOT``). So a conda env needs only the
dependencies (envs/*.yaml), never an editable install of a relative path.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import sys
from pathlib import Path

_SOURCE_ROOT = Path(__file__).resolve().parent.parent
if (_SOURCE_ROOT / "cje" / "__init__.py").is_file():
    sys.path.insert(0, str(_SOURCE_ROOT))
    # child processes (the local model server) import the same package
    os.environ["PYTHONPATH"] = os.pathsep.join(
        [str(_SOURCE_ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])


def run_cje(argv: list, log: str, ok_codes: tuple = (0,)) -> None:
    """Run ``cje <argv>`` in this process with stdout/stderr (file descriptors 1 and 2,
    so child processes too) sent to ``log``; exit with the stage's code on failure (any code
    not in ``ok_codes``: ``cje analyze --refuse-unreliable`` exits 3 when it withheld an
    estimate, a complete result)."""
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
    if code not in ok_codes:
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

    from cje.atomic import atomic_write_text

    text = yaml.safe_dump(dict(sm.config), sort_keys=True)
    key = hashlib.sha256(text.encode()).hexdigest()[:16]
    path = Path(".snakemake") / "cje" / f"config.{key}.yaml"
    if not path.exists():
        atomic_write_text(path, text)
    return str(path)


def llm_flags(sm) -> list:
    """Flags every LLM stage gets from ``params.runtime`` (rules/common.smk, ``llm_runtime``):
    the per-request API cache and the cross-job rate limiter's state (storage-aware
    folders shared by every job of a run) and the API call log."""
    rt = sm.params.runtime
    return ["--request-cache", rt.request_cache_dir, "--rate-limit-dir", rt.rate_limit_dir,
            "--api-log", rt.api_log]
