"""`cozyops dns`: the fleet's DNS records, planned, applied and checked."""

from __future__ import annotations

import sys
from pathlib import Path

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from cozyops import inventory
from cozyops.cli.render import emit_json, err_console
from cozyops.dns.manager import ApplyReport, DnsManager
from cozyops.dns.propagation import ServerReport
from cozyops.errors import CozyopsError
from cozyops.plan import CREATE, DELETE, Change, Plan

app = typer.Typer(
    help="""The fleet's DNS records: every instance's name and app subdomains (nested or flat), CAA
for its CA, each claimed by an ownership mark. `plan` shows what would change, `apply` writes it
by RFC 2136 (TSIG-signed, batched) and waits until every authoritative server serves it, `check`
asks every authoritative server. With the manual provider, `plan` prints a zone-file snippet to
paste at your DNS host.""",
    no_args_is_help=True,
)

FleetOption = typer.Option(
    None, "--fleet", envvar="COZYOPS_FLEET", file_okay=False,
    help="The fleet directory (default: $COZYOPS_FLEET).",
)
JsonOption = typer.Option(False, "--json", help="Print JSON (and only JSON) on standard output.")
AdoptOption = typer.Option(
    False, "--adopt", help="Take over records the fleet wants that exist without any owner's mark.",
)
SHOWN = 40  # change lines printed before "... and N more"

SIGNS = {CREATE: "+", "update": "~", DELETE: "-"}


def _manager(fleet: Path | None) -> DnsManager:
    return DnsManager(inventory.load(inventory.fleet_dir(fleet)))


def _change_line(change: Change, zone: str) -> str:
    from cozyops.dns.records import fqdn

    name = fqdn(change.name, zone)
    if change.action == CREATE:
        detail = f"{change.ttl} {', '.join(change.values)}"
    elif change.action == DELETE:
        detail = ", ".join(change.old_values)
    else:
        detail = f"{change.old_ttl} {', '.join(change.old_values)} -> {change.ttl} {', '.join(change.values)}"
    return f"{SIGNS[change.action]} {change.action:<6} {name} {change.rtype} {detail}"


def _print_plan(plan: Plan, where: str) -> None:
    counts = plan.counts()
    marks = len(plan.changes) - len(plan.record_changes)
    err_console.print(
        f"zone {plan.zone} at {where} (fleet {plan.fleet}): {counts[CREATE]} to create, {counts['update']} to "
        f"update, {counts[DELETE]} to delete, {len(plan.conflicts)} conflicts; the fleet owns {plan.owned} records"
        + (f" ({marks} ownership marks change)" if marks else ""),
        highlight=False, markup=False, soft_wrap=True)
    lines = [_change_line(change, plan.zone) for change in plan.record_changes]
    for line in lines[:SHOWN]:
        print(line)
    if len(lines) > SHOWN:
        print(f"  ... and {len(lines) - SHOWN} more (--json lists them all)")
    _print_conflicts(plan)


def _print_conflicts(plan: Plan) -> None:
    for conflict in plan.conflicts[:SHOWN]:
        from cozyops.dns.records import fqdn

        err_console.print(
            f"! conflict {fqdn(conflict.name, plan.zone)} {conflict.rtype}: {conflict.reason()}; not written",
            style="yellow", highlight=False, markup=False, soft_wrap=True)
    if len(plan.conflicts) > SHOWN:
        err_console.print(f"! ... and {len(plan.conflicts) - SHOWN} more conflicts", style="yellow", soft_wrap=True)


