"""Fixtures for the LLM-stage tests: the fault-injecting server and a fake API key."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "servers"))

from fault_server import FaultServer  # noqa: E402
from llm_testlib import FAKE_KEY  # noqa: E402


@pytest.fixture(autouse=True)
def _run_in_tmp_path(tmp_path, monkeypatch):
    """Every LLM test runs in its own folder: relative defaults (``data/cache/requests``,
    ``logs/api_calls.log``) never land in the repository."""
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def fault_server():
    """A running FaultServer (no faults, no latency); tests set rules on it."""
    with FaultServer() as srv:
        yield srv


@pytest.fixture
def fake_key(monkeypatch):
    """A recognisable fake API key in $CJE_TEST_API_KEY."""
    monkeypatch.setenv("CJE_TEST_API_KEY", FAKE_KEY)
    return FAKE_KEY


@pytest.fixture(scope="module")
def server():
    """The embedded model server (real Gemma 3 270M), one per test module; yields its base_url."""
    from cje.llm.local.server import local_server

    with local_server(n_threads=1) as url:
        yield url
