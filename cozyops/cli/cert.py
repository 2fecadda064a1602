"""`cozyops cert`: the fleet's wildcard certificates, issued, renewed, listed and deployed."""

from __future__ import annotations

import contextlib
import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from cozyops import inventory
from cozyops.cli.render import PlainProgress, emit_json, err_console
from cozyops.errors import CozyopsError
from cozyops.state import LockedError
from cozyops.tls.manager import CertManager, CertPlan, RunResult, Status, now_utc

if TYPE_CHECKING:
    from cozyops.tls.deploy import Deployed, FleetDeployment

app = typer.Typer(
    help="""The fleet's TLS certificates: one wildcard certificate per instance (nested mode:
alice.ZONE and *.alice.ZONE) or per parent name (flat mode: ZONE and *.ZONE), from the fleet's
ACME directory (cozy_acme) by DNS-01 challenges written with the fleet's DNS provider. Each
certificate has its own key. Certificates and keys live in <fleet>/.cozyops/certs/<name>/.""",
    no_args_is_help=True,
)

FleetOption = typer.Option(
    None, "--fleet", envvar="COZYOPS_FLEET", file_okay=False,
    help="The fleet directory (default: $COZYOPS_FLEET).",
)
JsonOption = typer.Option(False, "--json", help="Print JSON (and only JSON) on standard output.")
NamesArgument = typer.Argument(None, help="Certificate names or instance domains (default: every one).")
DeployOption = typer.Option(False, "--deploy", help="Then deploy what was issued to its servers (as `cert deploy`).")


def _manager(fleet: Path | None) -> CertManager:
    return CertManager(inventory.load(inventory.fleet_dir(fleet)))


def _iso(moment: datetime.datetime | None) -> str | None:
    return moment.isoformat(timespec="seconds") if moment else None


def _row(manager: CertManager, status: Status, now: datetime.datetime) -> dict:
    record = status.record
    return {
        "name": status.spec.name,
        "names": list(status.spec.domains),
        "status": status.status,
        "not_after": _iso(record.not_after) if record else None,
        "days_left": round((record.not_after - now).total_seconds() / 86400, 1) if record else None,
        "next_renewal": _iso(status.next_renewal),
        "renewal_source": ("ari" if record and record.ari else "one third of the lifetime left") if record else None,
        "serial": record.serial if record else None,
        "issuer": record.issuer if record else None,
        "fullchain": str(manager.store.fullchain(status.spec.name)) if record else None,
        "privkey": str(manager.store.privkey(status.spec.name)) if record else None,
        "instances": list(status.spec.instances),
    }


@app.command("ls")
def ls(names: list[str] = NamesArgument, fleet: Path = FleetOption, json: bool = JsonOption) -> None:
    """List the fleet's certificates: names, expiry, days left, next renewal, status, files.

    Reads only the fleet's state (no network): `cert renew` asks the CA for its renewal windows.
    """
    manager = _manager(fleet)
    with contextlib.suppress(LockedError), manager.locked("cozyops cert ls"):
        _recover(manager, json)  # (when another run holds the fleet, it does that itself)
    now = now_utc()
    rows = [_row(manager, status, now) for status in manager.statuses(manager.specs(names), now)]
    if json:
        emit_json(rows)
        return
    if not rows:
        err_console.print("no certificates: the fleet has no instances", markup=False, soft_wrap=True)
    for row in rows:
        if row["not_after"]:
            print(f"{row['name']:<40} {row['status']:<8} {row['days_left']:>6} days left, "
                  f"renew from {row['next_renewal']}  {row['fullchain']}")
        else:
            print(f"{row['name']:<40} {row['status']}")


def _recover(manager: CertManager, quiet: bool) -> None:
    """After an interrupted run: certificate files without their row adopted (or reported)."""
    found = manager.recover()
    if quiet:
        return
    if found.adopted:
        err_console.print(f"adopted after an interrupted run: {', '.join(found.adopted)}",
                          highlight=False, markup=False, soft_wrap=True)
    for name, why in sorted(found.broken.items()):
        err_console.print(f"! certificate {name}: {why}; it is issued again", style="yellow",
                          highlight=False, markup=False, soft_wrap=True)


