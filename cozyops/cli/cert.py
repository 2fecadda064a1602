"""`cozyops cert`: the fleet's wildcard certificates, issued, renewed, listed and deployed."""

from __future__ import annotations

import datetime
from pathlib import Path

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from cozyops import inventory
from cozyops.cli.render import emit_json, err_console
from cozyops.errors import CozyopsError
from cozyops.tls.manager import CertManager, CertPlan, RunResult, Status, now_utc

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
    now = now_utc()
    rows = [_row(manager, status, now) for status in manager.statuses(manager.specs(names), now)]
    if json:
        emit_json(rows)
        return
    if not rows:
        err_console.print("no certificates: the fleet has no instances", soft_wrap=True)
    for row in rows:
        if row["not_after"]:
            print(f"{row['name']:<40} {row['status']:<8} {row['days_left']:>6} days left, "
                  f"renew from {row['next_renewal']}  {row['fullchain']}")
        else:
            print(f"{row['name']:<40} {row['status']}")


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
        return RunResult()
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=err_console, transient=quiet) as progress:
        task = progress.add_task("certificates", total=len(plan.todo))

        def advance(stage: str, done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        return manager.execute(plan.todo, advance)


def _report(manager: CertManager, plan: CertPlan, result: RunResult, json: bool, key: str) -> None:
    if json:
        emit_json({
            **plan.to_json(),
            key: sorted(result.issued),
            "failed": result.failed,
            "cleanup_problems": result.cleanup_problems,
            "seconds": round(result.seconds, 3),
            "timings": {stage: round(seconds, 3) for stage, seconds in result.timings.items()},
            "certificates": {name: str(manager.store.fullchain(name)) for name in sorted(result.issued)},
        })
    else:
        for name in sorted(result.issued):
            record = result.issued[name]
            err_console.print(f"{name}: serial {record.serial}, until {_iso(record.not_after)}",
                              highlight=False, markup=False, soft_wrap=True)
        if result.issued:
            err_console.print(f"{len(result.issued)} certificates in {result.seconds:.2f} s",
                              style="green", highlight=False, soft_wrap=True)
        for problem in result.cleanup_problems:
            err_console.print(f"! challenge cleanup: {problem}", style="yellow", markup=False, soft_wrap=True)
    problems = [f"{name}: {reason}" for name, reason in sorted(result.failed.items())]
    if plan.refused:
        problems.append(f"{len(plan.refused)} over the weekly budget: " + ", ".join(s.name for s in plan.refused))
    if problems:
        raise CozyopsError(f"{len(problems)} certificate(s) not done", "; ".join(problems))


@app.command()
def issue(names: list[str] = NamesArgument, fleet: Path = FleetOption, json: bool = JsonOption,
          force: bool = typer.Option(False, "--force", help="Issue again even when not due."),
          dry_run: bool = typer.Option(False, "--dry-run", help="Show what would be issued; change nothing.")) -> None:
    """Issue the missing and due certificates (NAMEs: only those; --force: even when valid)."""
    manager = _manager(fleet)
    with manager.locked("cozyops cert issue"):
        plan = manager.plan(names, force=force)
        _print_plan(plan, "issued")
        result = RunResult() if dry_run else _run(manager, plan, json)
    _report(manager, plan, result, json, "issued")


@app.command()
def renew(names: list[str] = NamesArgument, fleet: Path = FleetOption, json: bool = JsonOption,
          dry_run: bool = typer.Option(False, "--dry-run", help="Show what is due; change nothing.")) -> None:
    """Renew the certificates that are due: in the CA's ARI window (RFC 9773) when it offers one,
    else when a third of the lifetime is left. Safe to run from a daily timer."""
    manager = _manager(fleet)
    with manager.locked("cozyops cert renew"):
        plan = manager.plan(names, renew_only=True)
        _print_plan(plan, "renewed")
        result = RunResult() if dry_run else _run(manager, plan, json)
    _report(manager, plan, result, json, "renewed")
