"""`cozyops instance move`: an instance to another server, staged on cozy-stack's export and
import, every step journaled (cozyops/instances/move.py; docs/moves.md)."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from cozyops import inventory, state
from cozyops.cli.render import emit_json, err_console
from cozyops.instances import move as moves
from cozyops.model import Fleet

FleetOption = typer.Option(
    None, "--fleet", envvar="COZYOPS_FLEET", file_okay=False,
    help="The fleet directory (default: $COZYOPS_FLEET).",
)


def _site(fleet: Fleet, server: str) -> None:
    """The instance's nginx site and certificate on ``server``: the site playbook there (role nginx
    reads instances.yml and deploys the fleet's certificates)."""
    from cozyops.errors import CozyopsError
    from cozyops.servers import provision as prov

    result = prov.provision(fleet, [server])
    if result.failed:
        failures = [f"{f.task}: {f.message}" for s in result.hosts.values() for f in s.failures]
        raise CozyopsError(f"server {server}", "provisioning its site failed: " + ("; ".join(failures[:2]) or
                                                                                  result.status),
                           f"artifacts in {result.artifacts}")


def move(
    domain: str = typer.Argument(..., help="The instance (its domain)."),
    to: str = typer.Option(None, "--to", help="The server it moves to (a server of the inventory)."),
    keep_days: int = typer.Option(moves.DEFAULT_KEEP_DAYS, "--keep-days", min=0,
                                  help="Days the source stays (blocked, MOVED) before `cozyops apply` removes it."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Start without asking."),
    abort: bool = typer.Option(False, "--abort", help="Before the switch: unblock the source, remove the target's "
                                                      "copy, forget the move."),
    fleet: Path = FleetOption,
    json: bool = typer.Option(False, "--json", help="Print JSON (and only JSON) on standard output."),
) -> None:
    """Move an instance to another server: checks (target provisioned, room, stack version), the
    instance created on the target, the source blocked (MOVING), cozy-stack's export on the
    source, its import on the target (cozyops carries the parts over SSH), the content verified
    (documents per doctype, files with sizes and MD5s), then the switch (instances.yml, the
    target's site and certificate, DNS records checked on every authoritative server) and the
    target unblocked. The source stays blocked (MOVED) for --keep-days, then `cozyops apply`
    removes it.

    Every step is journaled in the fleet's state: a run interrupted at any point (even killed) is
    continued by the same command. --abort, before the switch, gives the source back.
    See docs/moves.md.
    """
    model = inventory.load(inventory.fleet_dir(fleet))
    # Re-entrant: the switch applies the instance's DNS records and deploys its site, which take
    # the fleet's lock themselves.
    with state.fleet_lock(model.state_dir, model.name, f"instance move {domain}", reentrant=True):
        report = _report if not json else (lambda step, message: None)
        with moves.Move(model, domain, None if abort else to, keep_days, site=_site, report=report) as job:
            if abort:
                outcome = job.abort()
                if json:
                    emit_json(outcome)
                else:
                    err_console.print(f"move of {job.domain} aborted: the source on {outcome['source']} answers "
                                      "again" + (f"; the copy on {outcome['target']} is removed"
                                                 if outcome["target_removed"] else ""), markup=False)
                return
            if not json:
                continuing = job.status() == "started"
                p = job.params
                err_console.print(f"{'continuing the ' if continuing else ''}move of {job.domain} from {p.source} "
                                  f"to {p.target} (source kept {p.keep_days} days):", markup=False)
                for step, status in job.plan():
                    err_console.print(f"  {'done' if status == 'done' else '    '}  {step}", markup=False)
            if not yes and job.status() != "started":
                if not sys.stdin.isatty() or not typer.confirm("Start the move?", err=True):
                    err_console.print("not started (--yes starts without asking)", markup=False)
                    raise typer.Exit(1)
            outcome = job.run()
    if json:
        emit_json(outcome)
    else:
        err_console.print(f"{job.domain} moved to {outcome['to']}; the source on {outcome['from']} stays blocked "
                          f"(MOVED) until {outcome.get('keep_until')}", markup=False)


def _report(step: str, message: str) -> None:
    err_console.print(f"{step}: {message}", markup=False)