def _resume(manager: CertManager, quiet: bool) -> None:
    """Certificates an interrupted run had the CA issue without keeping them: fetched and kept."""
    kept, problems = manager.resume_orders()
    if quiet:
        return
    if kept:
        err_console.print(f"kept from an interrupted run's orders: {', '.join(kept)}",
                          highlight=False, markup=False, soft_wrap=True)
    for problem in problems:
        err_console.print(f"! {problem}", style="yellow", highlight=False, markup=False, soft_wrap=True)


def _print_plan(plan: CertPlan, verb: str) -> None:
    issue = [spec.name for spec, renewal in plan.todo if not renewal]
    renew = [spec.name for spec, renewal in plan.todo if renewal]
    budget = plan.verdict
    line = f"{len(issue)} to issue, {len(renew)} to renew from {plan.directory}"
    if budget.limit is not None:
        left = ", ".join(f"{domain}: {count}" for domain, count in sorted(budget.left.items())) or "untouched"
        line += f"; budget {budget.limit} new certificates per registered domain per week, left after this: {left}"
    err_console.print(line, highlight=False, markup=False, soft_wrap=True)
    for spec in plan.refused:
        err_console.print(f"! {spec.name}: over the weekly budget of new certificates; not {verb}",
                          style="yellow", highlight=False, markup=False, soft_wrap=True)


