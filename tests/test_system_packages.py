"""The one rule for tests that need a system package (tests/system_packages.py): outside
CI they skip with the install command, under CI=true they fail."""

from __future__ import annotations

import pytest

import tests.system_packages as system_packages
from tests.system_packages import in_ci, require_commands


@pytest.fixture
def nothing_installed(monkeypatch):
    monkeypatch.setattr(system_packages.shutil, "which", lambda name: None)


@pytest.mark.parametrize("value,expected", [("true", True), ("TRUE", True), ("1", True), ("yes", True),
                                            ("", False), ("false", False), ("0", False), (None, False)])
def test_ci_means_a_true_value(monkeypatch, value, expected):
    if value is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", value)
    assert in_ci() is expected


def test_missing_package_skips_with_the_install_command_outside_ci(monkeypatch, nothing_installed):
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception) as skipped:
        require_commands("sbatch", "sinfo", package="slurm-wlm munge", why="the SLURM test")
    assert str(skipped.value) == "sbatch/sinfo not installed (the SLURM test): apt-get install -y slurm-wlm munge"


def test_missing_package_fails_under_ci(monkeypatch, nothing_installed):
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception) as failed:
        require_commands("rsync", package="rsync")
    assert str(failed.value) == "CI=true but rsync not installed: apt-get install -y rsync (.ci/run installs it)"


def test_installed_commands_are_returned(monkeypatch):
    monkeypatch.setenv("CI", "true")
    monkeypatch.setattr(system_packages.shutil, "which", lambda name: f"/usr/bin/{name}")
    assert require_commands("sbatch", "sinfo", package="slurm-wlm") == {"sbatch": "/usr/bin/sbatch",
                                                                        "sinfo": "/usr/bin/sinfo"}


def test_the_browser_tests_use_it(monkeypatch, nothing_installed):
    from tests.viz.test_browser import _chromium

    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match=r"chromium not installed .*apt-get install -y chromium"):
        _chromium()
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception, match=r"chromium not installed .*apt-get install -y chromium"):
        _chromium()
