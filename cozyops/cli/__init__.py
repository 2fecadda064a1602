"""The `cozyops` command line.

This module is the console script's entry point and stays light: `--help` for the root, a group
or a command is answered from the pre-rendered text in :mod:`cozyops.cli.helptext` (what Typer
prints, generated from the commands themselves and checked against them by the test suite),
without importing Typer or any command group. Everything else runs the Typer app in
:mod:`cozyops.cli.app`, which imports a group only when the command line names it.
"""

from __future__ import annotations

import gc
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
    # A command's working set (100,000 instances, their records and plan) is millions of small
    # objects that live until it ends: the collector's default (a pass every 700 allocations,
    # each looking at every young container) cost a fifth of a big `dns plan`. Cycles are still
    # collected, less often; memory freed by reference counting is freed as before.
    gc.set_threshold(50_000, 20, 10)
    from cozyops.cli.app import run

    run(args)
