"""`cozyops lab`: the local lab, the embedded default to try everything on."""

from __future__ import annotations

import os
import shlex
import time
from contextlib import nullcontext
from pathlib import Path

import typer
from rich.table import Table

from cozyops import paths
from cozyops.cli.render import emit_json, err_console
from cozyops.errors import LabError
from cozyops.lab import demo as lab_demo
from cozyops.lab import jsclient as lab_jsclient
from cozyops.lab import pouchdb as lab_pouchdb
from cozyops.lab import rootfs as lab_rootfs
from cozyops.lab import setup as lab_setup
from cozyops.lab.lab import DEFAULT_HOSTS, Lab

app = typer.Typer(
    help="""The local lab: BIND 9 and Knot DNS (each primary of one zone and secondary of the
other, TSIG-signed updates and transfers), pebble (Let's Encrypt's test CA) and Debian hosts
h1..hN reached over SSH, in network namespaces of their own, plus a ready fleet directory
pointing at them. Needs root.""",
    no_args_is_help=True,
)

IdOption = typer.Option(
    None, "--id", envvar="COZYOPS_LAB_ID", help="The lab's id (default: lab). Names its namespaces and subnet."
)
DirOption = typer.Option(
    None,
    "--dir",
    envvar="COZYOPS_LAB_DIR",
    help="The lab's directory (default: $XDG_STATE_HOME/cozyops/labs/ID).",
    file_okay=False,
)
JsonOption = typer.Option(False, "--json", help="Print JSON (and only JSON) on standard output.")


def _step(message: str) -> None:
    err_console.print(f"  {message}", style="dim", highlight=False)


@app.command()
def setup(json: bool = JsonOption) -> None:
    """Install what the lab needs (as root; idempotent): its Debian packages, the hosts' root
    filesystem (a minimal Debian, built once with debootstrap from the machine's mirror) and
    pouchdb-server (the CouchDB API of the cozy-stack double, `npm ci` of a pinned lockfile).

    Packages are installed by name with apt-get; their system services are not started.
    """
    log = paths.state_dir() / "logs" / "lab-setup.log"
    missing = lab_setup.missing_packages()
    started = time.monotonic()
    busy = err_console.status(f"installing {', '.join(missing)} (log: {log})") if missing else nullcontext()
    with busy:
        result = lab_setup.install(log)
    seconds = time.monotonic() - started
    if not json:
        if result.installed:
            err_console.print(f"installed {', '.join(result.installed)} in {seconds:.1f} s")
        else:
            err_console.print("the lab's packages are all installed")
    lab_setup.require_root("cozyops lab setup")
    with err_console.status("the hosts' root filesystem") as busy_rootfs:
        built = lab_rootfs.build(log, report=lambda line: busy_rootfs.update(f"root filesystem: {line}"))
    if not json:
        if built.built:
            err_console.print(f"built the hosts' root filesystem in {built.seconds:.1f} s: {built.path}")
        else:
            err_console.print(f"the hosts' root filesystem is built: {built.path}")
    pouch_new = not lab_pouchdb.installed(lab_pouchdb.path())
    pouch_started = time.monotonic()
    with err_console.status(f"pouchdb-server {lab_pouchdb.VERSION}: npm ci (log: {log})"):
        pouch = lab_pouchdb.install(log)
    pouch_seconds = time.monotonic() - pouch_started
    client_new = not lab_jsclient.installed(lab_jsclient.path())
    with err_console.status(f"cozy-stack-client {lab_jsclient.VERSION}: npm ci (log: {log})"):
        client = lab_jsclient.install(log)
    from cozyops.lab import aptrepo

    with err_console.status("the lab's apt repository") as busy_repo:
        repo = aptrepo.build(log, report=lambda line: busy_repo.update(line))
    if json:
        emit_json({
            "installed": result.installed,
            "already": result.already,
            "seconds": round(seconds, 1),
            "rootfs": {"path": str(built.path), "built": built.built, "seconds": round(built.seconds, 1)},
            "pouchdb_server": {"path": str(pouch), "built": pouch_new, "seconds": round(pouch_seconds, 1)},
            "cozy_stack_client": {"path": str(client), "built": client_new},
            "apt_repository": {"path": str(repo.path), "built": repo.built, "seconds": round(repo.seconds, 1)},
        })
        return
    if pouch_new:
        err_console.print(f"installed pouchdb-server {lab_pouchdb.VERSION} in {pouch_seconds:.1f} s: {pouch}")
    else:
        err_console.print(f"pouchdb-server {lab_pouchdb.VERSION} is installed: {pouch}")
    word = "installed" if client_new else "is installed:"
    err_console.print(f"cozy-stack-client {lab_jsclient.VERSION} {word} {client}")
    verb = f"built in {repo.seconds:.1f} s" if repo.built else "is built"
    err_console.print(f"the lab's apt repository (cozy-stack, couchdb) {verb}: {repo.path}")


