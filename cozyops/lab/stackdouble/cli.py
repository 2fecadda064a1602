"""The ``cozy-stack`` command line of the double (cozy-stack.md §1): the parser and ``main``.

The commands live in ``stackdouble/cmd/``, one module per file of cozy-stack's own ``cmd/``.
"""

from __future__ import annotations

import argparse
import sys

from .cmd import apps, check, config, files, instances, serve
from .cmd.root import BOOL_FLAGS, Client, CliError, ExitError, Parser, _globals, load_config

MODULES = (instances, apps, config, files, check, serve)
OFFLINE = set().union(*(getattr(m, "OFFLINE", set()) for m in MODULES))


def build_parser() -> argparse.ArgumentParser:
    root = Parser(prog="cozy-stack", description="cozy-stack (test double): the subset cozyops uses")
    _globals(root, root=True)
    commands = root.add_subparsers(dest="command", parser_class=Parser, metavar="COMMAND")
    for module in MODULES:
        module.register(commands)
    return root


def _normalise(argv: list[str]) -> list[str]:
    """cobra's ``--flag=false`` for boolean flags."""
    out = []
    for arg in argv:
        name, eq, value = arg.partition("=")
        if eq and name.startswith("--") and name[2:] in BOOL_FLAGS:
            out.append(name if value.lower() in ("1", "t", "true") else "--no-" + name[2:])
        else:
            out.append(arg)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(_normalise(list(sys.argv[1:] if argv is None else argv)))
    func = getattr(args, "func", None)
    if func is None:
        (getattr(args, "parser", None) or parser).print_help(sys.stderr)
        return 1 if getattr(args, "command", None) is None or getattr(args, "subcommand", None) else 0
    try:
        args.cfg = load_config(args)
        client = None if func in OFFLINE else Client(args)
        return func(args, client)
    except ExitError as error:
        sys.stderr.write(f"{error}\n")
        return 1
    except CliError as error:
        sys.stderr.write(f"Error: {error}\n")
        return 1
    except KeyboardInterrupt:
        return 130
