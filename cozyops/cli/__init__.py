"""The `cozyops` command line.

This module is the console script's entry point and stays light: `--help` for the root, a group
or a command is answered from the pre-rendered text in :mod:`cozyops.cli.helptext` (what Typer
prints, generated from the commands themselves and checked against them by the test suite),
without importing Typer or any command group. Everything else runs the Typer app in
:mod:`cozyops.cli.app`, which imports a group only when the command line names it.
"""

from __future__ import annotations

import os
import sys


def main(argv: list[str] | None = None) -> None:
    """The console script."""
    args = sys.argv[1:] if argv is None else list(argv)
    if "_COZYOPS_COMPLETE" not in os.environ:
        from cozyops.cli import helptext

        text = helptext.lookup(args)
        if text is not None:
            sys.stdout.write(text)
            sys.stdout.flush()
            sys.exit(0)
    from cozyops.cli.app import run

    run(args)
