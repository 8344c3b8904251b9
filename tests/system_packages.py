"""Tests that need something outside the Python environment (a system package, a
running SLURM cluster): skip with the command that provides it on a developer's
machine, fail under ``CI=true``, where .ci/run installs and starts everything, so a
missing package there is a broken CI set-up, not a reason to test less.

One helper for all of them (the browser, SLURM and fs storage-plugin tests), so the
rule "skip outside CI, fail in CI" and the meaning of ``CI`` are written once.
"""

from __future__ import annotations

import os
import shutil

import pytest


def in_ci() -> bool:
    """``CI`` set to a true value (``true``, ``1``, ``yes``; what CI services export)."""
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def unavailable(problem: str, fix: str, ci_note: str = "") -> None:
    """Skip the test naming ``problem`` and the command that fixes it; fail under
    CI=true (``ci_note``: what in CI should have provided it)."""
    __tracebackhide__ = True  # skips and failures point at the test, not at this helper
    if in_ci():
        pytest.fail(f"CI=true but {problem}: {fix}" + (f" ({ci_note})" if ci_note else ""), pytrace=False)
    pytest.skip(f"{problem}: {fix}")


def require_commands(*commands: str, package: str, why: str = "") -> dict[str, str]:
    """Paths of ``commands`` on PATH; when one is missing, skip with
    ``apt-get install -y <package>`` (fail under CI=true). ``why``: what needs them."""
    __tracebackhide__ = True
    found = {name: shutil.which(name) for name in commands}
    missing = [name for name, path in found.items() if path is None]
    if missing:
        what = f"{'/'.join(missing)} not installed" + (f" ({why})" if why else "")
        unavailable(what, f"apt-get install -y {package}", ".ci/run installs it")
    return found
