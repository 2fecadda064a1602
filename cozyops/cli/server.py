"""`cozyops server`: the fleet's servers, provisioned with Ansible (playbooks/site.yml)."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from cozyops import inventory
from cozyops.cli.render import emit_json, err_console
from cozyops.servers import provision as prov

app = typer.Typer(
    help="""The fleet's servers. `provision` turns fresh Debian servers into Cozy servers with the
roles of playbooks/site.yml (base, couchdb, cozy_stack, nginx) through ansible-runner; the same
playbook runs with plain `ansible-playbook -i <fleet> playbooks/site.yml`. `upgrade` upgrades
cozy-stack a batch of servers at a time (playbooks/upgrade.yml), checking their health between
batches.""",
    no_args_is_help=True,
)


@app.callback()
def _group() -> None:
    """Keeps `server` a group of commands (provision, upgrade)."""


FleetOption = typer.Option(
    None, "--fleet", envvar="COZYOPS_FLEET", file_okay=False,
    help="The fleet directory (default: $COZYOPS_FLEET).",
)
HostsArgument = typer.Argument(None, help="Servers of the inventory (default: every one).")


class _Live:
    """A live table on a terminal: one row per host, its counts and current task."""

    def __init__(self, hosts: list[str]) -> None:
        from rich.live import Live

        self.rows = {host: {s: 0 for s in prov.STATUSES} | {"task": ""} for host in hosts}
        self.live = Live(self._table(), console=err_console.rich, refresh_per_second=4, transient=True)

    def _table(self):
        from rich.table import Table

        table = Table("host", "ok", "changed", "failed", "unreachable", "task", box=None)
        for host, row in self.rows.items():
            table.add_row(host, str(row["ok"]), str(row["changed"]), str(row["failed"]),
                          str(row["unreachable"]), row["task"])
        return table

    def __call__(self, result: prov.TaskResult) -> None:
        row = self.rows.setdefault(result.host, {s: 0 for s in prov.STATUSES} | {"task": ""})
        row[result.status] += 1
        row["task"] = result.task
        self.live.update(self._table())


def _plain(result: prov.TaskResult) -> None:
    """One line per task and host, for a pipe or a log."""
    line = f"{result.host}: {result.status:<11} {result.task}"
    if result.message:
        line += f": {result.message}"
    err_console.print(line, markup=False, soft_wrap=True)


@app.command("provision")
def provision(
    hosts: list[str] = HostsArgument,
    check: bool = typer.Option(False, "--check", help="Show what would change; change nothing."),
    diff: bool = typer.Option(False, "--diff", help="Show the changes to files (with --check: would-be changes)."),
    forks: int = typer.Option(0, "--forks", min=0, help="Servers worked on at once (default: all named)."),
    keep: int = typer.Option(prov.DEFAULT_KEEP, "--keep-runs", min=1,
                             help="Runs whose artifacts are kept in <fleet>/.cozyops/runs/."),
    fleet: Path = FleetOption,
    json: bool = typer.Option(False, "--json", help="Print JSON (and only JSON) on standard output."),
) -> None:
    """Provision servers: apt sources and base packages, firewall (SSH, HTTP, HTTPS), CouchDB,
    cozy-stack (its admin passphrase made on the server, never shown) and nginx (a site per
    instance, or the zone's wildcard in flat mode), by the roles of playbooks/site.yml.

    Every run's artifacts (events, output) are kept in <fleet>/.cozyops/runs/<run>/. A server that
    fails is named with its task and message, the others carry on; exit 1 when any failed.
    """
    model = inventory.load(inventory.fleet_dir(fleet))
    targets = prov.hosts_to_run(model, hosts)
    live = None
    if json:
        progress = lambda _: None  # noqa: E731
    elif err_console.plain():
        progress = _plain
    else:
        live = _Live(targets)
        progress = live
    if live is not None:
        with live.live:
            result = prov.provision(model, targets, check=check, diff=diff, forks=forks or None, keep=keep,
                                    progress=progress)
    else:
        result = prov.provision(model, targets, check=check, diff=diff, forks=forks or None, keep=keep,
                                progress=progress)
    if json:
        emit_json(result.to_json())
    else:
        _summary(result, check)
    if result.failed:
        sys.exit(1)


def _summary(result: prov.ProvisionResult, check: bool) -> None:
    from rich.table import Table

    table = Table("host", "ok", "changed", "failed", "unreachable", box=None)
    for host, summary in result.hosts.items():
        table.add_row(host, str(summary.ok), str(summary.changed), str(summary.failed), str(summary.unreachable))
    err_console.print(table)
    for host, summary in result.hosts.items():
        for failure in summary.failures:
            err_console.print(f"{host}: {failure.status} at task {failure.task!r}: {failure.message}",
                              markup=False, soft_wrap=True)
    verb = "would change" if check else "changed"
    changed = sum(s.changed for s in result.hosts.values())
    err_console.print(f"run {result.run} ({result.seconds:.1f} s): {changed} task(s) {verb}; "
                      f"artifacts in {result.artifacts}", markup=False, soft_wrap=True)


@app.command("upgrade")
def upgrade(
    hosts: list[str] = HostsArgument,
    to: str = typer.Option(None, "--to", metavar="VERSION",
                           help="The cozy-stack package version to install (an older one rolls back). "
                                "Default: the fleet's cozy_stack_version, else the newest."),
    batch: int = typer.Option(1, "--batch", min=1, help="Servers upgraded at once."),
    pause: float = typer.Option(0.0, "--pause", min=0, metavar="S", help="Seconds to wait between batches."),
    keep: int = typer.Option(prov.DEFAULT_KEEP, "--keep-runs", min=1,
                             help="Runs whose artifacts are kept in <fleet>/.cozyops/runs/."),
    fleet: Path = FleetOption,
    json: bool = typer.Option(False, "--json", help="Print JSON (and only JSON) on standard output."),
) -> None:
    """Upgrade cozy-stack, a rolling upgrade: BATCH servers at a time (in the order named, default
    every server in name order) by playbooks/upgrade.yml (role cozy_stack), a health check around
    each batch: /status answers, the version running is the package installed, the instance count
    is unchanged, one instance's app host answers through nginx.

    The first batch that fails stops the run, naming the server and what failed; the servers of
    later batches are not touched (exit 1). To continue or roll back, see docs/upgrades.md.
    """
    from cozyops.servers import upgrade as upg

    model = inventory.load(inventory.fleet_dir(fleet))
    targets = prov.hosts_to_run(model, hosts)
    quiet = lambda _: None  # noqa: E731
    said = quiet if json else (lambda line: err_console.print(line, markup=False, soft_wrap=True))
    progress = quiet if json else _plain if err_console.plain() else None
    if progress is None:
        live = _Live(targets)
        with live.live:
            result = upg.upgrade(model, targets, to=to, batch=batch, pause=pause, keep=keep, progress=live,
                                 report=said)
    else:
        result = upg.upgrade(model, targets, to=to, batch=batch, pause=pause, keep=keep, progress=progress,
                             report=said)
    if json:
        emit_json(result.to_json())
    else:
        _upgrade_summary(result)
    if result.failed:
        sys.exit(1)


def _upgrade_summary(result) -> None:
    for outcome in result.batches:
        for host in outcome.hosts:
            before, after = outcome.before.get(host), outcome.after.get(host)
            version = (f"{before.package or '?'} -> {after.package or '?'}" if before and after
                       else (before.package if before else "?"))
            count = after.instances if after else before.instances if before else None
            state = "failed" if host in outcome.failures else "ok" if after else "not upgraded"
            err_console.print(f"batch {outcome.number} {host}: {state}, cozy-stack {version}, "
                              f"{count if count is not None else '?'} instance(s)", markup=False, soft_wrap=True)
    stop = result.stopped_at
    if stop is None:
        err_console.print(f"upgraded {sum(len(b.hosts) for b in result.batches)} server(s) in "
                          f"{len(result.batches)} batch(es) ({result.seconds:.1f} s)", markup=False, soft_wrap=True)
        return
    stage = {"ansible": "during its upgrade", "health": "in the health check after its upgrade"}[stop.stage]
    err_console.print(f"upgrade stopped at batch {stop.number} ({', '.join(stop.hosts)}), {stage}:",
                      markup=False, soft_wrap=True)
    for host, reasons in stop.failures.items():
        for reason in reasons:
            err_console.print(f"  {host or 'the run'}: {reason}", markup=False, soft_wrap=True)
    if result.untouched:
        err_console.print(f"not touched: {', '.join(result.untouched)}", markup=False, soft_wrap=True)
    old = sorted({o.package for o in stop.before.values() if o.package})
    if old:
        err_console.print(f"roll back: cozyops server upgrade --to {old[0]} {' '.join(stop.hosts)}; "
                          "continue after a fix: see docs/upgrades.md", markup=False, soft_wrap=True)
