"""Shared fixtures: paths to the real arena sample (read by path, never copied)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.system_packages import unavailable

REPO = Path(__file__).resolve().parents[1]
ARENA = Path(os.environ.get("CJE_ARENA_SAMPLE", REPO.parent / "shared" / "data" / "arena_sample"))


@pytest.fixture(scope="session")
def arena_dir() -> Path:
    if not (ARENA / "logged_data.jsonl").exists():
        unavailable(f"arena sample not found at {ARENA}",
                    "put ../shared beside the clone or set CJE_ARENA_SAMPLE", "CI must have ../shared beside the clone")
    return ARENA


@pytest.fixture(scope="session")
def arena_logged(arena_dir: Path) -> Path:
    return arena_dir / "logged_data.jsonl"


@pytest.fixture(scope="session")
def arena_fresh(arena_dir: Path) -> Path:
    return arena_dir / "fresh_draws"


@pytest.fixture(scope="session", autouse=True)
def checked_inputs_cache(tmp_path_factory) -> Path:
    """The verdicts of the strict JSONL reader (cje.data.checked) go to a session folder, not ~/.cache."""
    folder = tmp_path_factory.mktemp("cje-cache")
    previous = os.environ.get("CJE_CACHE_DIR")
    os.environ["CJE_CACHE_DIR"] = str(folder)
    yield folder
    if previous is None:
        os.environ.pop("CJE_CACHE_DIR", None)
    else:
        os.environ["CJE_CACHE_DIR"] = previous
