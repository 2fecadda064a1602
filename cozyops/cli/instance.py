"""`cozyops instance`: the fleet's instances."""

from __future__ import annotations

import typer

from cozyops.cli.instance_move import move

app = typer.Typer(help="The fleet's instances: moves between servers (add, ls, show, rm, modify and apps come "
                       "with the instances work).", no_args_is_help=True)


@app.callback()
def _group() -> None:
    """Keeps `instance` a group of commands."""


app.command("move")(move)
