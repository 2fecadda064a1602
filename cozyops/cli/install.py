"""`cozyops install`: one command from a fresh Debian 12 server to a working Cozy."""

from __future__ import annotations

import fcntl
import ipaddress
import os
import socket
import struct
from pathlib import Path

import typer

from cozyops import inventory
from cozyops.cli.render import emit_json, err_console
from cozyops.errors import ConfigError
from cozyops.install import settings as install_settings
from cozyops.install.run import Event, Installer, Settings

app = typer.Typer(no_args_is_help=True)

DEFAULT_FLEET = "~/cozyops"


def _say(message: str, style: str | None = None) -> None:
    err_console.print(message, style=style, markup=False, highlight=False, soft_wrap=True)


def _absolute(value: str | None) -> str | None:
    return str(Path(value).expanduser().resolve()) if value else None


def _detected_ipv4() -> str | None:
    """This machine's address on its default route (a UDP socket's source: nothing is sent); with
    no default route (a host reached only on its own network), its one IPv4 address that is not
    loopback, if it has exactly one."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect(("192.0.2.1", 53))
            return probe.getsockname()[0]
    except OSError:
        pass
    addresses = {address for address in map(_interface_ipv4, socket.if_nameindex())
                 if address and not ipaddress.IPv4Address(address).is_loopback}
    return addresses.pop() if len(addresses) == 1 else None


def _interface_ipv4(interface: tuple[int, str]) -> str | None:
    """The IPv4 address of one interface (SIOCGIFADDR), None when it has none."""
    siocgifaddr = 0x8915
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            answer = fcntl.ioctl(probe.fileno(), siocgifaddr, struct.pack("256s", interface[1].encode()[:15]))
        except OSError:
            return None
    return socket.inet_ntoa(answer[20:24])


class _Progress:
    """Steps as lines on standard error; the records to create; the wait, when it changes."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.last_wait = ""
        self.tasks = 0

    def __call__(self, event: Event) -> None:
        if event.kind == "records":
            # Asked of the user even with --json: the run waits for them.
            _say(event.detail)
            return
        if self.quiet:
            return
        if event.kind == "step":
            if event.status == "start":
                _say(f"- {event.step} ...", "dim")
                self.tasks = 0
            else:
                mark = {"done": "done", "unchanged": "ok (unchanged)", "skipped": "ok (already done)"}[event.status]
                _say(f"  {event.step}: {mark}: {event.detail}", "green" if event.status == "done" else None)
        elif event.kind == "task":
            self.tasks += 1
            if event.status in ("failed", "unreachable"):
                _say(f"    {event.detail}: {event.status}", "red")
            elif self.tasks % 10 == 0:
                _say(f"    {self.tasks} tasks ({event.detail})", "dim")
        elif event.kind == "waiting":
            reports = event.data or []
            line = ", ".join(f"{r.name}: {'serves them' if r.ok else (r.reason or f'{r.problem_count} missing')}"
                             for r in reports)
            if line != self.last_wait:
                self.last_wait = line
                _say(f"    waiting for the authoritative servers: {line}", "dim")


