"""`cozyops plan` and `cozyops apply`: the whole fleet (servers, instances, DNS, certificates,
sites) in one reviewed plan with one checksum."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from cozyops import inventory
from cozyops.cli.render import PlainProgress, emit_json, err_console

FleetOption = typer.Option(None, "--fleet", envvar="COZYOPS_FLEET", file_okay=False,
                           help="The fleet directory (default: $COZYOPS_FLEET).")
CheckServers = typer.Option(False, "--check-servers", help="Check every server with Ansible (check mode), even "
                            "those whose provisioning inputs have not changed since their last good run.")

plan_app = typer.Typer()
apply_app = typer.Typer()


def _orchestrator(fleet: Path | None):
    from cozyops.fleet.orchestrator import Orchestrator

    root = inventory.fleet_dir(fleet)
    model = inventory.load(root)
    return Orchestrator(model, inventory.host_vars(root))


def _show(plan) -> None:
    """The plan, one line per change, on standard error."""
    p = lambda text: err_console.print(text, markup=False, soft_wrap=True)  # noqa: E731
    signs = {"create": "+", "update": "~", "delete": "-"}
    for name, view in sorted(plan.views.items()):
        if view.error:
            p(f"! server {name}: {view.error}")
        elif view.provisioning == "unchanged":
            p(f"  server {name}: provisioning inputs unchanged since its last good run (not checked; "
              "--check-servers checks it)")
    for change in plan.changes:
        if change.kind == "dns":
            continue
        key = " on ".join(reversed(change.key)) if change.kind == "site" else " on ".join(change.key)
        detail = ""
        if change.kind == "server":
            detail = f": {change.after.get('tasks', '?')} task(s) would change" if "tasks" in (change.after or {}) \
                else f": {change.after}"
        elif change.action == "update" and isinstance(change.before, dict) and isinstance(change.after, dict):
            detail = ": " + ", ".join(f"{k} {change.before.get(k)!r} -> {v!r}" for k, v in change.after.items())
        elif change.action == "create" and change.kind == "instance":
            detail = f" on {change.after['server']}"
        elif change.kind == "moved":
            detail = (f": the source of its move to {change.before['moved_to']}, kept until "
                      f"{change.before['kept_until']}" + ("" if change.before["present"] else " (gone already)"))
        p(f"{signs[change.action]} {change.kind} {key}{detail}")
    if plan.dns is not None:
        for change in plan.dns.changes:
            line = change.to_json(plan.dns.zone)
            p(f"{signs[change.action]} dns {line.get('name')} {line.get('type')} {' '.join(line.get('after') or [])}")
    for item in plan.conflicts:
        p(f"! {item['kind']} {item['name']} on {item['server']}: {item['why']} (left alone)")
    for item in plan.foreign:
        p(f"  not in the fleet: {item['domain']} on {item['server']} (never touched)")
    for item in plan.moves:
        if item["status"] == "started":
            p(f"  move of {item['domain']} from {item['source']} to {item['target']} under way: "
              f"{', '.join(item['steps_done']) or 'no step'} done, next {item['next']} (`cozyops instance move "
              f"{item['domain']} --to {item['target']}` continues it, `--abort` before the switch gives it back)")
        elif not item["removal_due"]:
            p(f"  {item['domain']} moved to {item['target']}: its source on {item['source']} stays blocked "
              f"(MOVED) until {item['keep_until']}, then apply removes it")
    counts = plan.counts()
    summary = ", ".join(f"{kind} +{c['create']} ~{c['update']} -{c['delete']}" for kind, c in counts.items()
                        if any(c.values()))
    p(f"plan {plan.checksum}: {summary or 'nothing to do'}")


@plan_app.command("plan")
def plan(
    fleet: Path = FleetOption,
    check_servers: bool = CheckServers,
    json: bool = typer.Option(False, "--json", help="Print the plan as JSON (and only JSON) on standard output."),
) -> None:
    """Plan the whole fleet: servers (provisioning in check mode), instances (create, change,
    remove: only those the fleet owns), DNS records, certificates (issue, renew, deploy) and nginx
    sites, with one checksum for `cozyops apply --checksum`. Changes nothing on the servers."""
    orchestrator = _orchestrator(fleet)
    try:
        result = orchestrator.plan(check_servers, progress=PlainProgress("plan"))
    finally:
        orchestrator.close()
    if json:
        emit_json(result.to_json())
    else:
        _show(result)
        verdict = result.unsafe(orchestrator.safety)
        if verdict:
            err_console.print(f"unsafe: {verdict} (apply needs --force)", markup=False, soft_wrap=True)


@apply_app.command("apply")
def apply(
    checksum: str = typer.Option(None, "--checksum", help="Apply only if the plan is still this one (from "
                                 "`cozyops plan`)."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
    force: bool = typer.Option(False, "--force", help="Apply a plan that removes or changes more than the "
                               "thresholds allow."),
    fleet: Path = FleetOption,
    check_servers: bool = CheckServers,
    json: bool = typer.Option(False, "--json", help="Print the result as JSON (and only JSON) on standard output."),
) -> None:
    """Apply what `cozyops plan` shows, in dependency order: servers, instances, DNS, sites, certificates;
    servers at once, instances per server with a bound. A failed item is reported and what does not
    depend on it carries on; exit 1 listing the failures, 2 for an unsafe plan without --force."""
    orchestrator = _orchestrator(fleet)
    try:
        with orchestrator.locked("cozyops apply"):
            result = orchestrator.plan(check_servers, progress=PlainProgress("plan"))
            orchestrator.approve(result, checksum, force)
            if result.empty:
                if json:
                    emit_json({"checksum": result.checksum, "done": [], "failed": [], "warnings": []})
                else:
                    err_console.print(f"plan {result.checksum}: nothing to do", markup=False)
                return
            if not json:
                _show(result)
            if checksum is None and not yes:
                if not sys.stdin.isatty():
                    raise typer.BadParameter("confirm with --yes (or review with `cozyops plan` and pass --checksum)",
                                             param_hint="--yes")
                typer.confirm(f"Apply plan {result.checksum}?", abort=True, err=True)
            report = orchestrator.apply(result, progress=PlainProgress("apply"))
    finally:
        orchestrator.close()
    _report(report, json)


def _report(report, json: bool) -> None:
    for domain, link in sorted(report.onboarding.items()):  # shown once, never logged
        err_console.print(f"{domain}: onboarding link {link}", markup=False, soft_wrap=True)
    if json:
        emit_json(report.to_json())
    else:
        for warning in report.warnings:
            err_console.print(f"warning: {warning}", markup=False, soft_wrap=True)
        err_console.print(f"applied plan {report.plan.checksum}: {len(report.done)} done, {len(report.failed)} "
                          "failed", markup=False)
    for kind, what, why in report.failed:
        err_console.print(f"failed: {kind} {what}: {why}", markup=False, soft_wrap=True)
    if report.failed:
        sys.exit(1)
