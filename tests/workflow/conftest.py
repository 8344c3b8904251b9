"""Fixtures of the workflow tests (see wfutil.py)."""

from __future__ import annotations

import sys

import pytest

from .wfutil import SERVERS, copy_workflow

sys.path.insert(0, str(SERVERS))


@pytest.fixture
def workflow_dir(tmp_path):
    """A fresh temporary copy of the workflow (no data/, results/ or .snakemake/)."""
    return copy_workflow(tmp_path / "wf")


@pytest.fixture
def fake_api():
    """A local OpenAI-compatible server (tests/servers/fault_server.py, no faults) that
    counts the requests it receives: ``fake_api.url``, ``fake_api.total()``, ``counts()``."""
    from fault_server import FaultServer

    with FaultServer() as server:
        yield server
