"""Run ONE analysis with the reference library ``cje-eval`` (child process).

This file is executed as a plain script by the reference venv's interpreter
(``benchmarks/.ref-venv/bin/python -I benchmarks/_reference_child.py ...``), never
imported by our code: ``import cje`` here must resolve to the reference package,
not to this repository's ``cje``. ``-I`` (isolated mode: no PYTHONPATH, no script dir) keeps the
repository off ``sys.path``; the script checks the resolved package anyway.

Inputs (argv): --data LOGGED.jsonl, --fresh-draws-dir DIR (DR estimators),
--estimator NAME, --output OUT.json. Output: OUT.json with ``version``,
``estimator``, ``target_policies`` (the reference's order), ``estimates``,
``standard_errors``, ``ci_lower``/``ci_upper`` (95 %), ``n_samples_used`` and
``analysis_seconds`` (time inside ``analyze_dataset``, excluding interpreter start).
The reference API used is ``cje.analyze_dataset(logged_data_path, fresh_draws_dir,
estimator)`` (cje-eval 0.3.0, ``cje/interface/analysis.py``).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import time


def _load_by_path(name: str, path):
    """A module of this repository loaded from its file under a private name."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _repo_atomic():
    """This repository's one atomic writer (``cje/atomic.py``, stdlib + ``cje.errors``), loaded by
    file path: ``import cje`` here is the reference package, so the module cannot be imported.
    Its one import from cje, ``cje.errors`` (the foundation, which imports nothing else), is
    this repository's file, lent under that name while atomic.py loads."""
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent / "cje"
    errors = _load_by_path("_repo_cje_errors", root / "errors.py")
    saved = sys.modules.get("cje.errors")
    sys.modules["cje.errors"] = errors
    try:
        return _load_by_path("_repo_cje_atomic", root / "atomic.py")
    finally:
        if saved is None:
            sys.modules.pop("cje.errors", None)
        else:
            sys.modules["cje.errors"] = saved


def _floats(values) -> list:
    """Convert an array-like of numbers to JSON floats (NaN/inf -> None)."""
    out = []
    for v in list(values):
        v = float(v)
        out.append(v if math.isfinite(v) else None)
    return out


def main() -> int:
    """Parse argv, run the reference analysis, write the JSON result; exit code 0 on success."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--fresh-draws-dir", default=None)
    ap.add_argument("--estimator", required=True)
    ap.add_argument("--output", required=True)
    args = ap.parse_args()

    logging.basicConfig(level=logging.ERROR)
    import cje  # the reference package

    here = os.path.dirname(os.path.abspath(__file__))
    if os.path.dirname(os.path.dirname(os.path.abspath(cje.__file__))) == os.path.dirname(here):
        print(f"{__file__}: imported the repository's cje, not the reference", file=sys.stderr)
        return 2
    version = getattr(cje, "__version__", "unknown")

    fresh = args.fresh_draws_dir
    if args.estimator in {"calibrated-ips", "raw-ips"}:
        fresh = None  # IPS ignores fresh draws; do not pay for loading them
    t0 = time.perf_counter()
    result = cje.analyze_dataset(
        logged_data_path=args.data,
        fresh_draws_dir=fresh,
        estimator=args.estimator,
        verbose=False,
    )
    seconds = time.perf_counter() - t0
    lo, hi = result.confidence_interval(alpha=0.05)
    payload = {
        "library": "cje-eval",
        "version": version,
        "module_file": cje.__file__,
        "estimator": args.estimator,
        "target_policies": list(result.metadata.get("target_policies", [])),
        "estimates": _floats(result.estimates),
        "standard_errors": _floats(result.standard_errors),
        "ci_lower": _floats(lo),
        "ci_upper": _floats(hi),
        "n_samples_used": {k: int(v) for k, v in (result.n_samples_used or {}).items()},
        "method": result.method,
        "analysis_seconds": seconds,
    }
    _repo_atomic().atomic_write_text(args.output, json.dumps(payload, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