@app.command()
def plan(fleet: Path = FleetOption, json: bool = JsonOption, adopt: bool = AdoptOption) -> None:
    """Show what `apply` would change (read-only). Manual provider: the zone-file snippet to paste.

    The plan's checksum identifies it: `cozyops dns apply --checksum C` applies it only if it is
    still exactly this plan.
    """
    manager = _manager(fleet)
    with err_console.status(f"reading zone {manager.fleet.zone}"):
        the_plan = manager.plan(adopt=adopt)
    unsafe = the_plan.unsafe(manager.safety)
    if json:
        data = the_plan.to_json()
        data["unsafe"] = unsafe
        if manager.manual:
            data["snippet"] = manager.snippet()
        emit_json(data)
        return
    if manager.manual:
        sys.stdout.write(manager.snippet())
        err_console.print(f"{len(manager.desired())} record sets for zone {the_plan.zone}; "
                          f"checksum {the_plan.checksum}", highlight=False, soft_wrap=True)
        return
    _print_plan(the_plan, manager.provider().where)
    if unsafe:
        err_console.print(f"unsafe: {unsafe}; `apply` needs --force", style="red", highlight=False, soft_wrap=True)
    err_console.print(f"checksum {the_plan.checksum}: `cozyops dns apply --checksum {the_plan.checksum}` "
                      "applies exactly this plan", highlight=False, soft_wrap=True)


def _confirm(the_plan: Plan) -> None:
    if not sys.stdin.isatty():
        raise CozyopsError(f"plan for zone {the_plan.zone}", "not applied: no terminal to confirm on",
                           "pass --yes to apply without confirmation")
    if not typer.confirm(f"Apply these {len(the_plan.record_changes)} changes?", default=False, err=True):
        raise CozyopsError(f"plan for zone {the_plan.zone}", "not applied: declined at the prompt")


def _server_lines(reports: list[ServerReport]) -> None:
    for report in reports:
        mark = "[green]ok[/green]" if report.ok else "[red]not ok[/red]"
        err_console.print(f"  {mark} {report.name} ({report.address or 'no address'}): ", end="", soft_wrap=True)
        err_console.print(report.summary(), highlight=False, markup=False, soft_wrap=True)


@app.command()
def apply(
    fleet: Path = FleetOption,
    yes: bool = typer.Option(False, "--yes", "-y", help="Apply without asking."),
    force: bool = typer.Option(False, "--force", help="Apply even a plan the safety rule refuses."),
    checksum: str = typer.Option(None, "--checksum", help="Apply only if the plan still has this checksum."),
    adopt: bool = AdoptOption,
    wait: bool = typer.Option(True, "--wait/--no-wait", help="Wait until every authoritative server serves it."),
    timeout: float = typer.Option(None, "--timeout", help="Propagation deadline in seconds "
                                  "(default: cozy_dns.propagation_timeout, 120)."),
    json: bool = JsonOption,
) -> None:
    """Write the plan to the zone (RFC 2136), then wait until every authoritative server serves it.

    Refused with exit 2 when it would delete or update more than cozy_dns.unsafe_changes (10)
    records and more than cozy_dns.unsafe_percent (30) % of those the fleet owns, unless --force.
    One run at a time per fleet. A failed batch is journaled (<fleet>/.cozyops/state.db); running
    apply again converges.
    """
    manager = _manager(fleet)
    provider = manager.writer()
    with manager.locked("cozyops dns apply"):
        with err_console.status(f"reading zone {manager.fleet.zone} at {provider.where}"):
            the_plan = manager.plan(adopt=adopt)
        if not json:
            _print_plan(the_plan, provider.where)
        manager.approve(the_plan, checksum, force)
        if not the_plan.changes:
            report = ApplyReport(the_plan, manager.apply(the_plan))  # (removes stale challenge values)
            if not json:
                err_console.print("no changes", style="green", soft_wrap=True)
        else:
            if not yes:
                _confirm(the_plan)
            report = _apply_with_progress(manager, the_plan, wait, timeout, json)
    if json:
        emit_json(_report_json(report))
    else:
        _print_report(report)
        for problem in manager.cleanup_problems:
            err_console.print(f"! challenge cleanup: {problem}", style="yellow", markup=False, soft_wrap=True)
    _exit_status(report)


