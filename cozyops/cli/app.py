"""The `cozyops` command line's Typer app: the global options and the one error handler.

The library never prints and never exits; commands render its results here. Messages and
progress go to standard error, data (``--json``) alone to standard output.

Each command group lives in its own module, imported only when the command line names it: a
process that issues one certificate does not pay for paramiko, jinja2 or the v2 converters.
"""

from __future__ import annotations

import importlib
import logging
import sys

import typer
from typer.core import TyperGroup

from cozyops import __version__, paths
from cozyops.cli.render import err_console, settings
from cozyops.errors import CozyopsError

# name -> module whose `app` is that group, in the order `--help` lists them.
GROUPS = {
    "install": "cozyops.cli.install",
    "lab": "cozyops.cli.lab",
    "dns": "cozyops.cli.dns",
    "cert": "cozyops.cli.cert",
    "v2": "cozyops.cli.v2",
    "server": "cozyops.cli.server",
    "instance": "cozyops.cli.instance",
    # Top-level commands (module:attribute, or a module whose app has one command and no callback).
    "plan": "cozyops.cli.fleet:plan_app",
    "apply": "cozyops.cli.fleet:apply_app",
    "status": "cozyops.cli.status",
}


class LazyGroups(TyperGroup):
    """The root group: its subgroups are imported when asked for (or when `--help` lists them)."""

    def list_commands(self, ctx):
        return [*super().list_commands(ctx), *(name for name in GROUPS if name not in self.commands)]

    def get_command(self, ctx, name):
        if name not in self.commands and name in GROUPS:
            module, _, attribute = GROUPS[name].partition(":")
            sub = getattr(importlib.import_module(module), attribute or "app")
            sub.rich_markup_mode = app.rich_markup_mode  # as add_typer would: the root's plain help
            group = typer.main.get_command(sub)
            group.name = name
            self.commands[name] = group
        return super().get_command(ctx, name)

HELP = """\
cozyops runs Cozy (cozy-stack) hosting: DNS records and wildcard TLS certificates for every
instance's app subdomains, fleets of servers and instances planned and applied like code, and the
way out of Cozy v2.

Start with the lab, a small world on this machine (DNS servers, an ACME CA) that every command
can run against:

\b
  sudo cozyops lab setup     install what the lab needs (once)
  sudo cozyops lab demo      bring the lab up and show what works

Logs (with tracebacks of unexpected errors) go to ~/.local/state/cozyops/logs/cozyops.log
($XDG_STATE_HOME). Exit status: 0 done, 1 a known error (one line on standard error), 2 an unsafe
plan that needs --force.
"""

app = typer.Typer(
    name="cozyops",
    help=HELP,
    no_args_is_help=True,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
    add_completion=True,  # --install-completion / --show-completion (bash, zsh, fish)
    context_settings={"help_option_names": ["-h", "--help"]},
    cls=LazyGroups,
)

log = logging.getLogger("cozyops")


class _LazyFileHandler(logging.FileHandler):
    """Creates the log's directory and file only when something is logged."""

    def _open(self):  # type: ignore[override]
        paths.log_file().parent.mkdir(parents=True, exist_ok=True)
        return super()._open()


def _configure_logging(debug: bool) -> None:
    logger = logging.getLogger("cozyops")
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
    file_handler = _LazyFileHandler(paths.log_file(), delay=True)
    file_handler.setLevel(logging.INFO)
    file_handler.setFormatter(logging.Formatter("%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s"))
    logger.addHandler(file_handler)
    if debug:
        stream = logging.StreamHandler(sys.stderr)
        stream.setLevel(logging.DEBUG)
        stream.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        logger.addHandler(stream)


def _version(value: bool) -> None:
    if value:
        print(f"cozyops {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    debug: bool = typer.Option(False, "--debug", help="Log to standard error; show tracebacks."),
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    settings.debug = debug
    _configure_logging(debug)


def run(argv: list[str] | None = None) -> None:
    """Run the app, render every failure as the contract says.

    Typer (in standalone mode) handles usage errors and exits itself; everything else that
    escapes a command arrives here.
    """
    try:
        app(args=argv, prog_name="cozyops")
    except CozyopsError as error:
        log.error("%s", error)
        if settings.debug:
            err_console.print_exception()
        err_console.print(f"cozyops: error: {error}", markup=False, highlight=False, soft_wrap=True)
        sys.exit(error.exit_code)
    except Exception as error:  # noqa: BLE001 - the one place that sees unexpected errors
        log.exception("unexpected error")
        if settings.debug:
            err_console.print_exception()
        err_console.print(
            f"cozyops: unexpected error: {type(error).__name__}: {error} "
            f"(traceback in {paths.log_file()})",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
        sys.exit(1)