def _run(manager: CertManager, plan: CertPlan, quiet: bool) -> RunResult:
    if not plan.todo:
        return manager.execute([])  # (removes what an interrupted run left in the zone)
    if err_console.plain():
        return manager.execute(plan.todo, PlainProgress("certificates"))
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=err_console.rich, transient=quiet) as progress:
        task = progress.add_task("certificates", total=len(plan.todo))

        def advance(stage: str, done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        return manager.execute(plan.todo, advance)


def _report(manager: CertManager, plan: CertPlan, result: RunResult, json: bool, key: str,
            deployed: FleetDeployment | None = None) -> None:
    if json:
        emit_json({
            **plan.to_json(),
            key: sorted(result.issued),
            "failed": result.failed,
            "cleanup_problems": result.cleanup_problems,
            "seconds": round(result.seconds, 3),
            "timings": {stage: round(seconds, 3) for stage, seconds in result.timings.items()},
            "certificates": {name: str(manager.store.fullchain(name)) for name in sorted(result.issued)},
            **({"deployed": _rows(deployed), "deploy_failed": deployed.failed} if deployed else {}),
        })
    else:
        for name in sorted(result.issued):
            record = result.issued[name]
            err_console.print(f"{name}: serial {record.serial}, until {_iso(record.not_after)}",
                              highlight=False, markup=False, soft_wrap=True)
        if result.issued:
            err_console.print(f"{len(result.issued)} certificates in {result.seconds:.2f} s",
                              style="green", markup=False, highlight=False, soft_wrap=True)
        for problem in result.cleanup_problems:
            err_console.print(f"! challenge cleanup: {problem}", style="yellow", markup=False, soft_wrap=True)
    problems = [f"{name}: {reason}" for name, reason in sorted(result.failed.items())]
    if deployed:
        problems += [f"deploy {what}: {why}" for what, why in sorted(deployed.failed.items())]
    if plan.refused:
        problems.append(f"{len(plan.refused)} over the weekly budget: " + ", ".join(s.name for s in plan.refused))
    if problems:
        raise CozyopsError(f"{len(problems)} certificate(s) not done", "; ".join(problems))


@app.command()
def issue(names: list[str] = NamesArgument, fleet: Path = FleetOption, json: bool = JsonOption,
          force: bool = typer.Option(False, "--force", help="Issue again even when not due."),
          dry_run: bool = typer.Option(False, "--dry-run", help="Show what would be issued; change nothing."),
          deploy: bool = DeployOption) -> None:
    """Issue the missing and due certificates (NAMEs: only those; --force: even when valid)."""
    _issue_or_renew(fleet, json, dry_run, deploy, "issue", names=names, force=force)


@app.command()
def renew(names: list[str] = NamesArgument, fleet: Path = FleetOption, json: bool = JsonOption,
          dry_run: bool = typer.Option(False, "--dry-run", help="Show what is due; change nothing."),
          deploy: bool = DeployOption) -> None:
    """Renew the certificates that are due: in the CA's ARI window (RFC 9773) when it offers one,
    else when a third of the lifetime is left; with HTTP-01, also those whose instance's apps changed
    (issued again with the new names). Safe to run from a daily timer (with --deploy, the renewed
    certificates go to their servers and nginx is reloaded)."""
    _issue_or_renew(fleet, json, dry_run, deploy, "renew", names=names, renew_only=True)


def _issue_or_renew(fleet: Path | None, json: bool, dry_run: bool, deploy: bool, command: str, **plan) -> None:
    """`cert issue` and `cert renew`: plan under the fleet's lock, run, deploy what was done, report."""
    done = {"issue": "issued", "renew": "renewed"}[command]
    manager = _manager(fleet)
    with manager.locked(f"cozyops cert {command}"):
        if not dry_run:
            _recover(manager, json)
            _resume(manager, json)
        the_plan = manager.plan(**plan)
        _print_plan(the_plan, done)
        result = RunResult() if dry_run else _run(manager, the_plan, json)
        deployed = _deploy(manager, sorted(result.issued), None, json) if deploy and result.issued else None
    _report(manager, the_plan, result, json, done, deployed)


def _deploy(manager: CertManager, names: list[str], servers: list[str] | None, quiet: bool) -> FleetDeployment:
    """Each certificate to the servers of its instances (tls.deploy.deploy_fleet), each one said
    as it is done unless ``quiet``."""
    from cozyops.tls.deploy import deploy_fleet

    def said(server: str, outcome: Deployed) -> None:
        what = "deployed, nginx reloaded, served" if outcome.changed else "unchanged, served"
        err_console.print(f"{outcome.name} on {server}: serial {outcome.serial}, {what}",
                          markup=False, highlight=False, soft_wrap=True)

    return deploy_fleet(manager.fleet, manager.store, manager.specs(names), servers, None if quiet else said)


def _rows(deployment: FleetDeployment) -> list[dict]:
    return [{"name": outcome.name, "server": server, "serial": outcome.serial, "changed": outcome.changed,
             "fullchain": outcome.fullchain, "privkey": outcome.privkey} for server, outcome in deployment.deployed]


@app.command("deploy")
def deploy_command(names: list[str] = NamesArgument, fleet: Path = FleetOption, json: bool = JsonOption,
                   server: list[str] = typer.Option(None, "--server", help="Only to this server (repeatable)."),
                   ) -> None:
    """Install the certificates on the servers of their instances (over SSH, or locally for
    `ansible_connection: local`): files under cozy_acme.deploy_dir (default /etc/ssl/cozyops), `nginx -t`,
    one reload per server (cozy_acme.nginx_reload), then a TLS handshake with SNI must show each new
    certificate. A certificate nginx refuses keeps the previous files; one already in place and served
    is left alone."""
    manager = _manager(fleet)
    with manager.locked("cozyops cert deploy"):
        result = _deploy(manager, names, server, json)
    if json:
        emit_json({"deployed": _rows(result), "failed": result.failed})
    elif not result.deployed and not result.failed:
        err_console.print("nothing to deploy: no certificate has a server", markup=False, soft_wrap=True)
    if result.failed:
        raise CozyopsError(f"{len(result.failed)} deployment(s) not done",
                           "; ".join(f"{what}: {why}" for what, why in sorted(result.failed.items())))