def _apply_with_progress(manager: DnsManager, the_plan: Plan, wait: bool, timeout: float | None,
                         quiet: bool) -> ApplyReport:
    progress = Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=err_console.rich, transient=quiet,
    )
    with progress:
        task = progress.add_task(f"applying to {the_plan.zone}", total=len(the_plan.changes))
        waiting = None

        def on_batch(outcome) -> None:
            progress.advance(task, len(outcome.changes))

        def on_wait(reports: list[ServerReport]) -> None:
            nonlocal waiting
            done = sum(report.ok for report in reports)
            if waiting is None:
                waiting = progress.add_task("authoritative servers serving it", total=len(reports))
            progress.update(waiting, completed=done)

        return manager.apply_and_wait(the_plan, wait=wait, deadline=timeout, on_batch=on_batch, on_wait=on_wait)


def _report_json(report: ApplyReport) -> dict:
    the_plan = report.plan
    return {
        "fleet": the_plan.fleet,
        "zone": the_plan.zone,
        "checksum": the_plan.checksum,
        "summary": {**the_plan.counts(), "conflicts": len(the_plan.conflicts)},
        "applied": report.result.applied,
        "batches": len(report.result.batches),
        "failed": [
            {"batch": batch.index, "changes": len(batch.changes), "error": batch.error}
            for batch in report.result.failed
        ],
        "conflicts": [conflict.to_json(the_plan.zone) for conflict in the_plan.conflicts],
        "propagation": {
            "waited": report.waited,
            "ok": report.propagated,
            "servers": [server.to_json() for server in report.propagation],
        },
        "seconds": {key: round(value, 3) for key, value in report.timings.items()},
    }


def _print_report(report: ApplyReport) -> None:
    result = report.result
    if result.batches:
        err_console.print(
            f"applied {result.applied} of {len(report.plan.changes)} changes in {len(result.batches)} "
            f"messages ({report.timings.get('apply', 0):.2f} s)", highlight=False, soft_wrap=True)
    for batch in result.failed:
        err_console.print(f"batch {batch.index + 1} ({len(batch.changes)} changes) failed: {batch.error}",
                          style="red", highlight=False, markup=False, soft_wrap=True)
    if report.waited:
        verdict = "served by every authoritative server" if report.propagated else "NOT served everywhere"
        err_console.print(f"{verdict} ({report.timings.get('propagation', 0):.2f} s):", highlight=False, soft_wrap=True)
        _server_lines(report.propagation)


def _exit_status(report: ApplyReport) -> None:
    plan = report.plan
    problems = []
    if report.result.failed:
        problems.append(f"{len(report.result.failed)} batch(es) failed (journaled; run apply again)")
    if report.waited and not report.propagated:
        late = [f"{r.name} ({r.address})" for r in report.propagation if not r.ok]
        problems.append("not yet served by " + ", ".join(late))
    if plan.conflicts:
        problems.append(f"{len(plan.conflicts)} record(s) not written: they belong to another owner")
    if problems:
        raise CozyopsError(f"dns apply for zone {plan.zone}", "; ".join(problems))


@app.command()
def check(fleet: Path = FleetOption, json: bool = JsonOption) -> None:
    """Ask every authoritative server of the zone for every record the fleet needs.

    The servers are the zone's NS records, or cozy_dns.nameservers. Exit 1 unless all serve all.
    """
    manager = _manager(fleet)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  console=err_console.rich, transient=True) as progress:
        task = progress.add_task("asking the authoritative servers", total=None)

        def advance(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        reports = manager.check(advance)
    ok = bool(reports) and all(report.ok for report in reports)
    if json:
        emit_json({"fleet": manager.fleet.name, "zone": manager.fleet.zone, "ok": ok,
                   "records": len(manager.desired()), "servers": [report.to_json() for report in reports]})
    else:
        err_console.print(f"zone {manager.fleet.zone}: {len(manager.desired())} record sets on "
                          f"{len(reports)} authoritative servers", highlight=False, soft_wrap=True)
        _server_lines(reports)
    if not ok:
        bad = [f"{r.name} ({r.address})" for r in reports if not r.ok] or ["no server"]
        raise CozyopsError(f"dns check for zone {manager.fleet.zone}", "not served as planned by " + ", ".join(bad))
