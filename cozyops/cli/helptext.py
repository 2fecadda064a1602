"""`--help` without Typer: the text Typer prints for each command path, rendered ahead of time.

``cozyops --help`` used to import every command group (the lab, the v2 converters, ...) to list
them: most of a second before anything showed. The texts below are what Typer renders, at 80
columns, for the root, each group and each command; :func:`lookup` finds the one a command line
asks for. ``python -m cozyops.cli.helptext`` renders them again from the commands themselves and
rewrites ``_helptext.json``; the test suite fails when the file and the commands disagree, so the
text cannot drift.
"""

from __future__ import annotations

import json
from pathlib import Path

WIDTH = 80
_FILE = Path(__file__).with_name("_helptext.json")
_HELP_FLAGS = ("--help", "-h")
_ROOT_FLAGS = ("--debug",)  # the root's options that take no value


def _texts() -> dict[str, str]:
    return json.loads(_FILE.read_text(encoding="utf-8"))


def lookup(args: list[str]) -> str | None:
    """The pre-rendered help for ``args``, or None when they do not ask for help we hold.

    Help is asked for when ``--help``/``-h`` comes before any ``--`` and every word before the
    first option names a command path we know (``cert ls --fleet F --help`` is ``cert ls``'s
    help). Anything else (an unknown command, a misspelt option) goes to Typer, which says what
    is wrong.
    """
    if "--" in args:
        args = args[: args.index("--")]
    if not any(flag in args for flag in _HELP_FLAGS):
        return None
    words = []
    for arg in args:
        if arg in _ROOT_FLAGS and not words:
            continue
        if arg.startswith("-"):
            break
        words.append(arg)
    texts = _texts()
    return texts.get(" ".join(words))


def render() -> dict[str, str]:
    """Each command path's help, as Typer prints it at WIDTH columns (imports every group)."""
    import typer
    from typer.main import get_command
    from typer.testing import CliRunner

    from cozyops.cli.app import app

    root = get_command(app)
    runner = CliRunner()
    texts: dict[str, str] = {}

    def walk(command, path: list[str]) -> None:
        result = runner.invoke(app, [*path, "--help"], prog_name="cozyops", terminal_width=WIDTH,
                               env={"COLUMNS": str(WIDTH)})
        if result.exit_code != 0:
            raise RuntimeError(f"cozyops {' '.join(path)} --help: exit {result.exit_code}: {result.output}")
        texts[" ".join(path)] = result.output
        if hasattr(command, "list_commands"):  # a group
            ctx = typer.Context(command, info_name=path[-1] if path else "cozyops")
            for name in command.list_commands(ctx):
                walk(command.get_command(ctx, name), [*path, name])

    walk(root, [])
    return texts


def write() -> Path:
    _FILE.write_text(json.dumps(render(), indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return _FILE


if __name__ == "__main__":
    print(f"wrote {write()}")
