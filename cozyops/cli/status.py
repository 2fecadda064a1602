"""`cozyops status`: the fleet at a glance, as text, JSON, an HTML page or node_exporter metrics."""

from __future__ import annotations

from pathlib import Path

import typer

from cozyops import files, inventory
from cozyops.cli.render import emit_json, err_console

app = typer.Typer(add_completion=False)

FleetOption = typer.Option(
    None, "--fleet", envvar="COZYOPS_FLEET", file_okay=False,
    help="The fleet directory (default: $COZYOPS_FLEET).",
)


@app.command("status")
def status(
    fleet: Path = FleetOption,
    json: bool = typer.Option(False, "--json", help="Print JSON (and only JSON) on standard output."),
    html: Path = typer.Option(None, "--html", dir_okay=False, metavar="FILE",
                              help="Write the status page: one self-contained HTML file with charts."),
    prometheus: Path = typer.Option(None, "--prometheus", dir_okay=False, metavar="FILE",
                                    help="Write node_exporter textfile metrics (a .prom file, replaced "
                                         "atomically)."),
    dns: bool = typer.Option(True, "--dns/--no-dns", help="Read the zone for the DNS drift (default: yes)."),
) -> None:
    """The fleet at a glance: servers (reachable, cozy-stack version, instances, disk), instances
    (state, quota use), certificates by days left, DNS drift (the record changes the DNS plan
    would make), and the last runs (provisioning and upgrade runs, the journal).

    Every server is asked over its transport (in parallel). Exit 0 whatever the fleet's state:
    the report says what needs attention ("ok" in JSON).
    """
    from cozyops.status import collect, report

    model = inventory.load(inventory.fleet_dir(fleet))
    if json:
        result = collect.collect(model, dns=dns)
    else:
        with err_console.status(f"asking {len(model.servers)} server(s) of fleet {model.name}"):
            result = collect.collect(model, dns=dns)
    if html is not None:
        from cozyops.status import html as page

        files.write_atomic(html, page.render(result))
    if prometheus is not None:
        files.write_atomic(prometheus, report.prometheus(result))
    if json:
        emit_json(result.to_json())
        return
    _text(result)
    for path, what in ((html, "status page"), (prometheus, "metrics")):
        if path is not None:
            err_console.print(f"{what} written to {path}", markup=False, soft_wrap=True)


def _text(result) -> None:
    out = []
    summary = result.summary()
    out.append(f"fleet {result.fleet} ({result.zone}): {'all good' if result.ok else 'needs attention'}")
    out.append(f"servers: {summary['servers_healthy']}/{summary['servers']} healthy")
    for s in result.servers:
        if not s.reachable:
            out.append(f"  {s.name:<12} unreachable: {s.error}")
            continue
        disk = (f", disk {100 * s.disk['used'] / s.disk['size']:.0f}% used" if s.disk and s.disk["size"] else "")
        out.append(f"  {s.name:<12} {s.status or '?':<4} cozy-stack {s.version or '?'}, "
                   f"{s.instances} instance(s){disk}")
    states = ", ".join(f"{count} {state}" for state, count in summary["instances"].items() if count) or "none"
    out.append(f"instances: {states}")
    for i in result.instances:
        if i.state not in ("ready", "onboarding"):
            out.append(f"  {i.domain}: {i.state}" + (f" (server {i.server})" if i.server else ""))
    out.append(f"certificates: {len(result.certificates)}")
    for c in result.certificates:
        days = f"{c.days_left:.1f} days left" if c.days_left is not None else "not issued"
        out.append(f"  {c.name:<40} {c.status:<8} {days}")
    if result.dns.checked:
        out.append(f"dns: {len(result.dns.changes)} record change(s) pending"
                   + (f", {result.dns.conflicts} conflict(s)" if result.dns.conflicts else ""))
    else:
        out.append(f"dns: not checked: {result.dns.error}")
    for run in result.runs[:5]:
        out.append(f"run {run.at} {run.kind}: {run.outcome}" + (f" ({' '.join(run.hosts)})" if run.hosts else ""))
    for problem in result.problems:
        out.append(f"not collected: {problem}")
    print("\n".join(out))
