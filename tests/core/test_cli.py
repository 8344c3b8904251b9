"""The CLI registers every subcommand, but a command imports only the module that owns it."""

from __future__ import annotations

import subprocess
import sys

from cje.cli import _COMMAND_OWNER, build_parser


def _subcommands(parser) -> set[str]:
    action = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    return set(action.choices)


def test_full_parser_has_every_command_and_owners_register_them():
    assert _subcommands(build_parser()) == set(_COMMAND_OWNER)
    for command in _COMMAND_OWNER:
        assert command in _subcommands(build_parser([command, "--help"]))


def test_analyze_does_not_import_the_llm_client_or_sklearn():
    code = ("import sys; from cje.cli import build_parser; build_parser(['analyze']);"
            "import cje.analysis.run, cje.estimators;"
            "print(sorted(m for m in ('openai', 'sklearn', 'matplotlib') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_an_ips_analysis_does_not_import_scipy_optimize():
    """PAVA is loaded without scipy.optimize's package (linprog, shgo, scipy.linalg, scipy.fft: half
    of an analysis's start-up); only tmle and stacked-dr, which solve a fluctuation, import it."""
    code = ("import sys; from cje.analysis.run import analyze_loaded; from cje.sim.scenarios import simulate;"
            "ds = simulate(300, seed=1); analyze_loaded(ds.logged, ds.fresh, 'calibrated-ips');"
            "analyze_loaded(ds.logged, ds.fresh, 'dr-cpo');"
            "print(sorted(m for m in ('scipy.optimize', 'scipy.linalg', 'sklearn') if m in sys.modules));"
            "analyze_loaded(ds.logged, ds.fresh, 'tmle'); print('scipy.optimize' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["[]", "True"]