@app.command()
def up(
    lab_id: str = IdOption,
    zone: str = typer.Option(None, "--zone", help="The lab's main zone, BIND's (default: cozy.test)."),
    zone2: str = typer.Option(None, "--zone2", help="The second zone, Knot's (default: cozy2.test)."),
    zone3: str = typer.Option(None, "--zone3", help="The third zone, PowerDNS's (default: cozy3.test)."),
    hosts: int = typer.Option(
        None, "--hosts", min=0, help=f"How many hosts h1..hN (default: {DEFAULT_HOSTS}); a lab keeps the hosts it has."
    ),
    with_stack: bool = typer.Option(
        False, "--with-stack", help=(
            "Provision every host that does not have the stack yet (cozyops server provision): CouchDB "
            "(pouchdb-server), cozy-stack (the double) and nginx from the lab's apt repository."),
    ),
    directory: Path = DirOption,
    json: bool = JsonOption,
) -> None:
    """Bring the lab up, or complete a lab that is up (nothing running is restarted)."""
    lab = Lab.open(lab_id, directory, zone=zone, zone2=zone2, zone3=zone3)
    started = time.monotonic()
    with err_console.status(f"bringing lab {lab.spec.id} up"):
        lab.up(report=_step, hosts_wanted=hosts, with_stack=with_stack)
    status = lab.status()
    if json:
        emit_json(status)
        return
    _print_status(status)
    err_console.print(f"lab {lab.spec.id} is up ({time.monotonic() - started:.1f} s). Try: cozyops lab demo")


@app.command()
def status(lab_id: str = IdOption, directory: Path = DirOption, json: bool = JsonOption) -> None:
    """Each component of the lab, ok or not with the reason. Exit 1 unless all is ok."""
    lab = Lab.open(lab_id, directory)
    if lab.is_up():
        lab_setup.require_root("cozyops lab status")
    report = lab.status()
    if json:
        emit_json(report)
    else:
        _print_status(report)
    if not report["ok"]:
        raise typer.Exit(1)


@app.command()
def down(
    lab_id: str = IdOption,
    directory: Path = DirOption,
    purge: bool = typer.Option(False, "--purge", help="Also delete the lab's directory (zones, keys, fleet)."),
) -> None:
    """Stop every process the lab started and remove its namespaces (idempotent)."""
    lab = Lab.open(lab_id, directory)
    lab.down(purge=purge, report=_step)
    err_console.print(f"lab {lab.spec.id} is down" + (" and purged" if purge else ""))


@app.command(
    name="exec",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
)
def exec_(
    command: list[str] = typer.Argument(..., help="The command and its arguments (after --)."),
    lab_id: str = IdOption,
    directory: Path = DirOption,
) -> None:
    """Run COMMAND inside the lab's network namespace: cozyops lab exec -- dig @ADDR SOA ZONE.

    COZYOPS_FLEET is set to the lab's fleet unless already set; everything else (environment,
    working directory, standard streams, exit status) passes through unchanged.
    """
    lab_setup.require_root("cozyops lab exec")
    argv, env = Lab.open(lab_id, directory).exec_argv(command)
    try:
        os.execvpe(argv[0], argv, env)
    except OSError as error:
        raise LabError(argv[0], f"cannot run: {error.strerror}") from None


