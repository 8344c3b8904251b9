"""Fixtures of the workflow tests (see wfutil.py)."""

from __future__ import annotations

import pytest

from .wfutil import copy_workflow


@pytest.fixture
def workflow_dir(tmp_path):
    """A fresh temporary copy of the workflow (no data/, results/ or .snakemake/)."""
    return copy_workflow(tmp_path / "wf")