@app.command()
def install(
    domain: str = typer.Argument(..., help="The instance's domain (cozy.example.org): its apps are drive.DOMAIN, "
                                 "photos.DOMAIN, ... (nested) or NAME-drive.ZONE (flat)."),
    email: str = typer.Option(..., "--email", help="The instance owner's e-mail (and the ACME account's, when the "
                              "fleet has none)."),
    host: str = typer.Option(None, "--host", help="The server: an address reached over SSH as root, or a host of the "
                             "fleet's inventory."),
    local: bool = typer.Option(False, "--local", help="The server is this machine (run as root on it)."),
    subdomains: str = typer.Option(None, "--subdomains", help="nested (drive.alice.example.org, default) or flat "
                                   "(alice-drive.example.org)."),
    zone: str = typer.Option(None, "--zone", help="The DNS zone (default: the fleet's, else DOMAIN's registered "
                             "domain)."),
    dns: str = typer.Option(None, "--dns", help="rfc2136 (cozyops writes the records) or manual (you create them; "
                            "cozyops prints them and waits until they are served)."),
    dns_server: str = typer.Option(None, "--dns-server", help="With --dns rfc2136: where updates go."),
    tsig_key_file: Path = typer.Option(None, "--tsig-key-file", help="With --dns rfc2136: the TSIG key (BIND's "
                                       "tsig-keygen format, mode 0600)."),
    nameserver: list[str] = typer.Option(None, "--nameserver", help="An authoritative server to check (repeatable; "
                                         "default: the zone's NS)."),
    http_01: bool = typer.Option(False, "--http-01", help="Certificates by HTTP-01 on port 80 (one per "
                                 "instance naming its app hosts): no _acme-challenge delegation needed with --dns "
                                 "manual."),
    acme_directory: str = typer.Option(None, "--acme-directory", help="letsencrypt (default), letsencrypt-staging, "
                                       "or a directory URL."),
    ca_bundle: Path = typer.Option(None, "--ca-bundle", help="The CA bundle of a private ACME CA's HTTPS."),
    public_ipv4: str = typer.Option(None, "--public-ipv4", help="The server's public address for the DNS records "
                                    "(default: --host's address; with --local, this machine's)."),
    ssh_user: str = typer.Option(None, "--ssh-user", help="Over SSH as this user (default: root)."),
    ssh_key: Path = typer.Option(None, "--ssh-key", help="The SSH key (default: the ssh_config's, else ~/.ssh's)."),
    server_name: str = typer.Option(None, "--server-name", help="The server's name in the inventory (default: from "
                                    "--host, or this machine's host name)."),
    locale: str = typer.Option(None, "--locale", help="The instance's locale (default: en)."),
    fleet: Path = typer.Option(None, "--fleet", envvar="COZYOPS_FLEET", file_okay=False,
                               help=f"The fleet directory, created or completed (default: {DEFAULT_FLEET})."),
    schedule_renewal: bool = typer.Option(False, "--schedule-renewal", help="With --host: put the daily renewal in "
                                          "your crontab (else it is printed)."),
    dns_wait: float = typer.Option(3600.0, "--dns-wait", min=0, help="With --dns manual: seconds to wait for the "
                                   "records."),
    json: bool = typer.Option(False, "--json", help="Print JSON (and only JSON) on standard output."),
) -> None:
    """The self-hoster's one command: a fresh Debian 12 machine to a working Cozy.

    Write (or complete) the fleet directory, provision the server (CouchDB, cozy-stack,
    nginx), write the DNS records (or print them and wait until every authoritative server
    serves them), issue and deploy the instance's wildcard certificate, create the instance,
    schedule the daily renewal, check https://drive.DOMAIN/, and print the onboarding link.

    Every step is journaled in the fleet's state: a run that stops (killed, a failure) goes on
    where it stopped when run again, and a second run of a finished install has nothing to do.
    """
    root = Path(os.path.expanduser(str(fleet) if fleet else DEFAULT_FLEET)).resolve()
    if root.exists() and not root.is_dir():
        raise ConfigError(f"--fleet {root}", "is not a directory")
    options = install_settings.Options(
        domain=domain, email=email, host=host, local=local, subdomains=subdomains, zone=zone, dns=dns,
        dns_server=dns_server, tsig_key_file=_absolute(str(tsig_key_file) if tsig_key_file else None),
        nameservers=tuple(nameserver or ()), http_01=http_01, acme_directory=acme_directory,
        ca_bundle=_absolute(str(ca_bundle) if ca_bundle else None), public_ipv4=public_ipv4, ssh_user=ssh_user,
        ssh_key=_absolute(str(ssh_key) if ssh_key else None), server_name=server_name, locale=locale,
    )
    for given, option in ((options.tsig_key_file, "--tsig-key-file"), (options.ca_bundle, "--ca-bundle"),
                          (options.ssh_key, "--ssh-key")):
        if given and not Path(given).is_file():
            raise ConfigError(f"{option} {given}", "is not a file")
    existing = inventory.load(root) if (root / "hosts.yml").exists() or (root / "hosts.yaml").exists() else None
    edits = install_settings.edits(options, existing, socket.gethostname().split(".")[0],
                                   _detected_ipv4() if local else None)
    if not json:
        where = "this machine" if local else edits.server
        _say(f"installing {edits.instance_domain} on {where} (fleet {root}, zone {edits.zone}, "
             f"{edits.subdomains} subdomains)")
    installer = Installer(root, edits, lambda: inventory.load(root),
                          Settings(schedule_renewal=schedule_renewal, dns_wait=dns_wait), _Progress(json))
    result = installer.run()
    if json:
        emit_json(result.to_json())
        return
    if result.nothing_to_do:
        _say(f"nothing to do: {edits.instance_domain} is installed and answers at {result.https.get('url')}", "green")
    else:
        _say(f"{edits.instance_domain} is installed: {result.https.get('url')} answers through nginx", "green")
    print()
    if result.onboarding_link:
        print(f"Onboarding: open {result.onboarding_link}")
        print("  to choose the instance's password (the link works once; keep it private).")
    elif result.onboarded:
        print(f"{edits.instance_domain} is onboarded: log in at https://{edits.instance_domain}/")
    renewal = result.renewal
    if renewal is not None and renewal.how == "printed":
        print("Certificate renewal: schedule this daily on this machine (or rerun with --schedule-renewal):")
        print(f"  {renewal.where}")
    elif renewal is not None:
        print(f"Certificate renewal: daily, {renewal.how} ({renewal.where}).")
    print("Next: `cozyops instance add` for more instances, `cozyops plan` / `cozyops apply` for the fleet, "
          f"and keep {root} in git (its .cozyops/ is the state, not for git).")
