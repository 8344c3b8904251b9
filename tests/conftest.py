"""Shared fixtures: paths to the real arena sample (read by path, never copied)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ARENA = Path(os.environ.get("CJE_ARENA_SAMPLE", REPO.parent / "shared" / "data" / "arena_sample"))


@pytest.fixture(scope="session")
def arena_dir() -> Path:
    if not (ARENA / "logged_data.jsonl").exists():
        if os.environ.get("CI"):
            pytest.fail(f"arena sample missing at {ARENA} (CI must have ../shared beside the clone)")
        pytest.skip(f"arena sample not found at {ARENA}")
    return ARENA


@pytest.fixture(scope="session")
def arena_logged(arena_dir: Path) -> Path:
    return arena_dir / "logged_data.jsonl"


@pytest.fixture(scope="session")
def arena_fresh(arena_dir: Path) -> Path:
    return arena_dir / "fresh_draws"
