"""Command-line interface: ``cje <stage> ...`` (also ``python -m cje``).

One subcommand per pipeline stage, named like the Snakemake rules, plus
``analyze``, ``plan`` (oracle labels needed for a target precision), ``cost``
(tokens and cost from the call logs, or an estimate before a run) and
``summarize``; ``check-provider`` checks the providers before a run. The LLM stages register themselves from :mod:`cje.cli.llm`,
the sweep summary from :mod:`cje.cli.summarize`.

Exit codes: 0 ok; 2 bad input or option (one line on stderr naming the file,
line and field or the option), or an output past the file-size limit (``ulimit -f``:
one line naming the file); 3 ``cje analyze --refuse-unreliable`` withheld
at least one estimate (its outputs are written, with nulls).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import signal
import sys

from cje import __version__
from cje.atomic import file_too_large
from cje.errors import CJEError

# Modules that add subcommands: each has ``register(subparsers) -> None`` and sets
# ``func`` (args -> int) as the parser default.
_COMMAND_MODULES = ("cje.cli.analyze", "cje.cli.plan", "cje.cli.cost", "cje.cli.llm",
                    "cje.cli.local", "cje.cli.summarize")
# Which module owns which subcommand, so ``cje analyze`` does not import the LLM client
# (openai: ~0.35 s) and ``cje generate`` does not import the estimators. A command not
# listed here (or ``cje --help``) loads every module.
_COMMAND_OWNER = {"analyze": "cje.cli.analyze", "plan": "cje.cli.plan", "cost": "cje.cli.cost",
                  "summarize": "cje.cli.summarize",
                  "serve-local": "cje.cli.local", "logprobs": "cje.cli.local",
                  **{c: "cje.cli.llm" for c in ("prompts", "generate", "judge", "oracle", "merge",
                                                     "dataset", "check-provider")}}


def _requested_command(argv: list[str]) -> str | None:
    first = next((a for a in argv if not a.startswith("-")), None)
    return first if first in _COMMAND_OWNER else None


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """Return the top-level parser: every subcommand, or only the module owning the one in ``argv``."""
    parser = argparse.ArgumentParser(prog="cje", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--version", action="version", version=f"cje {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    command = _requested_command(argv) if argv is not None else None
    modules = (_COMMAND_OWNER[command],) if command else _COMMAND_MODULES
    if argv is not None and command is None and "--version" in argv:
        modules = ()  # `cje --version` prints and exits: no subcommand needs importing
    for name in modules:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:  # a part not installed yet
            if exc.name != name:
                raise
            continue
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; return the process exit code (0 ok, 2 bad input, 3 refused)."""
    # past the file-size limit (ulimit -f) a write then fails with EFBIG, reported naming the file,
    # instead of SIGXFSZ killing the process without a word
    if hasattr(signal, "SIGXFSZ"):
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    parser = build_parser(argv if argv is not None else sys.argv[1:])
    args = parser.parse_args(argv)
    quiet = getattr(args, "quiet", False)  # --quiet: nothing but errors
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.ERROR if quiet else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args) or 0)
    except CJEError as exc:
        print(f"cje {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a write past `ulimit -f` outside the atomic writer (a log, a cache entry)
        too_large = file_too_large(None, exc)
        if too_large is None:
            raise
        print(f"cje {args.command}: error: {too_large}", file=sys.stderr)
        return 2