@app.command()
def env(lab_id: str = IdOption, directory: Path = DirOption) -> None:
    """The lab's settings as shell exports: eval "$(cozyops lab env)"."""
    for name, value in Lab.open(lab_id, directory).env().items():
        print(f"export {name}={shlex.quote(value)}")


@app.command()
def demo(lab_id: str = IdOption, directory: Path = DirOption, json: bool = JsonOption) -> None:
    """Set the lab up if needed (hosts with the cozy-stack double, and one fresh host) and show, step
    by step, what works: the lab's services, then `cozyops install` on the fresh host (provisioning,
    DNS, a wildcard certificate, the first instance) and HTTPS on its app subdomains."""
    if (
        lab_setup.missing_packages()
        or not lab_rootfs.built(lab_rootfs.path())
        or not lab_pouchdb.installed(lab_pouchdb.path())
        or not lab_jsclient.installed(lab_jsclient.path())
    ):
        setup(json=False)
    lab = Lab.open(lab_id, directory)
    # The demo shows the whole lab: hosts with the cozy-stack double on them. `up` starts only what
    # is missing, so on a complete lab this is quick.
    # One more host stays a fresh Debian: `cozyops install` makes it a Cozy in the demo.
    with err_console.status(f"bringing lab {lab.spec.id} up, with the cozy-stack double on its hosts"):
        state = lab.up(report=_step, with_stack=True, hosts_wanted=DEFAULT_HOSTS + 1, bare=1)
    install_on = lab.spec.hosts(state.hosts)[-1]
    results = []
    for step in lab_demo.steps(lab, install_on):
        with err_console.status(step.title):
            result = lab_demo.run_step(lab, step)
        results.append(result)
        if not json:
            mark = "[green]ok[/green]" if result.ok else "[red]FAILED[/red]"
            err_console.print(f"{mark} {result.title} [dim]({result.seconds:.2f} s)[/dim]")
            err_console.print(f"   {result.detail}", style="dim", highlight=False, markup=False)
    failed = [result for result in results if not result.ok]
    if json:
        emit_json(
            {
                "lab": lab.spec.id,
                "ok": not failed,
                "steps": [
                    {"title": r.title, "ok": r.ok, "detail": r.detail, "seconds": round(r.seconds, 3)}
                    for r in results
                ],
            }
        )
    else:
        err_console.print(
            f"{len(results) - len(failed)} of {len(results)} steps ok. "
            f"The lab stays up: `cozyops lab status`, `cozyops lab down`."
        )
    if failed:
        raise LabError(f"lab {lab.spec.id} demo", f"{len(failed)} step(s) failed: {failed[0].title}")


def _print_status(report: dict) -> None:
    def mark(ok: bool) -> str:
        return "[green]ok[/green]" if ok else "[red]not ok[/red]"

    table = Table(title=f"lab {report['id']} ({report['dir']})", title_justify="left")
    table.add_column("component")
    table.add_column("where")
    table.add_column("state")
    for server in report["dns"]["servers"]:
        where = f"{server['address']}:{server['port']}"
        table.add_row(f"dns {server['name']}", where, mark(server["ok"]) + _why(server["reason"]))
    acme = report["acme"]
    table.add_row("acme (pebble)", acme["directory"], mark(acme["ok"]) + _why(acme["reason"]))
    proxy = report["apt_proxy"]
    if proxy:
        table.add_row("apt proxy", proxy["address"], mark(proxy["ok"]) + _why(proxy["reason"]))
    for host in report["hosts"]:
        table.add_row(f"host {host['name']}", f"{host['fqdn']} ({host['address']})",
                      mark(host["ok"]) + _why(host["reason"]))
    table.add_row("fleet", report["fleet"], "")
    if report["ssh_config"]:
        table.add_row("ssh_config", report["ssh_config"], "")
    err_console.print(table)


def _why(reason: str | None) -> str:
    return f": {reason}" if reason else ""
